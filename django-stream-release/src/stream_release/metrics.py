"""The Prometheus metrics of the accounting and the detector, when prometheus_client is
installed (`pip install django-stream-release[metrics]`); without it every metric is a
no-op and the rest works the same. Expose them with your usual /metrics view
(prometheus_client's, django-prometheus's): they are in prometheus_client's default REGISTRY.
"""

try:
    from prometheus_client import Counter, Gauge, Histogram, values
except ImportError:  # the metrics extra is not installed
    Counter = Gauge = Histogram = values = None

# prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, read when it is imported)
# keeps each process's values in a file, so a gauge there must be set to be seen. Otherwise the
# accounting's live gauges read its counts when /metrics is scraped (Gauge.set_function), and a
# checkout sets none of them.
MULTIPROCESS = values is not None and values.ValueClass is not values.MutexValue

SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60)


class _NoMetric:
    def labels(self, *args, **kwargs):
        return self

    def inc(self, amount=1):
        pass

    def set(self, value):
        pass

    def observe(self, value):
        pass

    def set_function(self, f):
        pass


def _make(kind, *args, **kwargs):
    return _NoMetric() if kind is None else kind(*args, **kwargs)


_LIVE = {"multiprocess_mode": "livesum"}
IN_USE = _make(Gauge, "stream_release_connections_in_use", "Database connections checked out right now", **_LIVE)
WAITING = _make(
    Gauge,
    "stream_release_connections_waiting",
    "Requests (threads, greenlets) waiting to check out a connection right now",
    **_LIVE,
)
IN_USE_PEAK = _make(
    Gauge,
    "stream_release_connections_in_use_peak",
    "Most connections in use at once since start",
    multiprocess_mode="max",
)
WAITING_PEAK = _make(
    Gauge, "stream_release_connections_waiting_peak", "Most waiters at once since start", multiprocess_mode="max"
)
CHECKOUTS = _make(Counter, "stream_release_checkouts", "Connections checked out", ["route"])
ACQUIRE_ERRORS = _make(Counter, "stream_release_acquire_errors", "Checkouts that raised", ["route"])
ACQUIRE_WAIT = _make(
    Histogram,
    "stream_release_acquire_wait_seconds",
    "Time from asking for a connection to having one (pool wait, connect and checks)",
    ["route"],
    buckets=SECONDS_BUCKETS,
)
HOLD = _make(
    Histogram,
    "stream_release_connection_hold_seconds",
    "Time from checkout to return of a connection",
    ["route"],
    buckets=SECONDS_BUCKETS,
)
DB_ERRORS = _make(Counter, "stream_release_db_errors", "Requests that failed with a django.db.Error", ["route"])
PINNED_STREAMS = _make(
    Counter,
    "stream_release_pinned_streams",
    "Streaming responses that started sending with a connection checked out outside an atomic block",
    ["alias", "view"],
)
PINNED_HOLD = _make(
    Histogram,
    "stream_release_pinned_stream_hold_seconds",
    "How long a pinned stream held its connection: from its checkout (or the request's start, "
    "for a connection kept from an earlier request) to the end of the body, or to the first "
    "chunk after it was given back",
    ["alias"],
    buckets=SECONDS_BUCKETS,
)
