"""The benchmark's own instrumentation beside the package's connection accounting
(stream_release.accounting): garbage-collector pauses, and a /metrics registry cut to what the
sampler reads. Installed by benchapp.apps.BenchAppConfig.ready()."""

import gc
import time

from django.conf import settings
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, REGISTRY, Histogram

from stream_release import accounting
from stream_release.metrics import SECONDS_BUCKETS

GC_PAUSE = Histogram(
    "bench_gc_pause_seconds",
    "Pauses of the worker for Python's garbage collector, by generation",
    ["generation"],
    buckets=SECONDS_BUCKETS,
)
GC_LOGGED_S = 0.01  # a pause this long or longer also goes to the accounting log ("gc" event)

_gc_started = None  # perf_counter() at the start of the collection under way
# a generation's histogram, looked up once: the callback runs at every collection, young ones
# many times a second under load, and is part of what the instrumentation costs
_GC_PAUSE_BY_GENERATION = {generation: GC_PAUSE.labels(str(generation)) for generation in range(3)}


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
    _GC_PAUSE_BY_GENERATION[info["generation"]].observe(took)
    if took >= GC_LOGGED_S:
        accounting.event_log.write(
            "gc",
            "gc",
            hold_ms=accounting.fmt_ms(took),
            detail=f"generation {info['generation']}, {info['collected']} collected",
        )


def install():
    # /metrics is read once a second while a cell runs (harness/sampler.py): only the
    # accounting's metrics and the GC pauses. The default collectors cost more than all of them:
    # the process collector lists /proc/self/fd, one entry per open stream.
    for collector in (GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR):
        try:
            REGISTRY.unregister(collector)
        except KeyError:  # already done
            pass
    if settings.STREAM_RELEASE_ACCOUNTING and _gc_pause not in gc.callbacks:
        gc.callbacks.append(_gc_pause)
