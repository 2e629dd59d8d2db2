"""Give the request's database connections back before a streaming body is sent.

`ReleasingStreamingHttpResponse` is a `StreamingHttpResponse` whose body, when the server
starts sending it, first calls `release_connections()`: after the view has returned, after
ATOMIC_REQUESTS' transaction has committed, after any middleware's queries. It takes a
synchronous iterator (WSGI, or ASGI, where Django consumes it whole first) or an asynchronous
one (ASGI: the release then runs in the request's thread, where its connections live).
"""

import logging

from asgiref.sync import sync_to_async
from django.db import connections
from django.http import StreamingHttpResponse

from stream_release.signals import connections_released

logger = logging.getLogger("stream_release")
_noted = set()


def release_connections() -> list[str]:
    """Close (or give back to its pool) every initialized connection of this thread that is
    not inside an atomic block; returns the aliases released.

    A connection inside an atomic block is left open, and a debug message says so once per
    process and alias: closing it would end the transaction, so that the next query fails or
    the block's writes are silently lost. That is the case under Django's TestCase and
    pytest-django's `django_db`, where the test's transaction owns the connection."""
    released, kept = [], []
    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block:
            kept.append(conn.alias)
            if conn.alias not in _noted:
                _noted.add(conn.alias)
                logger.debug("release_connections: %r is inside an atomic block; left open", conn.alias)
            continue
        conn.close()
        released.append(conn.alias)
    connections_released.send(sender=release_connections, released=released, kept_in_atomic=kept)
    return released


async def arelease_connections() -> list[str]:
    """release_connections() for async code: run in the request's thread (thread-sensitive),
    where Django keeps the connections of its sync code and of the async ORM."""
    return await sync_to_async(release_connections, thread_sensitive=True)()


def _release_then(content):
    release_connections()
    yield from content


async def _arelease_then(content):
    await arelease_connections()
    async for part in content:
        yield part


class ReleasingStreamingHttpResponse(StreamingHttpResponse):
    """A StreamingHttpResponse that releases the request's connections when the server
    starts sending its body. Do the view's writes and queries first; a body that reads the
    database as it goes should use batches() (or abatches())."""

    def _set_streaming_content(self, value):
        super()._set_streaming_content(value)
        if self.is_async:
            self._iterator = _arelease_then(self._iterator)
        else:
            self._iterator = _release_then(self._iterator)
