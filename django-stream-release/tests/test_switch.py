"""STREAM_RELEASE_ALL_STREAMS: the middleware releases every streaming response, with no view
changed; what it cannot release safely it reports, and no write is lost."""

import logging

import pytest
from asgiref.sync import async_to_sync
from django.db import connection
from django.test import AsyncClient, Client

from stream_release.signals import connections_released
from tests.models import Row
from tests.test_plugin import package_on_path, run  # noqa: F401  (package_on_path: autouse)

pytestmark = pytest.mark.django_db(transaction=True)
BODY = b"".join(b"%d\n" % n for n in range(10))


@pytest.fixture
def switch(settings, caplog):
    settings.STREAM_RELEASE_ALL_STREAMS = True
    Row.objects.bulk_create(Row(n=n) for n in range(10))
    released = []
    connections_released.connect(lambda **kw: released.extend(kw["released"]), weak=False, dispatch_uid="t")
    with caplog.at_level(logging.WARNING, logger="stream_release"):
        yield released, caplog
    connections_released.disconnect(dispatch_uid="t")


def read(path, client=None):
    connection.close()  # as a server's request starts
    response = (client or Client()).get(path)
    chunks = iter(response)
    first = next(chunks)
    open_after_first = connection.connection is not None
    body = first + b"".join(chunks)
    response.close()
    return body, open_after_first


@pytest.mark.parametrize("path", ["/query-then-stream/", "/guarded-close/", "/release/", "/release-batches/"])
def test_a_plain_stream_is_released_when_its_body_starts(switch, path):
    released, caplog = switch
    assert read(path) == (BODY, False)
    assert caplog.records == []


@pytest.mark.parametrize(
    "path, why",
    [
        ("/header-then-iterator/", "a cursor on it is still being read"),
        ("/iterator-then-release/", "a cursor on it is still being read"),
        ("/atomic-body/", "inside the body's own atomic block"),
    ],
)
def test_what_it_cannot_release_it_keeps_and_reports(switch, path, why):
    _, caplog = switch
    body, _ = read(path)
    assert body == BODY  # never broken by the release
    (record,) = caplog.records
    assert why in record.getMessage()


def test_a_file_response_is_released_before_it_goes(switch):
    released, caplog = switch
    connection.close()
    response = Client().get("/query-then-file/")
    assert connection.connection is None and released == ["default"]
    assert b"".join(response) == BODY
    response.close()
    assert caplog.records == []


def test_no_write_is_lost_under_atomic_requests(switch, monkeypatch):
    """The request's transaction has committed when the body starts: the release loses nothing."""
    monkeypatch.setitem(connection.settings_dict, "ATOMIC_REQUESTS", True)
    body, open_after_first = read("/write-then-stream/")
    assert (body, open_after_first) == (b"written\n", False)
    assert Row.objects.filter(n=100).exists()


def test_a_server_sent_events_loop_that_polls_holds_a_connection_only_while_it_polls(switch):
    """An async view polling with acount() between events: given back after each event,
    with no arelease_connections() in the view."""
    released, caplog = switch

    async def get():
        response = await AsyncClient().get("/events/")
        return b"".join([part async for part in response])

    connection.close()
    assert async_to_sync(get)() == b"".join(b"data: 10\n\n" for _ in range(3))
    assert released.count("default") == 3  # after each poll's event
    assert caplog.records == []


def test_the_plugin_then_reports_only_the_bodies_no_switch_can_release(pytester, monkeypatch):
    monkeypatch.setenv("STREAM_RELEASE_TEST_ALL_STREAMS", "1")
    _, got = run(pytester, "--fail-on-pinned-streams", "-k", "django_db")
    failing = {key[0] for key, (outcome, _) in got.items() if outcome != "passes"}
    assert failing == {"iterator", "header-then-iterator", "iterator-then-release", "atomic-body"}, got
