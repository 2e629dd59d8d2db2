"""Connection accounting: who holds a database connection, who waits for one, for how long.

`AccountingMixin` wraps any Django DatabaseWrapper at the two points every backend shares:
`get_new_connection()` (a checkout: a new connection, or one taken from a pool) and
`_close()` (a return: closed, or given back to the pool). It keeps Prometheus metrics for
live sampling (/metrics) and, when BENCH_ACCOUNTING_DIR is set, appends one exact line per
event to `accounting-<pid>.csv` there, from which the harness computes peaks and percentiles.
BENCH_ACCOUNTING=0 turns all of it off (the wrapper then only passes the calls on).
"""

import contextvars
import gc
import itertools
import os
import threading
import time
import weakref

from django.conf import settings
from prometheus_client import GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR, REGISTRY, Counter, Gauge, Histogram

# /metrics is read ten times a second while a cell runs (harness/sampler.py): only this
# module's metrics. The default collectors cost more than all of them: the process collector
# lists /proc/self/fd, one entry per open stream.
for _collector in (GC_COLLECTOR, PLATFORM_COLLECTOR, PROCESS_COLLECTOR):
    REGISTRY.unregister(_collector)

# The URL name of the request being served by this greenlet ("stream", "probe", ...).
current_route = contextvars.ContextVar("bench_route", default="other")

_LIVE = {"multiprocess_mode": "livesum"}
IN_USE = Gauge("bench_db_connections_in_use", "Connections checked out right now", **_LIVE)
WAITING = Gauge(
    "bench_db_connections_waiting", "Greenlets waiting to check out a connection right now", **_LIVE
)
IN_USE_PEAK = Gauge(
    "bench_db_connections_in_use_peak", "Highest connections in use since start", multiprocess_mode="max"
)
WAITING_PEAK = Gauge(
    "bench_db_connections_waiting_peak", "Highest waiters since start", multiprocess_mode="max"
)
CHECKOUTS = Counter("bench_db_checkouts", "Connections checked out", ["route"])
ACQUIRE_ERRORS = Counter("bench_db_acquire_errors", "Checkouts that raised", ["route"])
SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60)
ACQUIRE_WAIT = Histogram(
    "bench_db_acquire_wait_seconds",
    "Time from asking for a connection to having one (pool wait, connect and checks)",
    ["route"],
    buckets=SECONDS_BUCKETS,
)
HOLD = Histogram(
    "bench_db_connection_hold_seconds", "Time from checkout to return of a connection", ["route"],
    buckets=SECONDS_BUCKETS,
)
DB_ERRORS = Counter("bench_db_errors", "Requests that failed with a django.db.Error", ["route"])
GC_PAUSE = Histogram(
    "bench_gc_pause_seconds", "Pauses of the worker for Python's garbage collector, by generation", ["generation"],
    buckets=SECONDS_BUCKETS,
)
GC_LOGGED_S = 0.01  # a pause this long or longer also goes to the accounting log ("gc" event)

EVENT_LOG_HEADER = "event,unix_s,route,wait_ms,hold_ms,backend_pid,acquire_id,detail\n"


class _EventLog:
    """One CSV per worker process, line-buffered so a killed worker loses nothing written."""

    def __init__(self):
        self._file = None
        self._pid = None
        self._lock = threading.RLock()  # a finalizer may write while this greenlet writes

    def write(self, event, route, wait_ms="", hold_ms="", backend_pid="", acquire_id="", detail=""):
        directory = settings.BENCH_ACCOUNTING_DIR
        if not directory:
            return
        with self._lock:
            if self._pid != os.getpid():
                path = os.path.join(directory, f"accounting-{os.getpid()}.csv")
                self._file = open(path, "a", buffering=1, encoding="utf-8")
                if self._file.tell() == 0:
                    self._file.write(EVENT_LOG_HEADER)
                self._pid = os.getpid()
            detail = detail.replace('"', "'").replace("\n", " ")
            self._file.write(
                f'{event},{time.time():.6f},{route},{wait_ms},{hold_ms},{backend_pid},{acquire_id},"{detail}"\n'
            )


event_log = _EventLog()


def _fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


class _Counts:
    """In-process counts behind the gauges; a lock keeps them exact under threads too."""

    def __init__(self):
        self.lock = threading.RLock()
        self.in_use = self.waiting = self.in_use_peak = self.waiting_peak = 0

    def add(self, in_use=0, waiting=0):
        with self.lock:
            self.in_use += in_use
            self.waiting += waiting
            self.in_use_peak = max(self.in_use_peak, self.in_use)
            self.waiting_peak = max(self.waiting_peak, self.waiting)
            IN_USE.set(self.in_use)
            WAITING.set(self.waiting)
            IN_USE_PEAK.set(self.in_use_peak)
            WAITING_PEAK.set(self.waiting_peak)


counts = _Counts()
_acquire_ids = itertools.count(1)


class AccountingMixin:
    """Put first in the bases of a backend's DatabaseWrapper: `class W(AccountingMixin, Base)`."""

    _bench_holder = None  # [checkout] where checkout is [perf_counter, route, backend pid]

    def pool_limit(self):
        """The most connections this process may hold, or None when unbounded."""
        return None

    def get_new_connection(self, conn_params):
        if not settings.BENCH_ACCOUNTING:
            return super().get_new_connection(conn_params)
        route = current_route.get()
        acquire_id = next(_acquire_ids)  # pairs this acquire with its checkout or error
        counts.add(waiting=1)
        event_log.write("acquire", route, acquire_id=acquire_id)
        started = time.perf_counter()
        try:
            conn = super().get_new_connection(conn_params)
        except BaseException as exc:
            counts.add(waiting=-1)
            ACQUIRE_ERRORS.labels(route).inc()
            waited = _fmt_ms(time.perf_counter() - started)
            event_log.write("acquire_error", route, waited, acquire_id=acquire_id,
                            detail=f"{type(exc).__name__}: {exc}")
            raise
        waited = time.perf_counter() - started
        counts.add(in_use=1, waiting=-1)
        CHECKOUTS.labels(route).inc()
        ACQUIRE_WAIT.labels(route).observe(waited)
        pid = _backend_pid(conn)
        if self._bench_holder is None:
            self._bench_holder = [None]
            # A persistent connection whose greenlet ends is never closed by Django: it goes
            # when the garbage collector takes its wrapper, and is counted as returned then.
            weakref.finalize(self, _collected, self._bench_holder)
        self._bench_holder[0] = [time.perf_counter(), route, pid]
        event_log.write("checkout", route, _fmt_ms(waited), backend_pid=pid, acquire_id=acquire_id)
        return conn

    def _close(self):
        if not settings.BENCH_ACCOUNTING:
            return super()._close()
        holder = self._bench_holder
        try:
            super()._close()
        finally:
            if holder is not None:
                _returned(holder[0])
                holder[0] = None


def _collected(holder):
    _returned(holder[0], "garbage-collected")


def _returned(checkout, detail=""):
    """Count a checkout [perf_counter, route, pid] as returned, once."""
    if not checkout:
        return
    started, route, pid = checkout
    checkout.clear()
    held = time.perf_counter() - started
    counts.add(in_use=-1)
    HOLD.labels(route).observe(held)
    event_log.write("return", route, hold_ms=_fmt_ms(held), backend_pid=pid, detail=detail)


def _backend_pid(conn):
    """The PostgreSQL backend pid, read from libpq without a round trip."""
    try:
        return conn.info.backend_pid
    except Exception:  # a closed or broken connection
        return ""


_gc_started = []


def _gc_pause(phase, info):
    """gc.callbacks: every collection's pause; the whole worker (every greenlet) waits for it."""
    if phase == "start":
        _gc_started[:] = [time.perf_counter()]
        return
    if not _gc_started or not settings.BENCH_ACCOUNTING:
        return
    took = time.perf_counter() - _gc_started.pop()
    GC_PAUSE.labels(str(info["generation"])).observe(took)
    if took >= GC_LOGGED_S:
        event_log.write("gc", "gc", hold_ms=_fmt_ms(took), detail=f"generation {info['generation']}, "
                        f"{info['collected']} collected")


gc.callbacks.append(_gc_pause)


def record_db_error(exc):
    route = current_route.get()
    DB_ERRORS.labels(route).inc()
    event_log.write("db_error", route, detail=f"{type(exc).__name__}: {exc}")


class RouteMiddleware:
    """Labels the greenlet with the URL name, so checkouts made later while streaming keep it."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        current_route.set("other")
        return self.get_response(request)

    def process_view(self, request, view_func, view_args, view_kwargs):
        current_route.set(request.resolver_match.url_name or "other")

    def process_exception(self, request, exception):
        from django.db import Error

        if isinstance(exception, Error):
            record_db_error(exception)
