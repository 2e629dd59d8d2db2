"""The package's switch (STREAM_RELEASE_ALL_STREAMS, make bench SET=release_all_streams=true) on
real gunicorn (gevent worker) with a pool of one connection: benchapp's unchanged `hold` view
gives its connection back when the body starts, so that a probe gets it while the stream goes
on; `cursor-hold`, a body reading one QuerySet.iterator() cursor, cannot be released, keeps it,
and the detector says why."""

from contextlib import ExitStack

import pytest

from harness.stack import postgres
from harness.stack.server import Server
from tests.conftest import SPEC
from tests.test_stream_release import CHUNK_BYTES, CHUNKS, open_stream, probe


@pytest.fixture(scope="module", params=["geventpool", "native-pool"])
def switched(request, database, tmp_path_factory):
    directory = tmp_path_factory.mktemp(request.param)
    params = SPEC.params("slow-server", {"pool_max": 1, "seed_rows": 2000, "release_all_streams": True})
    with ExitStack() as stack:
        server = stack.enter_context(
            Server(
                SPEC.backends[request.param],
                params,
                database.app_url,
                postgres.free_port(),
                directory / "server.log",
                accounting_dir=directory,
            )
        )
        yield server, directory / "server.log"


def test_the_unchanged_hold_view_is_released_while_it_streams(switched):
    server, log = switched
    conn, response = open_stream(server, "hold")
    stream_pid = int(response.getheader("X-Bench-Backend-Pid"))
    assert len(response.read(CHUNK_BYTES)) == CHUNK_BYTES  # the body has started, not ended
    assert probe(server, timeout=5) == stream_pid  # the pool's one connection serves the probe meanwhile
    assert len(response.read()) == (CHUNKS - 1) * CHUNK_BYTES  # and the body is whole
    conn.close()
    assert "benchapp.views.stream started streaming" not in log.read_text()


def test_a_body_reading_a_cursor_keeps_it_and_is_reported(switched):
    server, log = switched
    conn, response = open_stream(server, "cursor-hold")
    assert response.read(CHUNK_BYTES).startswith(b"# rows from a ")
    assert probe(server, timeout=0.5) is None  # kept: its cursor is still being read
    rest = response.read()
    assert len(rest) == (CHUNKS - 1) * CHUNK_BYTES  # never broken by a release
    conn.close()
    assert "a cursor on it is still being read" in log.read_text()
