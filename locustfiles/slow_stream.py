"""Slow streaming clients: each opens /stream/<variant>/ and reads it to the end, at most
--read-rate-bps bytes per second, then opens the next.

Besides Locust's own GET entry (time to headers, since the body is streamed) each stream
records two entries under the same name: TTFB (time to the first body bytes) and STREAM
(the whole body, failed if it ended short or broke).
"""

import time

from locust import FastHttpUser, constant, events, task

import _common  # noqa: F401  (registers the options and the request log)


class SlowStreamUser(FastHttpUser):
    wait_time = constant(0)
    concurrency = 1

    @task
    def stream(self):
        o = self.environment.parsed_options
        name = f"/stream/{o.variant}/"
        url = f"{name}?chunks={o.chunks}&chunk_bytes={o.chunk_bytes}&delay_ms={o.delay_ms}"
        expected = o.chunks * o.chunk_bytes
        step = o.chunk_bytes if not o.read_rate_bps else max(1, min(o.chunk_bytes, o.read_rate_bps // 10))
        start_unix, started = time.time(), time.perf_counter()
        received, error = 0, None
        try:
            response = self.client.get(url, name=name, stream=True)
            if response.status_code != 200:
                error = RuntimeError(f"HTTP {response.status_code}")
            else:
                reading = None
                for data in response.iter_content(step, decode_content=False):
                    if reading is None:
                        reading = time.perf_counter()
                        self._fire("TTFB", name, start_unix, started, len(data))
                    received += len(data)
                    if o.read_rate_bps:
                        pause = reading + received / o.read_rate_bps - time.perf_counter()
                        if pause > 0:
                            time.sleep(pause)
                if received != expected:
                    error = RuntimeError(f"short body: {received} of {expected} bytes")
        except Exception as exc:  # timeouts, resets; not GreenletExit at the end of a test
            error = exc
        self._fire("STREAM", name, start_unix, started, received, error)

    def _fire(self, kind, name, start_unix, started, length, error=None):
        events.request.fire(
            request_type=kind, name=name, response_time=(time.perf_counter() - started) * 1000,
            response_length=length, exception=error, context={}, start_time=start_unix,
        )


@events.init.add_listener
def configure(environment, **_):
    o = environment.parsed_options
    if o is not None:
        SlowStreamUser.network_timeout = o.stream_timeout_s
        SlowStreamUser.connection_timeout = o.stream_timeout_s
