"""Give the request's database connections back before a long response starts streaming.

    from benchapp.release import release_connections

    def export(request):
        rows = list(Item.objects.filter(...))      # all queries first
        release_connections()                       # then hand the connections back
        return StreamingHttpResponse(render(rows))  # the stream holds no connection

Inside an atomic block (TestCase, pytest's django_db, ATOMIC_REQUESTS=True) closing would
end the transaction: the next query fails or the block's writes are silently lost. There the
connection is left alone, and a debug message says so once per process.
"""

import logging

from django.db import connections

logger = logging.getLogger(__name__)
_warned = set()


def release_connections() -> list[str]:
    """Close (or return to its pool) every initialized connection that is not in an atomic
    block. Returns the aliases that were released."""
    released = []
    for conn in connections.all(initialized_only=True):
        if conn.in_atomic_block:
            if conn.alias not in _warned:
                _warned.add(conn.alias)
                logger.debug("release_connections: %r is inside an atomic block; left open", conn.alias)
            continue
        conn.close()
        released.append(conn.alias)
    return released
