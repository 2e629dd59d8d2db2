"""The production detector on Django's test client: one warning for a stream that starts
with a connection checked out, none for one that releases it, its hold recorded."""

import logging

import pytest
from django.db import connection, connections
from django.test import Client

from stream_release import event_log
from stream_release.signals import connections_released
from tests.models import Row

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def warnings(caplog):
    Row.objects.bulk_create(Row(n=n) for n in range(10))
    with caplog.at_level(logging.WARNING, logger="stream_release"):
        yield caplog


def stream(path):
    connection.close()  # as a server's request starts: the test's own query left it open
    response = Client().get(path)
    assert response.status_code == 200
    body = b"".join(response)
    response.close()  # what the server does after the last chunk
    return body


def test_a_pinned_stream_gets_one_warning_naming_view_alias_and_hold(warnings):
    stream("/query-then-stream/")
    (record,) = warnings.records
    message = record.getMessage()
    assert message.startswith(
        "tests.views.query_then_stream started streaming its body with database connection 'default' (checked out "
    )
    assert "ms ago): it stays checked out while the client reads" in message


@pytest.mark.parametrize("path", ["/release/", "/release-batches/", "/no-database/", "/async-release-batches/"])
def test_a_stream_that_holds_nothing_gets_none(warnings, path):
    assert stream(path) == b"".join(b"%d\n" % n for n in range(10))
    assert warnings.records == []


def test_the_pinned_streams_hold_goes_to_the_event_log(warnings, tmp_path, settings):
    settings.STREAM_RELEASE_EVENT_LOG_DIR = str(tmp_path)
    stream("/query-then-stream/")
    (log,) = tmp_path.glob("accounting-*.csv")
    pinned = [r for r in event_log.read(log) if r["event"] == "pinned_stream"]
    assert len(pinned) == 1 and pinned[0]["route"] == "query-then-stream"
    assert pinned[0]["detail"] == "tests.views.query_then_stream default" and float(pinned[0]["hold_ms"]) > 0


def test_the_counters_when_prometheus_client_is_there(warnings):
    prometheus = pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
    value = prometheus.REGISTRY.get_sample_value
    labels = {"alias": "default", "view": "tests.views.query_then_stream"}
    before = value("stream_release_pinned_streams_total", labels) or 0
    held_before = value("stream_release_pinned_stream_hold_seconds_count", {"alias": "default"}) or 0
    stream("/query-then-stream/")
    stream("/release/")
    assert value("stream_release_pinned_streams_total", labels) == before + 1
    assert value("stream_release_pinned_stream_hold_seconds_count", {"alias": "default"}) == held_before + 1


def test_a_file_response_keeps_its_file_and_is_looked_at_when_it_goes(warnings):
    """Not re-wrapped, so that a server's sendfile (wsgi.file_wrapper) still applies (called
    without the test client, which re-wraps every streaming response itself)."""
    from django.test import RequestFactory

    from stream_release.middleware import StreamReleaseMiddleware
    from tests.views import query_then_file

    connection.close()
    response = StreamReleaseMiddleware(query_then_file)(RequestFactory().get("/query-then-file/"))
    assert response.file_to_stream is not None
    assert b"".join(response) == b"".join(b"%d\n" % n for n in range(10))
    response.close()
    (record,) = warnings.records
    assert record.getMessage().startswith("<unresolved> started streaming its body with database connection 'default'")


@pytest.mark.parametrize(
    "path, why",
    [
        ("/header-then-iterator/", "kept database connection 'default' ("),
        ("/atomic-body/", "inside the body's own atomic block"),
        ("/iterator-then-release/", "a cursor on it is still being read"),
    ],
)
def test_a_body_that_holds_a_connection_after_its_first_chunk_is_pinned(warnings, path, why):
    """The usual CSV export (a header, then queryset.iterator()), a body in its own atomic
    block, a released body continuing the view's cursor: held across chunks, warned once."""
    assert stream(path) == b"".join(b"%d\n" % n for n in range(10))
    (record,) = warnings.records
    assert why in record.getMessage()


def test_a_released_body_that_queries_later_is_pinned(warnings):
    """ReleasingStreamingHttpResponse gives back what the view held; a body that then opens a
    cursor and keeps it across chunks holds a connection all the same."""
    from django.test import RequestFactory

    from stream_release import ReleasingStreamingHttpResponse
    from stream_release.middleware import StreamReleaseMiddleware

    def view(request):
        def body():
            yield b"n\n"
            for row in Row.objects.order_by("n").iterator(chunk_size=2):
                yield b"%d\n" % row.n

        return ReleasingStreamingHttpResponse(body())

    connection.close()
    response = StreamReleaseMiddleware(view)(RequestFactory().get("/"))
    assert len(list(response)) == 11
    response.close()
    (record,) = warnings.records
    assert "across two chunks of its body" in record.getMessage()


def test_a_stream_that_never_used_a_persistent_connection_is_not_warned_about(warnings, monkeypatch):
    """CONN_MAX_AGE > 0: a connection kept from earlier work is open while a view that never
    touches the database streams; it is not that stream's hold."""
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    Row.objects.exists()  # the connection is open, as a persistent one kept from an earlier request
    response = Client().get("/no-database/")
    assert b"".join(response) == b"".join(b"%d\n" % n for n in range(10))
    response.close()
    assert warnings.records == []


def test_a_file_served_before_url_resolution_gets_a_bounded_label(warnings, settings):
    """WhiteNoise's shape: a middleware answers with a FileResponse before the URL is resolved.
    Without database use, no warning; its view label is never the path (one series per file)."""
    from stream_release.middleware import UNRESOLVED, view_name

    settings.MIDDLEWARE = ["stream_release.middleware.StreamReleaseMiddleware", "tests.middleware.serve_files"]
    Row.objects.exists()
    for name in ("a.css", "b.js"):
        response = Client().get(f"/static/{name}")
        assert b"".join(response) == name.encode()
        response.close()
    assert warnings.records == []
    from django.test import RequestFactory

    assert view_name(RequestFactory().get("/static/a.css")) == UNRESOLVED


def test_a_middleware_before_it_that_queries_is_not_booked_to_the_previous_request(warnings, tmp_path, settings):
    settings.STREAM_RELEASE_EVENT_LOG_DIR = str(tmp_path)
    settings.MIDDLEWARE = ["tests.middleware.query_first", "stream_release.middleware.StreamReleaseMiddleware"]
    stream("/release/")  # its checkouts: route "release"
    stream("/release/")  # the first checkout comes from query_first, before the route is known
    (log,) = tmp_path.glob("accounting-*.csv")
    routes = [r["route"] for r in event_log.read(log) if r["event"] == "checkout"]
    assert routes == ["other", "other"], routes


def test_it_is_sync_and_async_capable():
    """Django runs it in the handler's mode: no thread hop for an async request."""
    from asgiref.sync import iscoroutinefunction

    from stream_release.middleware import StreamReleaseMiddleware

    async def async_view(request):
        return None

    assert StreamReleaseMiddleware.sync_capable and StreamReleaseMiddleware.async_capable
    assert iscoroutinefunction(StreamReleaseMiddleware(async_view))
    assert not iscoroutinefunction(StreamReleaseMiddleware(lambda request: None))


@pytest.mark.parametrize("path", ["/query-then-stream/", "/release/"])
def test_under_asgi_it_warns_the_same(warnings, path):
    """Through Django's async client (the ASGI handler, the middleware in async mode)."""
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    async def get():
        response = await AsyncClient().get(path)
        return b"".join([part async for part in response])  # as Django's ASGI handler reads it

    connection.close()
    assert async_to_sync(get)() == b"".join(b"%d\n" % n for n in range(10))
    assert len(warnings.records) == (1 if path == "/query-then-stream/" else 0)


def test_a_persistent_connection_kept_on_purpose_is_not_warned_about(warnings, settings, monkeypatch):
    """STREAM_RELEASE_KEEP_PERSISTENT: the release keeps the thread's own persistent connection,
    which no other request waits for; the detector does not count it."""
    from stream_release import tracking

    if (connection.settings_dict["OPTIONS"] or {}).get("pool"):
        pytest.skip("Django's native pool refuses CONN_MAX_AGE > 0")
    settings.STREAM_RELEASE_KEEP_PERSISTENT = True
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "CONN_MAX_AGE", 60)
    released = []
    connections_released.connect(lambda **kw: released.extend(kw["released"]), weak=False, dispatch_uid="t")
    try:
        assert stream("/release-batches/") == b"".join(b"%d\n" % n for n in range(10))
    finally:
        connections_released.disconnect(dispatch_uid="t")
    # kept by each release, unless a pool in the process (django-db-geventpool) takes it back
    assert released == (["default"] * 4 if tracking.pooled(connections["default"]) else [])
    assert warnings.records == []
