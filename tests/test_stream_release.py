"""Per variant, on real gunicorn (gevent worker) with django-db-geventpool and MAX_CONNS=1:
while a stream's body is still being sent, is its connection checked out (the server's
accounting) and unusable by anyone else (PostgreSQL's pg_stat_activity and a probe)? After the
stream ends, is it back?"""

import csv
import http.client
import json
import socket
import time

import pytest

from harness import postgres
from harness.sampler import read_metrics
from harness.server import Server
from tests.conftest import SPEC, app_backends

CHUNKS, CHUNK_BYTES, DELAY_MS = 3, 64, 1000
STREAM_MS = (CHUNKS - 1) * DELAY_MS


@pytest.fixture(scope="module")
def server(database, tmp_path_factory):
    directory = tmp_path_factory.mktemp("server")
    params = SPEC.params("slow-server", {"pool_max": 1, "seed_rows": 2000})
    with Server(SPEC.backends["geventpool"], params, database.app_url, postgres.free_port(),
                directory / "server.log", accounting_dir=directory) as s:
        s.accounting_dir = directory
        yield s


def wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def in_use(server):
    return read_metrics(server.url)["pool_in_use"]


def probe(server, timeout):
    """The backend pid that served a /probe/, or None if no answer within `timeout`."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("GET", "/probe/")
        return json.loads(conn.getresponse().read())["backend_pid"]
    except socket.timeout:
        return None
    finally:
        conn.close()


def stream_returns(server):
    rows = []
    for path in server.accounting_dir.glob("accounting-*.csv"):
        with open(path) as f:
            rows += [r for r in csv.DictReader(f) if r["event"] == "return" and r["route"] == "stream"]
    return rows


@pytest.mark.parametrize("variant, releases", [
    ("hold", False), ("close-old", True), ("force-close", True), ("release", True),
])
def test_connection_is_pinned_only_while_not_released(server, admin, database, variant, releases):
    wait_for(lambda: in_use(server) == 0)
    returns_before = len(stream_returns(server))
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", f"/stream/{variant}/?chunks={CHUNKS}&chunk_bytes={CHUNK_BYTES}&delay_ms={DELAY_MS}")
    response = conn.getresponse()
    assert response.status == 200
    stream_pid = int(response.getheader("X-Bench-Backend-Pid"))
    assert len(response.read(CHUNK_BYTES)) == CHUNK_BYTES  # the body has started, not ended

    if releases:
        assert in_use(server) == 0
        # The pool's only connection serves someone else while the stream goes on ...
        assert probe(server, timeout=5) == stream_pid
        # ... and PostgreSQL saw that backend run the probe's lookup after the stream's query.
        rows = {pid: (state, query) for pid, state, query in app_backends(admin, database)}
        assert '"sku" = ' in rows[stream_pid][1]
    else:
        assert in_use(server) == 1
        rows = app_backends(admin, database)
        assert [pid for pid, _, _ in rows] == [stream_pid]
        assert '"category" = ' in rows[0][2]  # its last statement is the stream view's query
        assert probe(server, timeout=0.5) is None  # nobody else can get a connection

    rest = response.read()
    assert len(rest) == (CHUNKS - 1) * CHUNK_BYTES
    conn.close()
    wait_for(lambda: in_use(server) == 0)
    assert probe(server, timeout=5) is not None

    new = stream_returns(server)[returns_before:]
    assert len(new) == 1
    held_ms = float(new[0]["hold_ms"])
    if releases:
        assert held_ms < STREAM_MS / 4
    else:
        assert STREAM_MS * 0.9 <= held_ms <= STREAM_MS * 2


def test_harness_refuses_an_unpatched_server(database, tmp_path):
    from harness import CellError

    params = SPEC.params("slow-server", {"pool_max": 1, "seed_rows": 2000})
    server = Server(SPEC.backends["geventpool"], params, database.app_url, postgres.free_port(),
                    tmp_path / "server.log")
    server.env["BENCH_PSYCOGREEN"] = "0"
    with pytest.raises(CellError, match="not gevent-patched"):
        with server:
            pass
    assert server.proc is None
