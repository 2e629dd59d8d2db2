"""The availability probe: what every other user of the site experiences.

One ProbeUser sends GET /probe/ --probe-rate times per second, open-loop: a new probe goes
out on schedule even when earlier ones are still waiting, so a stalled server shows up as
latency and timeouts instead of as fewer samples (no coordinated omission). A probe not
answered within --probe-timeout-s fails. At the end of a test the probes in flight are
waited for (up to the timeout), so none goes unrecorded; run with --stop-timeout of at least
the probe timeout, so that the stream clients keep their load on meanwhile (the harness does).
"""

import math

import _common  # registers the options and the request log
import gevent.pool
from locust import FastHttpUser, constant_pacing, task


def probes_in_flight(rate, timeout_s):
    """The most probes that can be waiting at once, plus room: one client connection each,
    so that no probe queues inside the load generator."""
    return math.ceil(rate * (timeout_s + 1)) + 5


class ProbeUser(FastHttpUser):
    fixed_count = 1

    def __init__(self, environment):
        # Read here, not at import, so that values from the web UI form apply.
        o = environment.parsed_options
        self.network_timeout = self.connection_timeout = o.probe_timeout_s
        self.concurrency = probes_in_flight(o.probe_rate, o.probe_timeout_s)
        self._pacing = constant_pacing(1 / o.probe_rate)
        super().__init__(environment)

    def wait_time(self):
        return self._pacing(self)

    def on_start(self):
        self.inflight = gevent.pool.Group()

    @task
    def tick(self):
        path = self.environment.parsed_options.probe_path
        self.inflight.spawn(self.client.get, path, name=path)

    def on_stop(self):
        self.inflight.join(timeout=self.environment.parsed_options.probe_timeout_s + 1)
        self.inflight.kill(block=False)
        _common.settle_probes(self.environment)
