"""Connection accounting: who holds a database connection, who waits for one, for how long.

Enabled by a settings change only, for any backend a DATABASES entry names (Django's own,
its native pool, django-db-geventpool's psycopg2 and psycopg 3 backends, your own):

    from stream_release.accounting import accounted
    DATABASES = accounted({...})        # every entry; or accounted(DATABASES, "default")

`accounted()` sets each entry's ENGINE to "stream_release.db" and keeps the original as
ACCOUNTED_ENGINE; that backend builds a subclass of the original's DatabaseWrapper with
`AccountingMixin` first. It counts at the two points every backend shares:
`get_new_connection()` (a checkout: a new connection, or one taken from a pool) and `_close()`
(a return: closed, or given back to the pool), and hands a connection kept open from an
earlier request over to the next one that uses it (`hand_over`). It keeps Prometheus metrics
(stream_release.metrics) and, when the setting STREAM_RELEASE_EVENT_LOG_DIR names a
directory, appends one exact line per event to `accounting-<pid>.csv` there.
STREAM_RELEASE_ACCOUNTING = False turns all of it off (the wrapper then only passes calls on).
"""

from __future__ import annotations

import _thread
import collections
import contextvars
import itertools
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from django.db import connections

from stream_release import metrics
from stream_release.conf import setting
from stream_release.event_log import event_log as event_log  # also stream_release.accounting.event_log

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper

    class _Base(BaseDatabaseWrapper):
        """What AccountingMixin is mixed into, for the type checker only (at run time its base is
        object): a DatabaseWrapper, with the method django-stubs leaves out."""

        def _close(self) -> None: ...
else:
    _Base = object

ENGINE = "stream_release.db"

# The URL name of the request being served ("stream", "probe", ...), set by
# stream_release.middleware.StreamReleaseMiddleware: checkouts made later while streaming keep it.
current_route: contextvars.ContextVar[str] = contextvars.ContextVar("stream_release_route", default="other")


def enabled() -> bool:
    return setting("STREAM_RELEASE_ACCOUNTING")


def accounted(databases: Mapping[str, Mapping[str, Any]], *aliases: str) -> dict[str, dict[str, Any]]:
    """A copy of DATABASES with connection accounting on the named aliases (all by default)."""
    out: dict[str, dict[str, Any]] = {}
    for alias, entry in databases.items():
        entry = dict(entry)
        if (not aliases or alias in aliases) and entry.get("ENGINE") != ENGINE:
            entry["ACCOUNTED_ENGINE"] = entry.get("ENGINE") or "django.db.backends.dummy"
            entry["ENGINE"] = ENGINE
        out[alias] = entry
    return out


def fmt_ms(seconds: float) -> str:
    return f"{seconds * 1000:.3f}"


class _Counts:
    """In-process counts: the connections in use and waiting, their peaks, and by route the
    checkouts, waits and holds (stream_release.metrics.RouteCounts), exact under threads too.
    /metrics reads them when scraped; in prometheus_client's multiprocess mode each change also
    sets the metrics in this process's file. A return by the garbage collector is counted by the
    next change, scrape or request (see _collected). Their lock is CPython's own reentrant lock
    even under gevent's monkey-patching, which would give a lock written in Python at several
    times the cost: nothing done while it is held can switch greenlets."""

    def __init__(self) -> None:
        self.lock = _thread.RLock()
        self.in_use = self.waiting = self.in_use_peak = self.waiting_peak = 0
        self.routes: dict[str, metrics.RouteCounts] = {}  # route -> metrics.RouteCounts
        # (route, seconds) of the connections the garbage collector took, not counted yet. Their
        # finalizer takes neither this lock nor prometheus_client's: the collector may run it in
        # any thread, inside anything, such as an update of prometheus_client's multiprocess
        # values (one lock for them all, not reentrant) while another thread holds self.lock and
        # waits for that lock. A deque's append and popleft are atomic; each change, scrape and
        # request counts what is here first.
        self._collected: collections.deque[tuple[str, float]] = collections.deque()
        metrics.register_counts(self)

    def route(self, route: str) -> metrics.RouteCounts:
        """`route`'s counts (under the lock)."""
        counts = self.routes.get(route)
        if counts is None:
            counts = self.routes[route] = metrics.RouteCounts()
        return counts

    def settle_pending(self) -> None:
        """settle(), taking the lock only when the garbage collector has made returns: at each
        request, so that an idle worker's gauges come right too."""
        if self._collected:
            with self.lock:
                self.settle()

    def settle(self) -> None:
        """Count the returns the garbage collector made (under the lock)."""
        while self._collected:
            route, seconds = self._collected.popleft()
            self._change(in_use=-1)
            self._observe_hold(route, seconds)

    def _change(self, in_use: int = 0, waiting: int = 0) -> None:
        """Under the lock."""
        if in_use:
            self.in_use += in_use
            if self.in_use > self.in_use_peak:
                self.in_use_peak = self.in_use
        if waiting:
            self.waiting += waiting
            if self.waiting > self.waiting_peak:
                self.waiting_peak = self.waiting
        live = metrics.LIVE
        if live:
            if in_use:
                live["in_use"].set(self.in_use)
                live["in_use_peak"].set(self.in_use_peak)
            if waiting:
                live["waiting"].set(self.waiting)
                live["waiting_peak"].set(self.waiting_peak)

    def _observe_hold(self, route: str, seconds: float) -> None:
        self.route(route).hold.observe(seconds)
        if metrics.BY_ROUTE:
            metrics.by_route(route)[2].observe(seconds)

    def acquiring(self) -> None:
        with self.lock:
            self.settle()
            self._change(waiting=1)

    def acquire_failed(self) -> None:
        with self.lock:
            self.settle()
            self._change(waiting=-1)

    def checked_out(self, route: str, waited: float) -> None:
        with self.lock:
            self.settle()
            self._change(in_use=1, waiting=-1)
            counts = self.route(route)
            counts.checkouts += 1
            counts.wait.observe(waited)
        if metrics.BY_ROUTE:
            checkouts, acquire_wait, _ = metrics.by_route(route)
            checkouts.inc()
            acquire_wait.observe(waited)

    def held(self, route: str, seconds: float, returned: bool = True) -> None:
        """A hold of `seconds` under `route` ended: returned, or handed over to another request."""
        with self.lock:
            self.settle()
            if returned:
                self._change(in_use=-1)
            self._observe_hold(route, seconds)

    def collected(self, route: str, seconds: float) -> None:
        """A hold of `seconds` under `route` ended when the garbage collector took its connection:
        counted by the next change, scrape or request (see _collected)."""
        self._collected.append((route, seconds))


counts = _Counts()
_acquire_ids = itertools.count(1)


class _Holding:
    """How many connections one thread (under gevent's monkey-patching, one greenlet: Django
    keeps a thread's connections the same way) has checked out and not returned. While it
    holds none, it keeps no connection from an earlier request, and hand_over() need not look:
    Django's connections.all() costs microseconds, and it runs at every request (a greenlet of
    gunicorn's serves every request of a keep-alive connection). Each checkout keeps its
    thread's, so that a return counts there whichever thread makes it (Django lets a thread
    close another's connection only when shared on purpose; a return and a checkout at once in
    two threads could then miss one of the two changes: one look too many at worst, or a
    handover missed)."""

    __slots__ = ("n",)

    def __init__(self) -> None:
        self.n = 0


class _ThisThread(threading.local):
    """This thread's _Holding, from its first checkout. A default on the class: asking gevent's
    local for an attribute it lacks costs 0.66 us, this 0.09 us."""

    holding: _Holding | None = None


_this_thread = _ThisThread()


def backend_pid(conn: Any) -> int | str:
    """The PostgreSQL backend pid of a DB-API connection, read from libpq without a round
    trip ("" for another database, or a closed or broken connection)."""
    try:
        return conn.info.backend_pid  # type: ignore[no-any-return]
    except Exception:
        return ""


def pool_limit(wrapper: BaseDatabaseWrapper) -> int | None:
    """The most connections this process may hold for `wrapper`'s alias, or None when the
    backend sets no limit."""
    own: Callable[[], int] | None = getattr(wrapper, "pool_limit", None)
    if callable(own):
        return own()
    options = wrapper.settings_dict.get("OPTIONS", {})
    modules = {c.__module__.split(".", 1)[0] for c in type(wrapper).__mro__}
    if "django_db_geventpool" in modules:
        return int(options.get("MAX_CONNS", 4))  # the library's default
    if "dj_db_conn_pool" in modules:  # SQLAlchemy's QueuePool: its size, then its overflow
        pool_options = wrapper.settings_dict.get("POOL_OPTIONS") or {}
        overflow = int(pool_options.get("MAX_OVERFLOW", 10))  # the library's defaults
        return None if overflow < 0 else int(pool_options.get("POOL_SIZE", 10)) + overflow
    pool = options.get("pool")
    if pool is True:
        return 4  # psycopg_pool's default size
    if isinstance(pool, dict):
        return pool.get("max_size") or pool.get("min_size", 4)  # type: ignore[no-any-return]
    return None


class AccountingMixin(_Base):
    """First in the bases of a DatabaseWrapper: `class W(AccountingMixin, Base)`.
    stream_release.db builds that class for any ENGINE; subclass it yourself only for a
    backend you write."""

    # [checkout] where checkout is [perf_counter, route, backend pid, its thread's _Holding]
    _sr_holder: list[list[Any] | None] | None = None

    def get_new_connection(self, conn_params: Any) -> Any:
        if not enabled():
            return super().get_new_connection(conn_params)
        route = current_route.get()
        acquire_id = next(_acquire_ids)  # pairs this acquire with its checkout or error
        counts.acquiring()
        event_log.write("acquire", route, acquire_id=acquire_id)
        started = time.perf_counter()
        try:
            conn = super().get_new_connection(conn_params)
        except BaseException as exc:
            counts.acquire_failed()
            metrics.ACQUIRE_ERRORS.labels(route).inc()
            event_log.write(
                "acquire_error",
                route,
                fmt_ms(time.perf_counter() - started),
                acquire_id=acquire_id,
                detail=f"{type(exc).__name__}: {exc}",
            )
            raise
        waited = time.perf_counter() - started
        counts.checked_out(route, waited)
        pid = backend_pid(conn)
        if self._sr_holder is None:
            self._sr_holder = [None]
            # A persistent connection whose thread or greenlet ends is never closed by Django:
            # it goes when the garbage collector takes its wrapper, and is counted as returned then.
            weakref.finalize(self, _collected, self._sr_holder)
        holding = _this_thread.holding
        if holding is None:
            holding = _this_thread.holding = _Holding()
        holding.n += 1
        self._sr_holder[0] = [time.perf_counter(), route, pid, holding]
        event_log.write("checkout", route, fmt_ms(waited), backend_pid=pid, acquire_id=acquire_id)
        return conn

    def _close(self) -> None:
        if not enabled():
            return super()._close()
        holder = self._sr_holder
        try:
            super()._close()
        finally:
            if holder is not None:
                _returned(holder[0])
                holder[0] = None


def _collected(holder: list[list[Any] | None]) -> None:
    _returned(holder[0], collected=True)


def _returned(checkout: list[Any] | None, collected: bool = False) -> None:
    """Count a checkout [perf_counter, route, pid, _Holding] as returned, once; `collected`: by
    the garbage collector."""
    if not checkout:
        return
    started, route, pid, holding = checkout
    checkout.clear()
    holding.n -= 1
    held = time.perf_counter() - started
    if collected:
        counts.collected(route, held)
    else:
        counts.held(route, held)
    detail = "garbage-collected" if collected else ""
    event_log.write("return", route, hold_ms=fmt_ms(held), backend_pid=pid, detail=detail)


def hand_over(route: str) -> None:
    """This thread's connections kept open from an earlier request (persistent ones) belong to
    the current request from now on: a `handover` event (detail: the earlier request's route)
    ends the earlier hold and starts this request's under `route`. Nothing goes back to a pool,
    so the connections in use do not change."""
    counts.settle_pending()
    holding = _this_thread.holding
    if holding is None or not holding.n or not enabled():
        return
    for wrapper in connections.all(initialized_only=True):
        holder: list[list[Any] | None] | None = getattr(wrapper, "_sr_holder", None)
        checkout = holder[0] if holder else None
        if not checkout or wrapper.connection is None:
            continue
        started, earlier, pid, its_thread = checkout
        now = time.perf_counter()
        counts.held(earlier, now - started, returned=False)
        holder[0] = [now, route, pid, its_thread]  # type: ignore[index]  # not None: it holds `checkout`
        event_log.write("handover", route, hold_ms=fmt_ms(now - started), backend_pid=pid, detail=earlier)


_classes: dict[type[BaseDatabaseWrapper], type[AccountingMixin]] = {}
_classes_lock = threading.Lock()


def accounted_class(base: type[BaseDatabaseWrapper]) -> type[AccountingMixin]:
    """The subclass of DatabaseWrapper `base` with AccountingMixin first (one per base)."""
    with _classes_lock:
        if base not in _classes:
            _classes[base] = type(
                base.__name__,
                (AccountingMixin, base),
                {
                    "__module__": ENGINE + ".base",
                    "__qualname__": f"Accounted{base.__name__}",
                    "__doc__": f"{base.__module__}.{base.__qualname__} with connection accounting",
                },
            )
        return _classes[base]


def record_db_error(exc: BaseException) -> None:
    route = current_route.get()
    metrics.DB_ERRORS.labels(route).inc()
    event_log.write("db_error", route, detail=f"{type(exc).__name__}: {exc}")
