"""slow-read: a client that reads slowly holds the server (and, under hold, its connection)
only once the body outlasts the socket buffers between them."""

import http.client
import time

import pytest

from harness.stack.metrics import read_metrics
from tests.conftest import SPEC, app_server


@pytest.fixture(scope="module")
def server(database, tmp_path_factory):
    with app_server(database, tmp_path_factory.mktemp("slow-read"), "slow-read", pool_max=1) as s:
        yield s


def in_use(server):
    return read_metrics(server.url)["pool_in_use"]


def stall_after_first_mib(server, chunks, chunk_bytes):
    """Read 1 MiB, stop reading for 2 s, then say whether the server still held the connection."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", f"/stream/hold/?chunks={chunks}&chunk_bytes={chunk_bytes}&delay_ms=0")
    response = conn.getresponse()
    assert len(response.read(1024 * 1024)) == 1024 * 1024
    time.sleep(2)
    held = in_use(server)
    assert len(response.read()) == chunks * chunk_bytes - 1024 * 1024
    conn.close()
    deadline = time.monotonic() + 10
    while in_use(server) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert in_use(server) == 0
    return held


def test_the_scenarios_body_outlasts_the_buffers_so_the_slow_reader_holds_the_server(server):
    p = SPEC.params("slow-read")
    assert stall_after_first_mib(server, p.chunks, p.chunk_bytes) == 1


def test_a_body_the_buffers_can_take_is_written_at_once_whatever_the_reader_does(server):
    assert stall_after_first_mib(server, 16, 131072) == 0  # 2 MiB
