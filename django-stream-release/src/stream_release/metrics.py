"""The Prometheus metrics of the accounting and the detector, when prometheus_client is
installed (`pip install django-stream-release[metrics]`); without it every metric is a
no-op and the rest works the same. Expose them with your usual /metrics view
(prometheus_client's, django-prometheus's): they are in prometheus_client's default REGISTRY.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Literal, ParamSpec, TypeVar

try:
    from prometheus_client import REGISTRY, Counter, Gauge, Histogram, values
except ImportError:  # the metrics extra is not installed
    REGISTRY = Counter = Gauge = Histogram = values = None  # type: ignore[assignment,misc]

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

    from stream_release.accounting import _Counts

_P = ParamSpec("_P")
_M = TypeVar("_M")

# prometheus_client's multiprocess mode (PROMETHEUS_MULTIPROC_DIR, read when it is imported)
# keeps each process's values in a file, so a value there must be set to be seen.
MULTIPROCESS = values is not None and values.ValueClass is not values.MutexValue

SECONDS_BUCKETS = (0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 2, 5, 10, 30, 60)


class _NoMetric:
    def labels(self, *args: object, **kwargs: object) -> _NoMetric:
        return self

    def inc(self, amount: float = 1) -> None:
        pass

    def observe(self, value: float) -> None:
        pass


def _make(kind: Callable[_P, _M] | None, *args: _P.args, **kwargs: _P.kwargs) -> _M | _NoMetric:
    return _NoMetric() if kind is None else kind(*args, **kwargs)


# The accounting's own metrics: the connections in use and waiting, with their peaks, and by
# route the checkouts, their waits and their holds. Outside the multiprocess mode they are read
# from the accounting's counts when /metrics is scraped (register_counts): a checkout or a
# return changes a few numbers under one lock, where prometheus_client's metrics take a lock
# for each value they change (five for a checkout and its return, each gevent's under its
# monkey-patching). In the multiprocess mode each process's values must be in its file, so they
# are prometheus_client's metrics, set as they change (LIVE and BY_ROUTE, None otherwise).
# the counts' attribute: (name, documentation, multiprocess_mode)
GAUGES: dict[str, tuple[str, str, Literal["livesum", "max"]]] = {
    "in_use": ("stream_release_connections_in_use", "Database connections checked out right now", "livesum"),
    "waiting": (
        "stream_release_connections_waiting",
        "Requests (threads, greenlets) waiting to check out a connection right now",
        "livesum",
    ),
    "in_use_peak": ("stream_release_connections_in_use_peak", "Most connections in use at once since start", "max"),
    "waiting_peak": ("stream_release_connections_waiting_peak", "Most waiters at once since start", "max"),
}
CHECKOUTS_DOC = ("stream_release_checkouts", "Connections checked out")
ACQUIRE_WAIT_DOC = (
    "stream_release_acquire_wait_seconds",
    "Time from asking for a connection to having one (pool wait, connect and checks)",
)
HOLD_DOC = ("stream_release_connection_hold_seconds", "Time from checkout to return of a connection")


class Buckets:
    """One histogram's counts as Prometheus shows them: by upper bound (SECONDS_BUCKETS, then
    +Inf), and the sum. Not locked: its owner's lock guards it."""

    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(SECONDS_BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(SECONDS_BUCKETS, seconds)] += 1  # the first bound >= it
        self.sum += seconds

    def copy(self) -> Buckets:
        other = Buckets()
        other.counts, other.sum = list(self.counts), self.sum
        return other


class RouteCounts:
    """A route's checkouts, and their waits and holds."""

    __slots__ = ("checkouts", "wait", "hold")

    def __init__(self) -> None:
        self.checkouts = 0
        self.wait = Buckets()
        self.hold = Buckets()

    def copy(self) -> RouteCounts:
        other = RouteCounts()
        other.checkouts, other.wait, other.hold = self.checkouts, self.wait.copy(), self.hold.copy()
        return other


class _CountsCollector:
    """The accounting's gauges and checkouts, read from its counts
    (stream_release.accounting._Counts) at each scrape, under the counts' lock: what one scrape
    shows is one moment."""

    def __init__(self, counts: _Counts) -> None:
        self.counts = counts

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self.counts.lock:
            self.counts.settle()
            gauges = {attribute: getattr(self.counts, attribute) for attribute in GAUGES}
            checkouts = [(route, c.checkouts) for route, c in self.counts.routes.items()]
        for attribute, (name, documentation, _) in GAUGES.items():
            yield GaugeMetricFamily(name, documentation, value=gauges[attribute])
        family = CounterMetricFamily(*CHECKOUTS_DOC, labels=["route"])
        for route, n in checkouts:
            family.add_metric([route], n)
        yield family


class _HistogramsCollector(_CountsCollector):
    """The accounting's two histograms, from the same counts: a collector of their own, so that
    a scrape for some samples only (prometheus_client's `name[]`, as the harness's sampler
    asks once a second) need not build them."""

    def collect(self) -> Iterator[Metric]:
        from prometheus_client.core import HistogramMetricFamily
        from prometheus_client.utils import floatToGoString

        with self.counts.lock:
            self.counts.settle()
            routes = [(route, c.copy()) for route, c in self.counts.routes.items()]
        bounds: list[str] = [floatToGoString(b) for b in SECONDS_BUCKETS] + ["+Inf"]  # type: ignore[no-untyped-call]
        for doc, attribute in ((ACQUIRE_WAIT_DOC, "wait"), (HOLD_DOC, "hold")):
            family = HistogramMetricFamily(*doc, labels=["route"])
            for route, route_counts in routes:
                buckets = getattr(route_counts, attribute)
                cumulative = itertools.accumulate(buckets.counts)
                family.add_metric([route], list(zip(bounds, cumulative, strict=True)), buckets.sum)
            yield family


def register_counts(counts: _Counts) -> None:
    """Serve the accounting's metrics from `counts` (outside the multiprocess mode)."""
    if values is not None and not MULTIPROCESS:
        REGISTRY.register(_CountsCollector(counts))
        REGISTRY.register(_HistogramsCollector(counts))


if MULTIPROCESS:
    LIVE: dict[str, Gauge] | None = {
        attribute: Gauge(name, documentation, multiprocess_mode=mode)
        for attribute, (name, documentation, mode) in GAUGES.items()
    }
    BY_ROUTE: tuple[Counter, Histogram, Histogram] | None = (  # checkouts, acquire wait, hold
        Counter(*CHECKOUTS_DOC, ["route"]),
        Histogram(*ACQUIRE_WAIT_DOC, ["route"], buckets=SECONDS_BUCKETS),
        Histogram(*HOLD_DOC, ["route"], buckets=SECONDS_BUCKETS),
    )
else:
    LIVE = BY_ROUTE = None
_BY_ROUTE_CHILDREN: dict[str, tuple[Counter, Histogram, Histogram]] = {}


def by_route(route: str) -> tuple[Counter, Histogram, Histogram]:
    """BY_ROUTE's children for `route`, looked up once: labels() takes a lock at each call."""
    children = _BY_ROUTE_CHILDREN.get(route)
    if children is None:
        children = _BY_ROUTE_CHILDREN[route] = tuple(metric.labels(route) for metric in BY_ROUTE)  # type: ignore[union-attr,assignment]
    return children  # type: ignore[return-value]


ACQUIRE_ERRORS = _make(Counter, "stream_release_acquire_errors", "Checkouts that raised", ["route"])
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
