"""Stream without holding a database connection, safely also inside transactions and tests.

    from benchapp.release import ReleasingStreamingHttpResponse, batches

    def export(request):
        AuditEvent.objects.create(...)             # write and query first
        rows = list(Item.objects.filter(...))
        return ReleasingStreamingHttpResponse(render(rows), content_type="text/csv")

    def export_all(request):                       # the stream itself needs the database
        rows = (row for batch in batches(Item.objects.values("pk", "sku"), 500) for row in batch)
        return ReleasingStreamingHttpResponse(map(render_row, rows), content_type="text/csv")

ReleasingStreamingHttpResponse gives every initialized connection back when the server starts
sending the body: after the view has returned, after ATOMIC_REQUESTS' transaction has
committed, after any middleware's queries. Giving back is close(): the stock backend
disconnects, a pool (django-db-geventpool, Django's native pool) takes the connection back.

A connection inside an atomic block is left alone: closing it would end the transaction, so
that the next query fails or the block's writes are silently lost. That is what happens
under Django's TestCase and pytest-django's django_db: there the body streams on the test's
connection, exactly as without this class, and a debug message says so once per process.

`batches()` is for generators that query while they stream: one query per batch, with the
connection given back after each, so a stream holds a connection only while it queries.
`release_connections()` is the primitive both use.
"""

import logging

from django.db import connections
from django.http import StreamingHttpResponse

logger = logging.getLogger(__name__)
_noted = set()


def release_connections() -> list[str]:
    """Close (or return to its pool) every initialized connection that is not inside an
    atomic block. Returns the aliases that were released."""
    released = []
    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block:
            if conn.alias not in _noted:
                _noted.add(conn.alias)
                logger.debug("release_connections: %r is inside an atomic block; left open", conn.alias)
            continue
        conn.close()
        released.append(conn.alias)
    return released


def _release_then(content):
    """`content`, after release_connections() at its first item."""
    release_connections()
    yield from content


class ReleasingStreamingHttpResponse(StreamingHttpResponse):
    """A StreamingHttpResponse that releases the request's connections when the server
    starts sending it (see the module's documentation)."""

    def _set_streaming_content(self, value):
        super()._set_streaming_content(value)
        if self.is_async:
            raise TypeError(f"{type(self).__name__} streams synchronous iterators only (WSGI)")
        self._iterator = _release_then(self._iterator)


def batches(queryset, size, key="pk"):
    """Lists of up to `size` rows of `queryset` in `key` order (keyset pagination on a unique,
    non-null field; rows are model instances, or dicts from values() that include `key`), one
    query per list, with release_connections() after each."""
    if size < 1:
        raise ValueError(f"size must be at least 1, got {size}")
    page = queryset.order_by(key)
    while True:
        rows = list(page[:size])
        release_connections()
        if not rows:
            return
        yield rows
        if len(rows) < size:
            return
        last = rows[-1]
        if isinstance(last, dict):
            if key not in last:
                raise ValueError(f"batches() needs {key!r} among the values() fields")
            value = last[key]
        elif isinstance(last, tuple):
            raise TypeError("batches() needs model instances or values() dicts, not values_list() tuples")
        else:
            value = getattr(last, key)
        if value is None:
            raise ValueError(f"batches() needs a non-null key: {key!r} is None in a row")
        page = queryset.order_by(key).filter(**{f"{key}__gt": value})
