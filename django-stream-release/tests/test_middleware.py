"""The production detector on Django's test client: one warning for a stream that starts
with a connection checked out, none for one that releases it, its hold recorded."""

import logging

import pytest
from django.db import connection
from django.test import Client

from stream_release import event_log
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
    assert "ms ago): it stays checked out until the last chunk is sent" in message


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
    assert record.getMessage().startswith(
        "/query-then-file/ started streaming its body with database connection 'default'"
    )
