"""slow-read: a client that reads slowly holds the server (and, under hold, its connection)
only once the body outlasts the socket buffers between them."""

import http.client
import subprocess
import time

import pytest

from harness import ROOT
from harness.measure.load import locust_command
from harness.results import cellfiles
from harness.spec import matrix
from harness.stack.metrics import read_metrics
from tests.conftest import SPEC, app_server
from tests.support.waiting import wait_for


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


def test_a_streams_first_byte_is_timed_when_it_comes_whatever_the_read_block(server, tmp_path):
    """Events of 64 bytes a second apart (an SSE stream, a body smaller than the slow client's
    1 KiB read block for a stream of unknown length): the first byte is timed when it arrives,
    as an observer we did not write (the standard library's http.client) sees it, not when the
    body ends."""
    path = "/stream/release/?chunks=3&chunk_bytes=64&delay_ms=1000"
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    started = time.perf_counter()
    conn.request("GET", path)
    response = conn.getresponse()
    assert len(response.read(1)) == 1
    observed_ms = (time.perf_counter() - started) * 1000
    assert len(response.read()) == 191
    conn.close()

    cell = SPEC.cells("smoke", matrix.parse_overrides(["streams=1", "spawn_s=1", "duration_s=4"]))[0]
    command = locust_command(cell, server.url, tmp_path, stream_path=path, probe_path="/probe/")
    subprocess.run([str(a) for a in command], cwd=ROOT, capture_output=True, timeout=60, check=True)
    requests = cellfiles.read_requests(tmp_path)
    whole = [r["response_time_ms"] for r in requests if r["request_type"] == "STREAM" and not r["failure"]]
    first = [r["response_time_ms"] for r in requests if r["request_type"] == "TTFB" and r["name"] == path]
    assert whole and min(whole) >= 1900  # two pauses of a second
    # the second event leaves a second after the first: a first byte timed before it was timed
    # when it came, not at the body's end
    assert observed_ms < 1000 and first and max(first) < 1000, (observed_ms, first, whole)


def _server_still_writing(server, tmp_path, recv_buffer_bytes):
    """Our slow client reads a 2 MiB body at 512 B/s: is the server still writing it (and, under
    hold, still holding its connection) 1.5 s after the stream checked its connection out?"""
    path = "/stream/hold/?chunks=16&chunk_bytes=131072&delay_ms=0"
    overrides = [
        "streams=1",
        "spawn_s=1",
        "duration_s=4",
        "read_rate_bps=512",
        f"recv_buffer_bytes={recv_buffer_bytes}",
    ]
    cell = SPEC.cells("smoke", matrix.parse_overrides(overrides))[0]
    command = locust_command(cell, server.url, tmp_path, stream_path=path, probe_path="/healthz")
    before = read_metrics(server.url)["pool_checkouts_total"]
    locust = subprocess.Popen([str(a) for a in command], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        # Locust's start takes seconds on a loaded machine: wait for the stream, not for a time
        wait_for(
            lambda: read_metrics(server.url)["pool_checkouts_total"] != before or locust.poll() is not None,
            30,
            "the slow client's stream",
        )
        assert locust.poll() is None, "the slow client ended before its stream started"
        time.sleep(1.5)
        return in_use(server)
    finally:
        locust.wait(timeout=60)


def test_a_small_receive_window_keeps_the_server_writing_to_our_slow_reader(server, tmp_path):
    """recv_buffer_bytes (slowhttptest's small window, make peer's peer-slow-read-small-window):
    the kernel's buffers take a 2 MiB body at once, so the server is done writing while our
    client still reads; with a 1 KiB window its write waits on the reader and holds on."""
    assert _server_still_writing(server, tmp_path / "kernel", 0) == 0
    assert _server_still_writing(server, tmp_path / "small", 1024) == 1
