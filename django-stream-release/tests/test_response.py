"""ReleasingStreamingHttpResponse, release_connections() and (a)batches() on a real database."""

import logging

import pytest
from asgiref.sync import async_to_sync
from django.db import connection, transaction

from stream_release import ReleasingStreamingHttpResponse, abatches, batches, release_connections, response
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
    monkeypatch.setattr(response, "_noted", set())
    Row.objects.exists()
    with caplog.at_level(logging.DEBUG, logger="stream_release"):
        assert release_connections() == []
        with transaction.atomic():
            assert release_connections() == []
    assert connection.connection is not None
    assert [r.levelname for r in caplog.records] == ["DEBUG"]
    assert "'default' is inside an atomic block; left open" in caplog.records[0].getMessage()


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


def test_batches_refuse_what_they_cannot_page_through(rows):
    with pytest.raises(ValueError, match="size must be at least 1"):
        next(batches(Row.objects.all(), 0))
    with pytest.raises(TypeError, match="not values_list"):
        list(batches(Row.objects.values_list("pk", "n"), 5))
    with pytest.raises(ValueError, match="needs 'pk' among the values"):
        list(batches(Row.objects.values("n"), 5))
