"""What the package follows of each connection: its cursors not closed yet, when it was checked
out and by which request, which request last made a cursor on it.

It starts at a connection's first connect with the package imported (Django's
connection_created signal, sent at every connect(), which for a pool is every checkout) and
costs each cursor Django makes (every query, .iterator(), connection.cursor()) a function
call, a weak reference and a counter: about a microsecond.
"""

from __future__ import annotations

import contextvars
import time
import weakref
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.signals import connection_created

# The request being served (a token compared by identity, set by the detector middleware): a
# connection kept from an earlier request and unused by this one is not this request's hold.
current_request: contextvars.ContextVar[object | None] = contextvars.ContextVar("stream_release_request", default=None)


class ConnectionState:
    """What the package follows of one connection wrapper: the cursors not closed yet, and how
    many cursors it has made (a request that made none did not use the connection)."""

    __slots__ = (
        "__weakref__",
        "checked_out",
        "checkout_request",
        "cursors_made",
        "last_request",
        "open_cursors",
    )

    def __init__(self) -> None:
        self.open_cursors: weakref.WeakSet[Any] = weakref.WeakSet()
        self.cursors_made = 0
        self.checked_out = time.monotonic()  # at the last connect (for a pool, checkout)
        self.checkout_request: object | None = None  # the request current then
        self.last_request: object | None = None  # the request current at the last cursor made

    def reading(self) -> bool:
        return any(not getattr(c, "_stream_release_closed", False) for c in list(self.open_cursors))


class _Close:
    """A cursor's close(): marks it closed for ConnectionState.reading, then closes it. It holds
    the cursor wrapper weakly, so that a cursor dropped without close() still goes at once."""

    __slots__ = ("close", "wrapper")

    def __init__(self, wrapper: Any, close: Any) -> None:
        self.wrapper = weakref.ref(wrapper)
        self.close = close

    def __call__(self) -> Any:
        wrapper = self.wrapper()
        if wrapper is not None:
            wrapper._stream_release_closed = True
        return self.close()


def pooled(conn: BaseDatabaseWrapper) -> bool:
    """Whether `conn` (a wrapper, as connections[alias] gives it) comes from a pool in this process (Django's native pool,
    django-db-geventpool, django-db-connection-pool, or a backend with a pool_limit()): giving
    it back lets another request of the process take it."""
    if callable(getattr(conn, "pool_limit", None)):
        return True
    if (conn.settings_dict.get("OPTIONS") or {}).get("pool"):
        return True
    modules = {cls.__module__.split(".", 1)[0] for cls in type(conn).__mro__}
    return bool(modules & {"django_db_geventpool", "dj_db_conn_pool"})


def own_persistent(conn: BaseDatabaseWrapper) -> bool:
    """A persistent connection (CONN_MAX_AGE other than 0) with no pool in the process: this
    thread's own, which no other request of the process can take. (PgBouncer in front of it is
    a pool Django cannot see: there closing it frees a server connection for other clients.)"""
    return conn.settings_dict.get("CONN_MAX_AGE", 0) != 0 and not pooled(conn)


def atomic_request_aliases(view: Any) -> frozenset[str]:
    """The aliases whose ATOMIC_REQUESTS transaction Django wraps `view` in, as
    BaseHandler.make_view_atomic() decides (transaction.non_atomic_requests opts a view out).
    Such a transaction uses its connection even when the view never queries: on PostgreSQL it
    begins without a query, so no cursor shows it."""
    from django.db import connections

    exempt: set[str] = getattr(view, "_non_atomic_requests", set())
    return frozenset(
        alias for alias, entry in connections.settings.items() if entry.get("ATOMIC_REQUESTS") and alias not in exempt
    )


def state(conn: BaseDatabaseWrapper) -> ConnectionState | None:
    """The package's state of `conn`, or None for a connection opened before it was imported."""
    return conn.__dict__.get("_stream_release")


def _follow(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """At every connect (for a pool, every checkout): follow the cursors this wrapper makes,
    once per wrapper. Each cursor Django makes (a query, .iterator(), connection.cursor())
    goes through the wrapper's _prepare_cursor()."""
    conn_state = connection.__dict__.get("_stream_release")
    if conn_state is not None:
        conn_state.checked_out = time.monotonic()
        conn_state.checkout_request = current_request.get()
        return
    conn_state = ConnectionState()
    conn_state.checkout_request = current_request.get()
    prepare = connection._prepare_cursor  # type: ignore[attr-defined]  # Django's, not in django-stubs

    def _prepare_cursor(cursor: Any) -> Any:
        wrapper = prepare(cursor)
        conn_state.cursors_made += 1
        conn_state.last_request = current_request.get()
        conn_state.open_cursors.add(wrapper)
        # the DB-API cursor's own close, found through the wrapper (its __getattr__), so that a
        # wrapper of the caller's own (a debug toolbar's) is honoured
        wrapper.close = _Close(wrapper, wrapper.close)
        return wrapper

    connection._prepare_cursor = _prepare_cursor  # type: ignore[attr-defined]
    connection._stream_release = conn_state  # type: ignore[attr-defined]


connection_created.connect(_follow, dispatch_uid="stream_release.tracking")
