"""The variants of /stream/<variant>/: how the view returns its StreamingHttpResponse once it
has written its audit row and run its queries. Each function is the code a view would have.

`export` (benchapp.views.Export) offers the body three ways: page_chunks() from the rows the
view already fetched (no database while streaming), cursor_chunks() from one cursor kept open
for the whole stream, batch_chunks() from one query per chunk with the connection given back
after each (stream_release.batches).

To add a variant, write one function here under @variant("its-name") and add one
[variants.its-name] table to matrix.toml.
"""

from django.db import close_old_connections, connection
from django.http import StreamingHttpResponse

from stream_release import ReleasingStreamingHttpResponse

VARIANTS = {}


def variant(name):
    def register(func):
        VARIANTS[name] = func
        return func

    return register


@variant("hold")
def hold(export):
    """Nothing: the connection stays checked out until the last chunk is sent."""
    return StreamingHttpResponse(export.page_chunks())


@variant("close-old")
def close_old(export):
    close_old_connections()
    return StreamingHttpResponse(export.page_chunks())


@variant("force-close")
def force_close(export):
    connection.close()
    return StreamingHttpResponse(export.page_chunks())


@variant("guarded-close")
def guarded_close(export):
    """The usual guard: safe, but under ATOMIC_REQUESTS the view always runs in an atomic
    block, so it never releases."""
    if not connection.in_atomic_block:
        connection.close()
    return StreamingHttpResponse(export.page_chunks())


@variant("release")
def release(export):
    return ReleasingStreamingHttpResponse(export.page_chunks())


@variant("cursor-hold")
def cursor_hold(export):
    """Rows from one cursor (QuerySet.iterator) read as the stream goes: held to the end."""
    return StreamingHttpResponse(export.cursor_chunks())


@variant("release-per-batch")
def release_per_batch(export):
    """Rows fetched one batch per chunk, the connection given back after each batch."""
    return ReleasingStreamingHttpResponse(export.batch_chunks())
