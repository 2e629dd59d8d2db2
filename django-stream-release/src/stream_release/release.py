"""Give a thread's database connections back: release_connections() and its async form.

A connection is given back (closed, or returned to its pool) unless
- it is inside an atomic block: closing it would end the transaction, so that the next query
  fails or the block's writes are lost (Django's TestCase and pytest-django's `django_db` hold
  one for the whole test; ATOMIC_REQUESTS for the view; a body's own `transaction.atomic()`);
- a cursor on it is still being read: `queryset.iterator()`, or a raw `connection.cursor()`
  not closed yet. Closing the connection would break it (`the connection is closed` on the
  next fetch);
- STREAM_RELEASE_KEEP_PERSISTENT = True and it is persistent (CONN_MAX_AGE other than 0) with
  no pool in the process: then it is the thread's own, no other request of the process can
  take it, and closing it costs the next query (the next batch, the thread's next request) a
  new connection. Off by default: PgBouncer in front of a persistent connection is a pool
  Django cannot see, where closing it frees a server connection for other clients.

Which cursors are open is known from the moment a connection is opened with the package
imported (stream_release.tracking; put "stream_release" in INSTALLED_APPS so that it is
imported before the first query).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from asgiref.sync import sync_to_async
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper

from stream_release.conf import setting
from stream_release.signals import connections_released
from stream_release.tracking import own_persistent, state

logger = logging.getLogger("stream_release")
_noted: set[tuple[str, str]] = set()

IN_ATOMIC = "inside an atomic block"
READING = "a cursor on it is still being read (queryset.iterator(), or a cursor not closed)"
PERSISTENT = "persistent with no pool, and STREAM_RELEASE_KEEP_PERSISTENT is on"


def why_kept(conn: BaseDatabaseWrapper) -> str | None:
    """Why release_connections() would keep `conn` open (READING, IN_ATOMIC), or None. A cursor
    being read comes first: it keeps the connection outside a test's transaction too."""
    conn_state = state(conn)
    if conn_state is not None and conn_state.reading():
        return READING
    if conn.in_atomic_block:
        return IN_ATOMIC
    if setting("STREAM_RELEASE_KEEP_PERSISTENT") and own_persistent(conn):
        return PERSISTENT
    return None


def _aliases(using: str | Iterable[str] | None) -> list[str] | None:
    if using is None:
        return None
    return [using] if isinstance(using, str) else list(using)


def release_connections(using: str | Iterable[str] | None = None) -> list[str]:
    """Give back (close, or return to its pool) each open connection of this thread, or of the
    aliases `using` names, unless it is inside an atomic block or a cursor on it is still being
    read; returns the aliases given back.

    A connection kept is said once per process, alias and reason in a debug message, and in
    the signal stream_release.signals.connections_released."""
    aliases = _aliases(using)
    released: list[str] = []
    kept: dict[str, str] = {}
    for conn in connections.all(initialized_only=True):
        if aliases is not None and conn.alias not in aliases:
            continue
        if conn.connection is None:
            continue  # closed already: nothing to give back
        reason = why_kept(conn)
        if reason is not None:
            kept[conn.alias] = reason
            if (conn.alias, reason) not in _noted:
                _noted.add((conn.alias, reason))
                logger.debug("release_connections: %r is kept open: %s", conn.alias, reason)
            continue
        conn.close()
        released.append(conn.alias)
    connections_released.send(
        sender=release_connections,
        released=released,
        kept=kept,
        kept_in_atomic=[alias for alias, reason in kept.items() if reason == IN_ATOMIC],
    )
    return released


async def arelease_connections(using: str | Iterable[str] | None = None) -> list[str]:
    """release_connections() for async code (an async streaming body, a server-sent-events loop
    after each poll): run in the request's thread (thread-sensitive), where Django keeps the
    connections of its sync code and of the async ORM."""
    return await sync_to_async(release_connections, thread_sensitive=True)(using)
