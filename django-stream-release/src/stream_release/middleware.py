"""The production detector: which streaming responses pin a database connection.

    MIDDLEWARE = ["stream_release.middleware.StreamReleaseMiddleware", ...]   # first

When a streaming response starts sending its body while one of the request's connections is
still checked out outside an atomic block, it logs one warning (logger "stream_release":
the view, the alias, how long the connection has been held) and counts it in the counter
stream_release_pinned_streams_total{alias, view}; when the body ends it records how long the
stream held the connection in stream_release_pinned_stream_hold_seconds, from its checkout (or
the request's start, for a connection kept from an earlier request) until it was given back or
the body ended (metrics need the
`metrics` extra). It also labels the request with its URL name for the connection
accounting (stream_release.accounting) and counts requests that failed with a database error.

What it costs: nothing on a response that is not streaming but one attribute check; on a
streaming one, a look at each initialized connection before the first chunk, and at the
pinned ones after each chunk (docs: the measured cost per request).
"""

import logging
import time
import weakref

from asgiref.sync import sync_to_async
from django.db import Error, connections
from django.db.backends.signals import connection_created

from stream_release import accounting, metrics

logger = logging.getLogger("stream_release")


def _stamp(sender, connection, **kwargs):
    """When a connection was checked out: Django sends connection_created at every connect(),
    which for a pool is every checkout."""
    connection._stream_release_since = time.monotonic()


connection_created.connect(_stamp, dispatch_uid="stream_release.checkout_time")


def view_name(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is None:
        return request.path
    func = getattr(match.func, "view_class", match.func)
    return f"{func.__module__}.{func.__qualname__}"


def _held_outside_atomic():
    """[(alias, wrapper)] of this thread's connections checked out outside an atomic block. Not
    SQLite's in-memory databases: Django never closes those (closing would destroy the data),
    so they are open whatever the view does, and no other request waits for them."""
    return [
        (c.alias, c)
        for c in connections.all(initialized_only=True)
        if c.connection is not None and not c.in_atomic_block and not _in_memory(c)
    ]


def _in_memory(conn):
    return conn.vendor == "sqlite" and conn.is_in_memory_db()


class _PinnedStream:
    """One streaming response: its pinned connections, found at its first chunk. It keeps no
    reference to a connection's wrapper: a persistent connection goes when its thread or
    greenlet does, and a reference here would keep it until the garbage collector ran."""

    def __init__(self, view, started=None):
        self.view = view
        self.started = time.monotonic() if started is None else started  # the request's start
        # alias -> [weakref to the wrapper, held by this request since (monotonic), given back at
        # or None, checked out at, PostgreSQL backend pid]
        self.pinned = {}

    def first_chunk(self, record=True):
        """Warn and count the connections held now; `record`: follow them to the body's end.
        The request holds a connection from its checkout, or from its own start for one kept
        from an earlier request (a persistent connection)."""
        now = time.monotonic()
        pinned = {}
        for alias, conn in _held_outside_atomic():
            checked_out = getattr(conn, "_stream_release_since", now)
            pinned[alias] = [
                weakref.ref(conn),
                max(checked_out, self.started),
                None,
                checked_out,
                accounting.backend_pid(conn.connection),
            ]
        if not pinned:
            return
        if record:
            self.pinned = pinned
        held = ", ".join(
            f"{alias!r} (checked out {1000 * (now - entry[3]):.0f} ms ago)" for alias, entry in pinned.items()
        )
        logger.warning(
            "%s started streaming its body with database connection %s: it stays checked out until the "
            "last chunk is sent. Give it back first: stream_release.ReleasingStreamingHttpResponse",
            self.view,
            held,
        )
        for alias in pinned:
            metrics.PINNED_STREAMS.labels(alias, self.view).inc()

    def after_chunk(self):
        now = time.monotonic()
        for entry in self.pinned.values():
            conn, given_back = entry[0](), entry[2]
            if given_back is None and (conn is None or conn.connection is None):
                entry[2] = now

    def ended(self):
        """The hold over the body: in the metric, and in the event log as a `pinned_stream`
        event with the connection's backend pid (its detail ends in "given back" when the
        connection came back before the body's end: its `return` was written then)."""
        self.after_chunk()  # given back after the last chunk (a body's own `finally`, or closed first on abort)
        now = time.monotonic()
        for alias, (_, since, given_back, _, pid) in self.pinned.items():
            held = (given_back or now) - since
            metrics.PINNED_HOLD.labels(alias).observe(held)
            if accounting.enabled():
                accounting.event_log.write(
                    "pinned_stream",
                    accounting.current_route.get(),
                    hold_ms=accounting.fmt_ms(held),
                    backend_pid=pid,
                    detail=f"{self.view} {alias}" + (" given back" if given_back else ""),
                )
        self.pinned.clear()

    def watch(self, content):
        try:
            first = True
            for chunk in content:
                if first:
                    self.first_chunk()
                    first = False
                elif self.pinned:
                    self.after_chunk()
                yield chunk
        finally:
            self.ended()

    async def awatch(self, content):
        # the request's connections live in its thread (thread-sensitive), not the event loop's
        try:
            first = True
            async for chunk in content:
                if first:
                    await sync_to_async(self.first_chunk, thread_sensitive=True)()
                    first = False
                elif self.pinned:
                    await sync_to_async(self.after_chunk, thread_sensitive=True)()
                yield chunk
        finally:
            self.ended()


class StreamReleaseMiddleware:
    """Put it first in MIDDLEWARE (see the module's documentation)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.monotonic()
        accounting.current_route.set("other")
        response = self.get_response(request)
        if not response.streaming:
            return response
        stream = _PinnedStream(view_name(request), started)
        if getattr(response, "file_to_stream", None) is not None:
            # a FileResponse the server may send with sendfile (wsgi.file_wrapper): re-wrapping its
            # content would lose that, so its connections are looked at now, just before it goes
            stream.first_chunk(record=False)
            return response
        content = response.streaming_content
        response.streaming_content = stream.awatch(content) if response.is_async else stream.watch(content)
        return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        # the URL's name ("namespace:name"), or the view's dotted path when it has none
        route = request.resolver_match.view_name or "other"
        accounting.current_route.set(route)
        accounting.hand_over(route)  # a persistent connection kept from an earlier request is this one's now

    def process_exception(self, request, exception):
        if isinstance(exception, Error):
            accounting.record_db_error(exception)
