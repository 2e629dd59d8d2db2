"""The production detector: which streaming responses pin a database connection.

    MIDDLEWARE = ["stream_release.middleware.StreamReleaseMiddleware", ...]   # first

A streaming response pins a connection when one that the request used is still checked out
across two chunks of its body: from the headers to the first chunk (the view queried and
nothing gave the connection back), or from one chunk to the next (the body queried and kept
it: `queryset.iterator()`, a query with nothing giving it back, a `transaction.atomic()`
around the loop). For each pinned connection it logs one warning (logger "stream_release":
the view, the alias, why, since when) and counts it in stream_release_pinned_streams_total
{alias, view}; when the body ends it records how long the stream held the connection in
stream_release_pinned_stream_hold_seconds, from its checkout (or the request's start, for a
connection kept from an earlier request) until it was given back or the body ended (metrics
need the `metrics` extra). It also labels the request with its URL name for the connection
accounting (stream_release.accounting), and counts requests that failed with a database error.

With STREAM_RELEASE_ALL_STREAMS = True it also releases every streaming response, with no view
changed (StreamingHttpResponse, its subclasses, FileResponse; sync and async bodies): the
connections the request used are given back when the body starts, as
ReleasingStreamingHttpResponse does, and again after every chunk. What it cannot release (a
cursor still being read, the body's own atomic block) it reports as pinned, with the reason.

Not reported: a connection the request never used (a persistent one kept from an earlier
request), one kept on purpose by STREAM_RELEASE_KEEP_PERSISTENT, the test's own transaction (TestCase, pytest-django's django_db), SQLite in memory
(Django never closes it, and no other request waits for it).

It works sync and async (Django's middleware "async_capable"): under ASGI a request does not
hop to a thread for it; a streaming body is looked at in the request's thread, where its
connections are. What it costs: one attribute check on a response that is not streaming; on a
streaming one, a look at each initialized connection at each chunk (docs: the measured cost).
"""

from __future__ import annotations

import logging
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction, sync_to_async
from django.core.signals import request_started
from django.db import Error, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.http import HttpRequest, HttpResponseBase

from stream_release import accounting, metrics, release, tracking
from stream_release.conf import setting
from stream_release.release import release_connections

logger = logging.getLogger("stream_release")

UNRESOLVED = "<unresolved>"  # the view label of a response made before URL resolution


def _request_started(**kwargs: Any) -> None:
    """A request's checkouts made before this middleware runs (a middleware before it that
    queries) are not the previous request's: in a WSGI thread the route would still be its."""
    accounting.current_route.set("other")


request_started.connect(_request_started, dispatch_uid="stream_release.route_reset")


def view_name(request: HttpRequest) -> str:
    """The view's dotted path, or UNRESOLVED: a metric label, bounded by the project's code
    whatever the traffic (never the request's path)."""
    match = getattr(request, "resolver_match", None)
    if match is None:
        return UNRESOLVED
    func = getattr(match.func, "view_class", match.func)
    return f"{func.__module__}.{func.__qualname__}"


def _in_memory(conn: BaseDatabaseWrapper) -> bool:
    return conn.vendor == "sqlite" and conn.is_in_memory_db()  # type: ignore[attr-defined]


def _own_atomic(conn: BaseDatabaseWrapper) -> bool:
    """Inside an atomic block that is not a test's (TestCase, django_db): in production, while
    a body streams, nothing but the body itself can hold one (ATOMIC_REQUESTS' block ended
    with the view)."""
    return any(not getattr(block, "_from_testcase", False) for block in conn.atomic_blocks)


def _used_by(conn: BaseDatabaseWrapper, token: object | None) -> bool:
    """Whether the request `token` checked `conn` out or made a cursor on it. A connection
    opened before the package was imported is not followed: counted as used."""
    conn_state = tracking.state(conn)
    return conn_state is None or token in (conn_state.checkout_request, conn_state.last_request)


def _since(conn: BaseDatabaseWrapper, default: float) -> float:
    """When `conn` was checked out (`default` when it is not followed)."""
    conn_state = tracking.state(conn)
    return default if conn_state is None else conn_state.checked_out


def held(token: object | None, atomic: frozenset[str] = frozenset()) -> dict[str, tuple[BaseDatabaseWrapper, str]]:
    """{alias: (wrapper, why)} of this thread's connections that request `token` used and that
    are still checked out, outside the test's transaction; `why` says what keeps it, when
    something other than nothing giving it back does."""
    out = {}
    for conn in connections.all(initialized_only=True):
        if conn.connection is None or _in_memory(conn) or not (conn.alias in atomic or _used_by(conn, token)):
            continue
        if _own_atomic(conn):
            why = "inside the body's own atomic block"
        elif conn.in_atomic_block:
            continue  # the test's transaction owns it
        elif release.why_kept(conn) == release.PERSISTENT:
            continue  # the thread's own, kept on purpose: no other request of the process waits for it
        else:
            conn_state = tracking.state(conn)
            why = "a cursor on it is still being read" if conn_state and conn_state.reading() else ""
        out[conn.alias] = (conn, why)
    return out


def _atomic(request: HttpRequest) -> frozenset[str]:
    atomic: frozenset[str] = getattr(request, "_stream_release_atomic", frozenset())
    return atomic


class _Hold:
    """One pinned connection of a stream: a weak reference to its wrapper (a strong one would
    keep a persistent connection until the garbage collector ran), since when the request held
    it, when it was given back, its backend pid."""

    __slots__ = ("given_back", "pid", "since", "wrapper")

    def __init__(self, conn: BaseDatabaseWrapper, request_started: float) -> None:
        self.wrapper = weakref.ref(conn)
        self.since = max(_since(conn, request_started), request_started)
        self.given_back: float | None = None
        self.pid = accounting.backend_pid(conn.connection)


class _Stream:
    """One streaming response: at each chunk, the connections the request used and still holds;
    a connection held across two chunks (the headers and the first, or two of the body) is
    pinned: warned, counted, its hold followed until it is given back or the body ends."""

    def __init__(self, view: str, token: object | None, started: float, atomic: frozenset[str] = frozenset()) -> None:
        # atomic: the aliases whose ATOMIC_REQUESTS transaction wrapped the view, which used
        # their connections even when the view did not query (PostgreSQL begins one without a query)
        self.view, self.token, self.started, self.atomic = view, token, started, atomic
        self.pinned: dict[str, _Hold] = {}  # alias -> its hold, while not given back
        self.last: dict[str, float] = {}  # alias -> the checkout held at the last chunk
        self.releasing = setting("STREAM_RELEASE_ALL_STREAMS")

    def release(self) -> None:
        """STREAM_RELEASE_ALL_STREAMS: give back the connections this request used, as
        ReleasingStreamingHttpResponse does (never inside an atomic block, nor one whose cursor
        is still being read; those the next look reports)."""
        used = [
            conn.alias
            for conn in connections.all(initialized_only=True)
            if conn.alias in self.atomic or _used_by(conn, self.token)
        ]
        if used:
            release_connections(using=used)

    def chunk(self, first: bool) -> None:
        """At a chunk, in the request's thread: released first under STREAM_RELEASE_ALL_STREAMS."""
        if self.releasing:
            self.release()
        now = time.monotonic()
        self._given_back(now)
        found = held(self.token, self.atomic)
        newly = {}
        for alias, (conn, why) in found.items():
            since = _since(conn, self.started)
            if alias not in self.pinned and (first or self.last.get(alias) == since):
                newly[alias] = (conn, why, since)
        self.last = {alias: _since(conn, self.started) for alias, (conn, _) in found.items()}
        if not newly:
            return
        for alias, (conn, _, _) in newly.items():
            self.pinned[alias] = _Hold(conn, self.started)
        held_text = ", ".join(
            f"{alias!r} (checked out {1000 * (now - since):.0f} ms ago{'; ' + why if why else ''})"
            for alias, (_, why, since) in newly.items()
        )
        logger.warning(
            "%s %s: it stays checked out while the client reads. Give it back first: "
            "stream_release.ReleasingStreamingHttpResponse, batches() for a body that reads",
            self.view,
            f"started streaming its body with database connection {held_text}"
            if first
            else f"kept database connection {held_text} across two chunks of its body",
        )
        for alias in newly:
            metrics.PINNED_STREAMS.labels(alias, self.view).inc()

    def _given_back(self, now: float, ended: bool = False) -> None:
        """Record the holds of the pinned connections given back since (all, at the end)."""
        for alias, hold in list(self.pinned.items()):
            conn = hold.wrapper()
            if conn is None or conn.connection is None:
                hold.given_back = now
            elif not ended:
                continue
            del self.pinned[alias]
            self._record(alias, hold, now)

    def _record(self, alias: str, hold: _Hold, now: float) -> None:
        """A pinned connection's hold, in the metric and in the event log as a `pinned_stream`
        event with its backend pid (the detail ends in "given back" when it came back before the
        body's end: its `return` was written then)."""
        seconds = (hold.given_back or now) - hold.since
        metrics.PINNED_HOLD.labels(alias).observe(seconds)
        if accounting.enabled():
            accounting.event_log.write(
                "pinned_stream",
                accounting.current_route.get(),
                hold_ms=accounting.fmt_ms(seconds),
                backend_pid=hold.pid,
                detail=f"{self.view} {alias}" + (" given back" if hold.given_back else ""),
            )

    def ended(self) -> None:
        # a connection closed after the last chunk (the body's own `finally`, or closed on abort)
        # counts as given back at the end
        self._given_back(time.monotonic(), ended=True)

    def watch(self, content: Iterator[Any]) -> Iterator[Any]:
        try:
            if self.releasing:
                self.release()  # as the body starts: after the view, its transaction, the middleware
            first = True
            for part in content:
                self.chunk(first)
                first = False
                yield part
        finally:
            self.ended()

    async def awatch(self, content: AsyncIterator[Any]) -> AsyncIterator[Any]:
        # the request's connections live in its thread (thread-sensitive), not the event loop's
        look = sync_to_async(self.chunk, thread_sensitive=True)
        try:
            if self.releasing:
                await sync_to_async(self.release, thread_sensitive=True)()
            first = True
            async for part in content:
                await look(first)
                first = False
                yield part
        finally:
            self.ended()


class StreamReleaseMiddleware:
    """Put it first in MIDDLEWARE (see the module's documentation; the system check
    stream_release.W001 says when it is not)."""

    sync_capable = True
    async_capable = True

    def __init__(self, get_response: Callable[[HttpRequest], Any]) -> None:
        self.get_response = get_response
        self.async_mode = iscoroutinefunction(get_response)
        if self.async_mode:
            markcoroutinefunction(self)

    def __call__(self, request: HttpRequest) -> Any:
        if self.async_mode:
            return self.__acall__(request)
        started, token = self._started()
        return self._watch(request, self.get_response(request), started, token)

    async def __acall__(self, request: HttpRequest) -> HttpResponseBase:
        started, token = self._started()
        get_response: Callable[[HttpRequest], Awaitable[HttpResponseBase]] = self.get_response
        response = await get_response(request)
        if getattr(response, "file_to_stream", None) is not None and response.streaming:
            # looked at now, in the request's thread: the only look a FileResponse gets
            await sync_to_async(self._look_at_file, thread_sensitive=True)(request, response, started, token)
            return response
        return self._watch(request, response, started, token)  # type: ignore[no-any-return]  # the same response

    @staticmethod
    def _started() -> tuple[float, object]:
        token = object()
        tracking.current_request.set(token)
        accounting.current_route.set("other")
        return time.monotonic(), token

    def _look_at_file(self, request: HttpRequest, response: HttpResponseBase, started: float, token: object) -> None:
        stream = _Stream(view_name(request), token, started, _atomic(request))
        stream.chunk(first=True)  # released first under STREAM_RELEASE_ALL_STREAMS
        stream.pinned.clear()  # its hold is not followed: the server may send it with sendfile

    def _watch(self, request: HttpRequest, response: Any, started: float, token: object) -> Any:
        if not response.streaming:
            return response
        if getattr(response, "file_to_stream", None) is not None:
            # a FileResponse the server may send with sendfile (wsgi.file_wrapper): re-wrapping its
            # content would lose that, so its connections are looked at now, just before it goes
            if not self.async_mode:
                self._look_at_file(request, response, started, token)
            return response
        stream = _Stream(view_name(request), token, started, _atomic(request))
        content = response.streaming_content
        response.streaming_content = stream.awatch(content) if response.is_async else stream.watch(content)
        return response

    def process_view(self, request: HttpRequest, view_func: Any, view_args: Any, view_kwargs: Any) -> None:
        request._stream_release_atomic = tracking.atomic_request_aliases(view_func)  # type: ignore[attr-defined]
        # the URL's name ("namespace:name"), or the view's dotted path when it has none
        match = request.resolver_match
        route = (match.view_name if match else None) or "other"
        accounting.current_route.set(route)
        accounting.hand_over(route)  # a persistent connection kept from an earlier request is this one's now

    def process_exception(self, request: HttpRequest, exception: Exception) -> None:
        if isinstance(exception, Error):
            accounting.record_db_error(exception)
