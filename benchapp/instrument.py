"""The benchmark's own instrumentation beside the package's connection accounting
(stream_release.accounting): garbage-collector pauses, and a /metrics registry cut to what the
sampler reads. Installed by benchapp.apps.BenchAppConfig.ready()."""

import collections
import gc
import time

from django.conf import settings
from django.core.signals import request_started
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, REGISTRY, Histogram

from stream_release import accounting
from stream_release.metrics import SECONDS_BUCKETS

GC_PAUSE = Histogram(
    "bench_gc_pause_seconds",
    "Pauses of the worker for Python's garbage collector, by generation (counted at its next request)",
    ["generation"],
    buckets=SECONDS_BUCKETS,
)
GC_LOGGED_S = 0.01  # a pause this long or longer also goes to the accounting log ("gc" event)

_gc_started = None  # perf_counter() at the start of the collection under way
# a generation's histogram, looked up once: the callback runs at every collection, young ones
# many times a second under load, and is part of what the instrumentation costs
_GC_PAUSE_BY_GENERATION = {generation: GC_PAUSE.labels(str(generation)) for generation in range(3)}
# (generation, seconds) of the pauses not in GC_PAUSE yet: the collector may run in any thread,
# inside anything, such as an update of prometheus_client's multiprocess values (one lock for
# them all, not reentrant), so the callback only appends here (atomic), and each request
# (request_started; /metrics is one) observes them first
_pauses = collections.deque()


def _gc_pause(phase, info):
    """gc.callbacks: every collection's pause; the whole worker (every greenlet) waits for it.
    Installed only with the accounting on."""
    global _gc_started
    if phase == "start":
        _gc_started = time.perf_counter()
        return
    if _gc_started is None:
        return
    took, _gc_started = time.perf_counter() - _gc_started, None
    _pauses.append((info["generation"], took))
    if took >= GC_LOGGED_S:
        accounting.event_log.write(
            "gc",
            "gc",
            hold_ms=accounting.fmt_ms(took),
            detail=f"generation {info['generation']}, {info['collected']} collected",
        )


def observe_pauses(**kwargs):
    """request_started: the pauses since the last request, into GC_PAUSE."""
    while True:
        try:  # another thread (gthread) may take the last one between a check and the pop
            generation, took = _pauses.popleft()
        except IndexError:
            return
        _GC_PAUSE_BY_GENERATION[generation].observe(took)


def install():
    # /metrics is read once a second while a cell runs (harness/measure/sampler.py): only the
    # accounting's metrics and the GC pauses. The default collectors cost more than all of them:
    # the process collector lists /proc/self/fd, one entry per open stream.
    for collector in (GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR):
        try:
            REGISTRY.unregister(collector)
        except KeyError:  # already done
            pass
    if settings.STREAM_RELEASE_ACCOUNTING and _gc_pause not in gc.callbacks:
        request_started.connect(observe_pauses, dispatch_uid="benchapp.instrument.gc_pauses")
        gc.callbacks.append(_gc_pause)
