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

import math
import random
import time
import uuid

import _common  # noqa: F401  (registers the options and the request log)
import gevent
from gevent import GreenletExit
from locust import FastHttpUser, constant, events, task
from locust.runners import MasterRunner


class StreamUnfinished(Exception):
    pass


# At a read rate a reader wakes when its next bytes are due, rounded up to this tick: 1,000 slow
# readers then cost the event loop 20 turns a second instead of 1,000 (make peer).
WAKE_TICK_S = 0.05

_streaming = {}  # user -> its stream's response, while it reads one


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
        if o.stream_path:  # your own app's stream, as it is: its length is its own
            name = url = o.stream_path
            expected = None
        else:
            name = f"/stream/{o.variant}/"
            url = f"{name}?chunks={o.chunks}&chunk_bytes={o.chunk_bytes}&delay_ms={o.delay_ms}"
            expected = o.chunks * o.chunk_bytes
        chunk = o.chunk_bytes if expected is not None else 1024
        # at a read rate, one read a second at most (a second's bytes), as slowhttptest reads: each
        # read wakes the client, and a thousand slow readers woken ten times a second cost ten times more
        step = chunk if not o.read_rate_bps else max(1, min(chunk, o.read_rate_bps))
        start_unix, started = time.time(), time.perf_counter()
        received, error = 0, None
        context = {"request_id": uuid.uuid4().hex}
        try:
            response = self.client.get(
                url, name=name, stream=True, headers={"X-Request-Id": context["request_id"]}, context=context
            )
            context["status"] = response.status_code
            if response.status_code != 200:
                error = RuntimeError(f"HTTP {response.status_code}")
            else:
                reading = None
                self.aborted = False
                _streaming[self] = response
                for data in response.iter_content(step, decode_content=False):
                    if reading is None:
                        reading = time.perf_counter()
                        self._fire("TTFB", name, start_unix, started, len(data), context)
                    received += len(data)
                    if o.read_rate_bps:
                        # wake on the next tick of a shared clock: the readers due in one tick
                        # are woken by one turn of the event loop, not a turn each
                        due = math.ceil((reading + received / o.read_rate_bps) / WAKE_TICK_S) * WAKE_TICK_S
                        pause = due - time.perf_counter()
                        if pause > 0:
                            time.sleep(pause)
                if expected is not None and received != expected:
                    error = RuntimeError(f"short body: {received} of {expected} bytes")
        except GreenletExit:  # the test is stopping
            what = (
                (f"{received} of {expected} bytes" if expected else f"{received} bytes")
                if received
                else "no first byte"
            )
            self._fire(
                "UNFINISHED",
                name,
                start_unix,
                started,
                received,
                context,
                StreamUnfinished(f"{what} when the test stopped"),
            )
            raise
        except Exception as exc:  # timeouts, resets
            error = exc
        finally:
            _streaming.pop(self, None)
        if getattr(self, "aborted", False):  # our own disconnect, whatever the read then raised
            self.aborted = False
            self._fire("ABORTED", name, start_unix, started, received, context)
            return
        self._fire("STREAM", name, start_unix, started, received, context, error)

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
