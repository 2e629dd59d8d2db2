"""Slow streaming clients: each opens /stream/<variant>/ and reads it to the end, at most
--read-rate-bps bytes per second, then opens the next. Each stream sends a new X-Request-Id,
the key of the audit row the view writes; the request log records it with the status, so
that the harness can check that every stream answered 200 left its row (lost_writes).

Besides Locust's own GET entry (time to headers, since the body is streamed) each stream
records, under the same name: TTFB (time to the first body bytes) and STREAM (the whole body;
failed if it ended short, broke or got an error status). A stream still going when the test
stops records UNFINISHED instead, saying whether it had received anything: it is neither
completed nor failed, and leaving it out would hide the longest waits. With --stop-timeout a
stream goes on after the test begins stopping, until it ends or the timeout.

Each client waits a random part of a second before its first stream: Locust starts a
second's new users at once, and independent clients would not all arrive at that instant.

With --abort-at-s, every stream in progress that many seconds after the test starts is
disconnected mid-stream (the client closes its socket, as a browser does when its user
leaves) and records ABORTED, not a failure; the user then starts a new stream.
"""

import itertools
import math
import random
import socket
import time
import uuid
from dataclasses import dataclass

import _common  # noqa: F401  (registers the options and the request log)
import gevent
from gevent import GreenletExit
from geventhttpclient import client as client_module
from locust import FastHttpUser, constant, events, task
from locust.runners import MasterRunner


class StreamUnfinished(Exception):
    pass


# At a read rate a reader wakes when its next bytes are due, rounded up to this tick: 1,000 slow
# readers then cost the event loop 20 turns a second instead of 1,000 (make peer).
WAKE_TICK_S = 0.05

_streaming = {}  # user -> its stream's response, while it reads one


_KERNEL_WINDOW_POOL = client_module.ConnectionPool


class _SmallWindowPool(client_module.ConnectionPool):
    """geventhttpclient's connection pool, its sockets' receive buffer set before they connect
    (what the TCP window is scaled from): slowhttptest's small window, so that the server
    hands its body over a window at a time (--recv-buffer-bytes). Linux doubles the value, and
    keeps at least 2,304 bytes."""

    recv_buffer_bytes = 0

    def _create_tcp_socket(self, family, socktype, protocol):
        sock = super()._create_tcp_socket(family, socktype, protocol)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.recv_buffer_bytes)
        return sock


@events.test_start.add_listener
def small_window(environment, **_):
    """With --recv-buffer-bytes, every connection this process opens from now on gets that
    receive buffer (the probe's too: its answers are a few hundred bytes, which no window
    delays). At the test's start, not the process's: a remote worker and make ui's form get
    the test's options only then; the users connect after."""
    size = getattr(environment.parsed_options, "recv_buffer_bytes", 0)
    _SmallWindowPool.recv_buffer_bytes = size
    client_module.ConnectionPool = _SmallWindowPool if size else _KERNEL_WINDOW_POOL


@events.test_start.add_listener
def schedule_abort(environment, **_):
    at = getattr(environment.parsed_options, "abort_at_s", 0)
    if at and not isinstance(environment.runner, MasterRunner):  # the users run here
        gevent.spawn_later(at, _abort_streams)


def _abort_streams():
    for user, response in list(_streaming.items()):
        user.aborted = True
        raw = response._response  # geventhttpclient's response: close its socket, never reuse it
        if raw is not None and raw._sock is not None:
            raw._pool.release_socket(raw._sock)
            raw._sock = None


@dataclass
class _Progress:
    """One stream in progress: what its entries are recorded with, and the bytes read so far."""

    name: str
    start_unix: float
    started: float
    context: dict
    received: int = 0


def _target(o):
    """(entry name, URL, expected body length or None) of the stream to open."""
    if o.stream_path:  # your own app's stream, as it is: its length is its own
        name = url = o.stream_path
        expected = None
    else:
        name = f"/stream/{o.variant}/"
        url = f"{name}?chunks={o.chunks}&chunk_bytes={o.chunk_bytes}&delay_ms={o.delay_ms}"
        expected = o.chunks * o.chunk_bytes
    return name, url, expected


def _read_step(o, expected):
    """How many bytes each read of the body asks for."""
    chunk = o.chunk_bytes if expected is not None else 1024
    # at a read rate, one read a second at most (a second's bytes), as slowhttptest reads: each
    # read wakes the client, and a thousand slow readers woken ten times a second cost ten times more
    return chunk if not o.read_rate_bps else max(1, min(chunk, o.read_rate_bps))


class SlowStreamUser(FastHttpUser):
    wait_time = constant(0)
    concurrency = 1

    def __init__(self, environment):
        # Read here, not at import, so that values from the web UI form apply.
        timeout = environment.parsed_options.stream_timeout_s
        self.network_timeout = self.connection_timeout = timeout
        super().__init__(environment)

    def on_start(self):
        # Locust starts each second's new users at the same instant; independent clients do
        # not arrive together, and a herd of them would queue for the pool only because the
        # load generator batched them (and again each time their streams restart together).
        gevent.sleep(random.random())

    @task
    def stream(self):
        o = self.environment.parsed_options
        name, url, expected = _target(o)
        step = _read_step(o, expected)
        start_unix, started = time.time(), time.perf_counter()
        error = None
        progress = _Progress(name, start_unix, started, {"request_id": uuid.uuid4().hex})
        try:
            error = self._request(o, url, expected, step, progress)
        except GreenletExit:  # the test is stopping
            self._fire_unfinished(progress, expected)
            raise
        except Exception as exc:  # timeouts, resets
            error = exc
        finally:
            _streaming.pop(self, None)
        if getattr(self, "aborted", False):  # our own disconnect, whatever the read then raised
            self.aborted = False
            self._fire("ABORTED", name, start_unix, started, progress.received, progress.context)
            return
        self._fire("STREAM", name, start_unix, started, progress.received, progress.context, error)

    def _request(self, o, url, expected, step, progress):
        """Open the stream and read it to the end; the error the STREAM entry records, if any
        (raises what the request or a read raised)."""
        context = progress.context
        response = self.client.get(
            url, name=progress.name, stream=True, headers={"X-Request-Id": context["request_id"]}, context=context
        )
        context["status"] = response.status_code
        if response.status_code != 200:
            return RuntimeError(f"HTTP {response.status_code}")
        self.aborted = False
        _streaming[self] = response
        self._read_body(o, response, step, progress)
        if expected is not None and progress.received != expected:
            return RuntimeError(f"short body: {progress.received} of {expected} bytes")
        return None

    def _read_body(self, o, response, step, progress):
        """Read the body `step` bytes at a time, at most o.read_rate_bps bytes a second, counting them in
        progress.received; fires TTFB at the first bytes."""
        reading = None
        # A read of `step` bytes returns only once `step` have come (or the body ended): the first
        # read asks for one byte, so that the first byte is timed when it comes, whatever the block
        # size (an event stream's first 64 bytes would otherwise wait for a whole 1 KiB block)
        first = itertools.islice(response.iter_content(1, decode_content=False), 1)
        for data in itertools.chain(first, response.iter_content(step, decode_content=False)):
            if reading is None:
                reading = time.perf_counter()
                self._fire("TTFB", progress.name, progress.start_unix, progress.started, len(data), progress.context)
            progress.received += len(data)
            if o.read_rate_bps:
                # wake on the next tick of a shared clock: the readers due in one tick
                # are woken by one turn of the event loop, not a turn each
                due = math.ceil((reading + progress.received / o.read_rate_bps) / WAKE_TICK_S) * WAKE_TICK_S
                pause = due - time.perf_counter()
                if pause > 0:
                    time.sleep(pause)

    def _fire_unfinished(self, progress, expected):
        """Record UNFINISHED for a stream the test's stop cut short, saying how far it got."""
        received = progress.received
        what = (f"{received} of {expected} bytes" if expected else f"{received} bytes") if received else "no first byte"
        self._fire(
            "UNFINISHED",
            progress.name,
            progress.start_unix,
            progress.started,
            received,
            progress.context,
            StreamUnfinished(f"{what} when the test stopped"),
        )

    def _fire(self, kind, name, start_unix, started, length, context, error=None):
        events.request.fire(
            request_type=kind,
            name=name,
            response_time=(time.perf_counter() - started) * 1000,
            response_length=length,
            exception=error,
            context=dict(context),
            start_time=start_unix,
        )
