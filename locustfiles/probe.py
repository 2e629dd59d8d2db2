"""The availability probe: what every other user of the site experiences.

One ProbeUser sends GET /probe/ --probe-rate times per second, open-loop: a new probe goes
out on schedule even when earlier ones are still waiting, so a stalled server shows up as
latency and timeouts instead of as fewer samples (no coordinated omission). A probe not
answered within --probe-timeout-s fails. At the end of a test the probes in flight are
waited for (up to the timeout), so none goes unrecorded.
"""

import math

import gevent.pool
from locust import FastHttpUser, constant_pacing, events, task

import _common  # noqa: F401  (registers the options and the request log)


class ProbeUser(FastHttpUser):
    fixed_count = 1
    wait_time = constant_pacing(0.2)

    def on_start(self):
        self.inflight = gevent.pool.Group()

    @task
    def tick(self):
        self.inflight.spawn(self.client.get, "/probe/", name="/probe/")

    def on_stop(self):
        self.inflight.join(timeout=self.environment.parsed_options.probe_timeout_s + 1)
        self.inflight.kill(block=False)


@events.init.add_listener
def configure(environment, **_):
    o = environment.parsed_options
    if o is not None:
        ProbeUser.wait_time = constant_pacing(1 / o.probe_rate)
        ProbeUser.network_timeout = o.probe_timeout_s
        ProbeUser.connection_timeout = o.probe_timeout_s
        # Enough client connections for every probe that can be in flight at once, so that
        # no probe queues inside the load generator.
        ProbeUser.concurrency = math.ceil(o.probe_rate * (o.probe_timeout_s + 1)) + 5
