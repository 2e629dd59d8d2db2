"""The variants of /stream/<variant>/: how the view returns its StreamingHttpResponse once it
has written its audit row and run its queries. Each function is the code a view would have.

`export` (benchapp.views.Export) offers the body three ways: page_chunks() from the rows the
view already fetched (no database while streaming), cursor_chunks() from one cursor kept open
for the whole stream, batch_chunks() from one query per chunk with the connection given back
after each (stream_release.batches).

The async-* variants return an async iterator body (apage_chunks() and the others): Django
serves it as it goes under ASGI; under WSGI it would consume it whole first, so matrix.toml
runs them under ASGI servers only.

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


@variant("async-hold")
def async_hold(export):
    """An async body, nothing released: Django sends request_finished only from
    response.close(), after the last chunk, so the request's connection is held to the end."""
    return StreamingHttpResponse(export.apage_chunks())


@variant("async-release")
def async_release(export):
    """An async body through the package: arelease_connections() in the request's thread when
    the body starts."""
    return ReleasingStreamingHttpResponse(export.apage_chunks())


@variant("async-thread-query")
def async_thread_query(export):
    """An async body that queries a batch per chunk through sync_to_async(thread_sensitive=True):
    the request's connection, used and kept until the end."""
    return StreamingHttpResponse(export.athread_query_chunks())


@variant("async-release-per-batch")
def async_release_per_batch(export):
    """An async body of stream_release.abatches(): the async ORM, released after each batch."""
    return ReleasingStreamingHttpResponse(export.abatch_chunks())
