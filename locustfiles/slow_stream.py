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
"""

import time
import uuid

from gevent import GreenletExit
from locust import FastHttpUser, constant, events, task

import _common  # noqa: F401  (registers the options and the request log)


class StreamUnfinished(Exception):
    pass


class SlowStreamUser(FastHttpUser):
    wait_time = constant(0)
    concurrency = 1

    def __init__(self, environment):
        # Read here, not at import, so that values from the web UI form apply.
        timeout = environment.parsed_options.stream_timeout_s
        self.network_timeout = self.connection_timeout = timeout
        super().__init__(environment)

    @task
    def stream(self):
        o = self.environment.parsed_options
        name = f"/stream/{o.variant}/"
        url = f"{name}?chunks={o.chunks}&chunk_bytes={o.chunk_bytes}&delay_ms={o.delay_ms}"
        expected = o.chunks * o.chunk_bytes
        step = o.chunk_bytes if not o.read_rate_bps else max(1, min(o.chunk_bytes, o.read_rate_bps // 10))
        start_unix, started = time.time(), time.perf_counter()
        received, error = 0, None
        context = {"request_id": uuid.uuid4().hex}
        try:
            response = self.client.get(url, name=name, stream=True, headers={"X-Request-Id": context["request_id"]},
                                       context=context)
            context["status"] = response.status_code
            if response.status_code != 200:
                error = RuntimeError(f"HTTP {response.status_code}")
            else:
                reading = None
                for data in response.iter_content(step, decode_content=False):
                    if reading is None:
                        reading = time.perf_counter()
                        self._fire("TTFB", name, start_unix, started, len(data), context)
                    received += len(data)
                    if o.read_rate_bps:
                        pause = reading + received / o.read_rate_bps - time.perf_counter()
                        if pause > 0:
                            time.sleep(pause)
                if received != expected:
                    error = RuntimeError(f"short body: {received} of {expected} bytes")
        except GreenletExit:  # the test is stopping
            what = f"{received} of {expected} bytes" if received else "no first byte"
            self._fire("UNFINISHED", name, start_unix, started, received, context,
                       StreamUnfinished(f"{what} when the test stopped"))
            raise
        except Exception as exc:  # timeouts, resets
            error = exc
        self._fire("STREAM", name, start_unix, started, received, context, error)

    def _fire(self, kind, name, start_unix, started, length, context, error=None):
        events.request.fire(
            request_type=kind, name=name, response_time=(time.perf_counter() - started) * 1000,
            response_length=length, exception=error, context=dict(context), start_time=start_unix,
        )
