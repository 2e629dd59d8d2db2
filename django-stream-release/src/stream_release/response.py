"""Give the request's database connections back before a streaming body is sent.

`ReleasingStreamingHttpResponse` is a `StreamingHttpResponse` whose body, when the server
starts sending it, first calls `release_connections()`: after the view has returned, after
ATOMIC_REQUESTS' transaction has committed, after any middleware's queries. It takes a
synchronous iterator (WSGI, or ASGI, where Django consumes it whole first) or an asynchronous
one (ASGI: the release then runs in the request's thread, where its connections live).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any

from django.http import StreamingHttpResponse

from stream_release.release import arelease_connections, release_connections

__all__ = ["ReleasingStreamingHttpResponse", "arelease_connections", "release_connections"]


def _release_then(content: Iterator[Any]) -> Iterator[Any]:
    release_connections()
    yield from content


async def _arelease_then(content: AsyncIterator[Any]) -> AsyncIterator[Any]:
    await arelease_connections()
    async for part in content:
        yield part


class ReleasingStreamingHttpResponse(StreamingHttpResponse):
    """A StreamingHttpResponse that releases the request's connections when the server
    starts sending its body. Do the view's writes and queries first; a body that reads the
    database as it goes should use batches() (or abatches()).

    The release wraps the body the view gave, once: a middleware that wraps the body again
    (GZipMiddleware, say) does not add another."""

    _stream_release_wrapped = False
    _iterator: Any  # Django's (not in django-stubs): an iterator, an async one when is_async

    def __init__(self, streaming_content: Iterable[Any] | AsyncIterator[Any] = (), *args: Any, **kwargs: Any) -> None:
        super().__init__(streaming_content, *args, **kwargs)

    def _set_streaming_content(self, value: Any) -> None:
        super()._set_streaming_content(value)  # type: ignore[misc]  # Django's, not in django-stubs
        if self._stream_release_wrapped:
            return
        self._stream_release_wrapped = True
        if self.is_async:
            self._iterator = _arelease_then(self._iterator)
        else:
            self._iterator = _release_then(self._iterator)
