"""ReleasingStreamingHttpResponse, release_connections() and (a)batches() on a real database."""

import logging
import re

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, connections, transaction

from stream_release import ReleasingStreamingHttpResponse, abatches, batches, release, release_connections
from stream_release.signals import connections_released
from tests.models import Row


@pytest.fixture
def rows(db):
    Row.objects.bulk_create(Row(n=n) for n in range(23))
    return list(range(23))


@pytest.mark.django_db(transaction=True)
def test_release_closes_outside_an_atomic_block_and_says_which():
    sent = []
    connections_released.connect(
        lambda **kw: sent.append((kw["released"], kw["kept_in_atomic"])), weak=False, dispatch_uid="t"
    )
    try:
        Row.objects.exists()
        assert connection.connection is not None
        assert release_connections() == ["default"]
        assert connection.connection is None
    finally:
        connections_released.disconnect(dispatch_uid="t")
    assert sent == [(["default"], [])]


def test_inside_an_atomic_block_it_leaves_the_connection_and_says_so_once(db, caplog, monkeypatch):
    monkeypatch.setattr(release, "_noted", set())
    Row.objects.exists()
    with caplog.at_level(logging.DEBUG, logger="stream_release"):
        assert release_connections() == []
        with transaction.atomic():
            assert release_connections() == []
    assert connection.connection is not None
    assert [r.levelname for r in caplog.records] == ["DEBUG"]
    assert "'default' is kept open: inside an atomic block" in caplog.records[0].getMessage()


@pytest.mark.django_db(transaction=True)
def test_the_response_releases_when_its_body_starts_not_before():
    Row.objects.exists()
    streamed = ReleasingStreamingHttpResponse(iter([b"a", b"b"]))
    assert connection.connection is not None  # the view may still query, and middleware
    chunks = iter(streamed)
    assert next(chunks) == b"a"
    assert connection.connection is None
    assert list(chunks) == [b"b"]


@pytest.mark.django_db(transaction=True)
def test_an_async_body_releases_in_the_requests_thread():
    async def body():
        yield b"a"
        yield b"b"

    Row.objects.exists()
    streamed = ReleasingStreamingHttpResponse(body())
    assert streamed.is_async

    async def first_then_state():
        parts = aiter(streamed.streaming_content)
        first = await anext(parts)
        return first, connection.connection is None, [p async for p in parts]

    # async_to_sync from this thread: thread-sensitive code runs here, on this connection
    assert async_to_sync(first_then_state)() == (b"a", True, [b"b"])


@pytest.mark.parametrize("size", [1, 5, 23, 50])
def test_batches_yield_every_row_once_in_order(rows, size, django_assert_num_queries):
    # one query per batch, and one more that finds nothing unless the last batch was short
    with django_assert_num_queries(len(rows) // size + 1):
        got = list(batches(Row.objects.values("pk", "n"), size))
    assert [row["n"] for batch in got for row in batch] == rows
    assert [len(b) for b in got[:-1]] == [size] * (len(got) - 1)


def test_batches_take_model_instances_and_another_key(rows):
    got = list(batches(Row.objects.all(), 10, key="n"))
    assert [row.n for batch in got for row in batch] == rows


@pytest.mark.django_db(transaction=True)
def test_batches_give_the_connection_back_after_each_query():
    Row.objects.bulk_create(Row(n=n) for n in range(7))
    open_between = []
    for _batch in batches(Row.objects.all(), 3, key="n"):
        open_between.append(connection.connection is not None)
    assert open_between == [False, False, False]


@pytest.mark.django_db(transaction=True)
def test_abatches_yield_the_same_rows_and_give_the_connection_back():
    Row.objects.bulk_create(Row(n=n) for n in range(7))

    async def read():
        got = []
        async for batch in abatches(Row.objects.all(), 3, key="n"):
            got.append(([row.n for row in batch], connection.connection is None))
        return got

    assert async_to_sync(read)() == [([0, 1, 2], True), ([3, 4, 5], True), ([6], True)]


def test_batches_refuse_before_any_query_what_they_cannot_page_through(rows, django_assert_num_queries):
    """Refused when batches() is called, in the view: never after the first batch, when the
    client would already have a 200 and part of the body."""
    from tests.models import Item

    refusals = [
        (lambda: batches(Row.objects.all(), 0), "size must be a whole number of rows, at least 1"),
        (lambda: batches(Row.objects.all(), 2.5), "size must be a whole number"),
        (lambda: batches(Item.objects.all(), 5, key="group"), "key='group' is not unique"),
        (lambda: batches(Item.objects.all(), 5, key="code"), "key='code' may be NULL"),
        (lambda: batches(Row.objects.all(), 5, key="nope"), "key='nope' is not a field of tests.Row"),
        (lambda: batches(Row.objects.values("n"), 5), "key='pk' is not among the values() fields (n)"),
        (lambda: batches(Row.objects.values_list("n", flat=True), 5), "key='pk' is not among the values_list()"),
        (lambda: batches(Row.objects.order_by("-n"), 5), "the queryset is ordered by -n, but batches come in key"),
        (lambda: batches(Row.objects.all()[:5], 5), "the queryset is sliced"),
        (lambda: batches(Row.objects.all().union(Row.objects.all()), 5), "a union() cannot be filtered"),
    ]
    with django_assert_num_queries(0):
        for make, message in refusals:
            with pytest.raises(ValueError, match=re.escape(message)):
                make()
        # abatches() checks the same, when it is called
        with pytest.raises(ValueError, match="key='group' is not unique"):
            abatches(Item.objects.all(), 5, key="group")
        with pytest.raises(ValueError, match="the queryset is sliced"):
            abatches(Row.objects.all()[:3], 5)


@pytest.mark.parametrize(
    "queryset, key, read",
    [
        (lambda: Row.objects.values("id", "n"), "pk", lambda row: row["n"]),
        (lambda: Row.objects.values("pk", "n"), "pk", lambda row: row["n"]),
        (lambda: Row.objects.values(), "pk", lambda row: row["n"]),
        (lambda: Row.objects.values_list("n", "id"), "pk", lambda row: row[0]),
        (lambda: Row.objects.values_list("id", "n", named=True), "id", lambda row: row.n),
        (lambda: Row.objects.values_list("n", flat=True), "n", lambda n: n),
        (lambda: Row.objects.order_by("n"), "n", lambda row: row.n),
        (lambda: Row.objects.all(), "-n", lambda row: -row.n),
        (lambda: Row.objects.values_list("n", flat=True), "-n", lambda n: -n),
        (lambda: Row.objects.order_by("-pk"), "-pk", lambda row: -row.n),
    ],
    ids=[
        "values-id",
        "values-pk",
        "values-all",
        "values_list",
        "named",
        "flat",
        "own-order",
        "desc",
        "desc-flat",
        "desc-pk",
    ],
)
def test_batches_page_every_shape_in_key_order(rows, queryset, key, read):
    got = [read(row) for batch in batches(queryset(), 4, key=key) for row in batch]
    expected = sorted(read(row) for row in queryset())
    assert got == expected and len(got) == 23


def test_batches_replace_the_models_own_ordering_and_lose_no_row(db):
    """Item orders by -group (Meta.ordering, shared values): batches come in key order, every
    row once; the same filtered."""
    from tests.models import Item

    Item.objects.bulk_create(Item(group=n % 2, n=n) for n in range(6))
    assert [i.n for b in batches(Item.objects.all(), 2, key="n") for i in b] == [0, 1, 2, 3, 4, 5]
    assert [i.n for b in batches(Item.objects.filter(group=1), 1, key="n") for i in b] == [1, 3, 5]
    assert [i["n"] for b in batches(Item.objects.values("id", "n"), 4) for i in b] == [0, 1, 2, 3, 4, 5]


@pytest.mark.django_db(transaction=True)
def test_a_release_keeps_a_connection_whose_cursor_is_still_being_read(client):
    """The view starts queryset.iterator(); the released body continues it: every row comes
    (before: 2 chunks, then `the connection is closed`, or SQLite's `closed database`)."""
    Row.objects.bulk_create(Row(n=n) for n in range(10))
    kept = []
    connections_released.connect(lambda **kw: kept.append(kw["kept"]), weak=False, dispatch_uid="t")
    try:
        response = client.get("/iterator-then-release/")
        assert b"".join(response) == b"".join(b"%d\n" % n for n in range(10))
    finally:
        connections_released.disconnect(dispatch_uid="t")
    assert kept == [{"default": release.READING}]


@pytest.mark.django_db(transaction=True)
def test_batches_inside_an_outer_iterator_loop_leave_the_outer_cursor_alone():
    """batches() gives back the connection it used, and keeps one whose cursor is still read."""
    Row.objects.bulk_create(Row(n=n) for n in range(6))
    seen = []
    for outer in Row.objects.order_by("n").iterator(chunk_size=2):
        inner = [row.n for batch in batches(Row.objects.filter(n__lte=outer.n), 2, key="n") for row in batch]
        seen.append((outer.n, inner))
    assert seen == [(n, list(range(n + 1))) for n in range(6)]
    assert release_connections() == ["default"]


@pytest.mark.django_db(transaction=True)
def test_a_connection_closed_already_is_not_said_released():
    Row.objects.exists()
    assert release_connections() == ["default"]
    assert release_connections() == []
    assert release_connections(using="other") == []


@pytest.mark.django_db(transaction=True)
def test_the_release_runs_once_whatever_rewraps_the_body(client, settings):
    """GZipMiddleware and a toolbar-like middleware each set streaming_content again: the
    release wraps the view's body once (before: once per middleware)."""
    settings.MIDDLEWARE = [
        "django.middleware.gzip.GZipMiddleware",
        "tests.middleware.rewrap_body",
        "stream_release.middleware.StreamReleaseMiddleware",
    ]
    Row.objects.bulk_create(Row(n=n) for n in range(10))
    sent = []
    connections_released.connect(lambda **kw: sent.append(kw["released"]), weak=False, dispatch_uid="t")
    try:
        response = client.get("/release/", headers={"accept-encoding": "gzip"})
        assert response.headers["Content-Encoding"] == "gzip"
        b"".join(response)
    finally:
        connections_released.disconnect(dispatch_uid="t")
    assert sent == [["default"]]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("keep, max_age, connects", [(True, 60, 1), (False, 60, 51), (True, 0, 51)])
def test_a_persistent_connection_without_a_pool_is_kept_when_the_setting_says(
    monkeypatch, settings, keep, max_age, connects
):
    """STREAM_RELEASE_KEEP_PERSISTENT with CONN_MAX_AGE > 0 and no pool: the thread's own
    connection, which no other request can take, stays open between batches (before: one
    connection per batch, 51 for 100 rows in batches of 2). Off, or CONN_MAX_AGE = 0 (closed
    after each request anyway): each batch's connection is given back."""
    from django.db.backends.signals import connection_created

    from stream_release import tracking

    if tracking.pooled(connections["default"]):
        if max_age and (connection.settings_dict["OPTIONS"] or {}).get("pool"):
            pytest.skip("Django's native pool refuses CONN_MAX_AGE > 0")
        connects = 51  # each batch's connection goes back to the pool, and out again for the next
    settings.STREAM_RELEASE_KEEP_PERSISTENT = keep
    Row.objects.bulk_create(Row(n=n) for n in range(100))
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", max_age)
    opened = []
    connection_created.connect(lambda **kw: opened.append(1), weak=False, dispatch_uid="t")
    try:
        got = [row.n for batch in batches(Row.objects.all(), 2, key="n") for row in batch]
        kept_open = connection.connection is not None
    finally:
        connection_created.disconnect(dispatch_uid="t")
    assert got == list(range(100))
    assert len(opened) == connects
    assert kept_open == (connects == 1)
