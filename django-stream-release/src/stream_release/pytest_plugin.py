"""pytest plugin (entry point pytest11, next to pytest-django): streaming responses that would
pin a database connection, caught in your test suite.

- `pytest --fail-on-pinned-streams` (or the ini option `fail_on_pinned_streams = true`) fails
  every test in which a streaming response's body is consumed while the response holds a
  database connection.
- The fixture `assert_stream_releases(response)` consumes one response's body, fails the test
  the same way if it holds a connection, and returns the body's bytes;
  `await aassert_stream_releases(response)` does the same in an async test.

What counts as holding, for each alias, at the first chunk and between chunks:
- the view (or the body, between two chunks) queried the alias since the request started and
  since the connection was last given back (closed, or release_connections()), and
- the connection is still open outside an atomic block (it is held), or it is inside the
  test's own transaction (django_db, TestCase): there nothing can be given back, so the plugin
  reports that outside the test's transaction it would be held.
A query the body makes during its last chunk's production holds nothing across a chunk and is
not reported. Queries are seen through Django's execute wrappers on every connection of the
test's thread and of threads that connect while the test runs (a live server's). ATOMIC_REQUESTS
counts as a use of the alias when Django wraps the view in its transaction (not for a
view marked transaction.non_atomic_requests). Docs: what it sees under
django_db, django_db(transaction=True), TestCase and TransactionTestCase.
"""

from __future__ import annotations

import sys
from collections import defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from types import FrameType
from typing import Any

import pytest

_WATCH: pytest.StashKey[Watch] = pytest.StashKey()
_OPTION = "fail_on_pinned_streams"


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("stream_release", "django-stream-release")
    group.addoption(
        "--fail-on-pinned-streams",
        action="store_true",
        dest=_OPTION,
        default=None,
        help="fail tests in which a streaming response's body is sent while it holds a database "
        "connection (ini: fail_on_pinned_streams)",
    )
    parser.addini(
        _OPTION,
        type="bool",  # type: ignore[maybe-unrecognized-str-typeform]  # pytest 9 also takes a TypeForm here
        default=False,
        help="fail tests in which a streaming response's body is sent while it holds a database connection",
    )


def _fails(config: pytest.Config) -> bool:
    given: bool | None = config.getoption(_OPTION)
    return config.getini(_OPTION) if given is None else given


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    if not _fails(config):
        return None
    lines = ["stream_release: failing tests whose streaming responses hold a database connection"]
    try:
        from django.db import connections

        in_memory = [
            alias
            for alias in connections
            if connections[alias].vendor == "sqlite"
            and (connections[alias].settings_dict.get("TEST", {}).get("NAME") or ":memory:") == ":memory:"
        ]
    except Exception:  # Django not configured (yet): nothing to say
        in_memory = []
    if in_memory:
        lines.append(
            f"stream_release: {', '.join(map(repr, in_memory))} is SQLite in memory, where Django never "
            "closes a connection, so close() and release cannot be seen: give it a file "
            "(DATABASES[...]['TEST']['NAME']) or test on PostgreSQL"
        )
    return lines


@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> Generator[None, None, None]:
    fixtures = getattr(item, "fixturenames", ())
    if _fails(item.config) or "assert_stream_releases" in fixtures or "aassert_stream_releases" in fixtures:
        item.stash[_WATCH] = Watch()
        item.stash[_WATCH].start()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, None, None]:
    result = yield
    watch = item.stash.get(_WATCH, None)
    if watch is not None and watch.problems and _fails(item.config):
        pytest.fail(report(watch.problems), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Generator[None, None, None]:
    try:
        return (yield)
    finally:
        watch = item.stash.get(_WATCH, None)
        if watch is not None:
            watch.stop()


@pytest.fixture
def assert_stream_releases(request: pytest.FixtureRequest) -> Callable[[Any], bytes]:
    """`body = assert_stream_releases(response)`: consume a streaming response and fail if it
    held a database connection while its body was sent (with or without the option). In an
    async test, use aassert_stream_releases."""
    watch = request.node.stash[_WATCH]

    def check(response: Any) -> bytes:
        __tracebackhide__ = True
        stream = _watched(response)
        if _in_event_loop():
            raise RuntimeError(
                "assert_stream_releases() was called in an async test, where it cannot read an async body: "
                "use `await aassert_stream_releases(response)`"
            )
        body = _consume(response)
        _fail_if_held(watch, stream)
        return body

    return check


@pytest.fixture
def aassert_stream_releases(request: pytest.FixtureRequest) -> Callable[[Any], Awaitable[bytes]]:
    """`body = await aassert_stream_releases(response)`: assert_stream_releases for async tests
    (an AsyncClient's response, a sync or async body)."""
    watch = request.node.stash[_WATCH]

    async def check(response: Any) -> bytes:
        __tracebackhide__ = True
        stream = _watched(response)
        if response.is_async:
            body = b"".join([part async for part in response.streaming_content])
        else:  # read in the test's thread, where a sync body's connections are
            from asgiref.sync import sync_to_async

            body = await sync_to_async(lambda: b"".join(response.streaming_content), thread_sensitive=True)()
        _fail_if_held(watch, stream)
        return body

    return check


def _in_event_loop() -> bool:
    import asyncio

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _watched(response: Any) -> _Stream:
    stream: _Stream | None = getattr(response, "_stream_release_watched", None)
    if stream is None:
        raise TypeError(
            f"assert_stream_releases() takes a streaming response made during the test, got {type(response).__name__}"
        )
    return stream


def _fail_if_held(watch: Watch, stream: _Stream) -> None:
    __tracebackhide__ = True
    if stream.problems:
        for problem in stream.problems:
            watch.problems.remove(problem)
        pytest.fail(report(stream.problems))


def report(problems: list[str]) -> str:
    head = f"stream_release: {len(problems)} streaming response(s) held a database connection while the body was sent:"
    return "\n".join([head, *(f"  - {p}" for p in problems)])


def _consume(response: Any) -> bytes:
    if response.is_async:
        from asgiref.sync import async_to_sync

        async def read() -> bytes:
            return b"".join([part async for part in response.streaming_content])

        return async_to_sync(read)()
    return b"".join(response.streaming_content)


def _caller() -> str:
    """The code that made the response: the first frame outside Django, asgiref and this
    package (the view, or the helper it called)."""
    frame: FrameType | None = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(("django.", "stream_release", "asgiref")):
            return f"{module}.{frame.f_code.co_qualname}"
        frame = frame.f_back
    return "a view"


class Watch:
    """One test's watch: connection uses per alias, and every streaming response made meanwhile."""

    def __init__(self) -> None:
        self.problems: list[str] = []
        self.uses: defaultdict[str, int] = defaultdict(
            int
        )  # alias -> connects and queries since the request or the last release
        self.producing: list[_Stream] = []  # the streams whose body is producing a chunk right now
        self._patched: list[tuple[type, str, Any]] = []

    def _patch(self, cls: type, name: str, replacement: Any) -> Any:
        original = cls.__dict__[name]
        self._patched.append((cls, name, original))
        setattr(cls, name, replacement)
        return original

    def start(self) -> None:
        from django.core.handlers.base import BaseHandler
        from django.core.signals import request_started
        from django.db import connections
        from django.db.backends.signals import connection_created
        from django.http import StreamingHttpResponse

        from stream_release.signals import connections_released
        from stream_release.tracking import atomic_request_aliases

        watch = self

        def _set_streaming_content(response: Any, value: Any) -> None:
            set_content(response, value)
            if getattr(response, "_stream_release_watched", None) is None:
                # innermost: whatever wraps the body later (the release, a middleware) runs first
                stream = _Stream(watch, _caller())
                response._stream_release_watched = stream
                response._iterator = (
                    stream.afollow(response._iterator) if response.is_async else stream.follow(response._iterator)
                )

        def make_view_atomic(handler: Any, view: Any) -> Any:
            # ATOMIC_REQUESTS: the request's transaction uses the connection even if the view does
            # not (and in a test the connection may be open already, so no connect shows it); Django
            # decides here, per view (transaction.non_atomic_requests opts one out)
            for alias in atomic_request_aliases(view):
                watch.uses[alias] += 1
            return make_atomic(handler, view)

        set_content = self._patch(StreamingHttpResponse, "_set_streaming_content", _set_streaming_content)
        make_atomic = self._patch(BaseHandler, "make_view_atomic", make_view_atomic)
        request_started.connect(self._request_started, dispatch_uid=id(self))
        connection_created.connect(self._connected, dispatch_uid=id(self))
        connections_released.connect(self._released, dispatch_uid=id(self))
        for conn in connections.all(initialized_only=True):
            self._instrument(conn)

    def stop(self) -> None:
        from django.core.signals import request_started
        from django.db import connections
        from django.db.backends.signals import connection_created

        from stream_release.signals import connections_released

        while self._patched:
            cls, name, original = self._patched.pop()
            setattr(cls, name, original)
        request_started.disconnect(dispatch_uid=id(self))  # type: ignore[arg-type]  # Django takes any hashable
        connection_created.disconnect(dispatch_uid=id(self))  # type: ignore[arg-type]  # Django takes any hashable
        connections_released.disconnect(dispatch_uid=id(self))  # type: ignore[arg-type]  # Django takes any hashable
        for conn in connections.all(initialized_only=True):
            if self._execute in conn.execute_wrappers:
                conn.execute_wrappers.remove(self._execute)

    def _instrument(self, conn: Any) -> None:
        if self._execute not in conn.execute_wrappers:
            conn.execute_wrappers.append(self._execute)

    def _execute(self, execute: Any, sql: Any, params: Any, many: bool, context: dict[str, Any]) -> Any:
        alias = context["connection"].alias
        self.uses[alias] += 1
        if self.producing:
            self.producing[-1].body_queries[alias] += 1
        return execute(sql, params, many, context)

    def _request_started(self, **kwargs: Any) -> None:
        self.uses.clear()

    def _connected(self, sender: Any, connection: Any, **kwargs: Any) -> None:
        # opening a connection is a use too: ATOMIC_REQUESTS opens one for a view that never queries
        self._instrument(connection)
        self.uses[connection.alias] += 1

    def _released(self, sender: Any, released: list[str], kept_in_atomic: list[str], **kwargs: Any) -> None:
        # a connection kept because a cursor on it is still being read is still used
        for alias in (*released, *kept_in_atomic):
            self.uses.pop(alias, None)


class _Stream:
    def __init__(self, watch: Watch, view: str) -> None:
        self.watch, self.view = watch, view
        self.problems: list[str] = []
        self.body_queries: defaultdict[str, int] = defaultdict(int)  # alias -> queries made while producing a chunk
        self._reported: set[str] = set()

    def check(self, first: bool) -> None:
        """At the first chunk, once it is produced: what the view left held (a connection the body
        used while producing it is looked at later, since whatever wraps the body, a middleware
        releasing every stream, may give it back before it is sent). Before each later chunk is
        produced: whatever is still held, across the chunk just sent."""
        from django.db import connections

        from stream_release.tracking import state

        for alias, count in list(self.watch.uses.items()):
            if not count or (first and self.body_queries[alias]):
                continue
            conn = connections[alias]
            if conn.connection is None or conn.closed_in_transaction:
                self.watch.uses.pop(alias, None)  # given back since
                continue
            if alias in self._reported:
                continue
            self._reported.add(alias)
            conn_state = state(conn)
            if first and conn_state is not None and conn_state.reading() and not self.body_queries[alias]:
                what = (
                    f"started sending its body with a cursor on {alias!r} still being read (a queryset.iterator() "
                    "begun in the view, or a cursor not closed): nothing can give the connection back before "
                    "the cursor is closed; read in batches() in the body instead"
                )
            elif self.body_queries[alias]:
                what = (
                    f"queried {alias!r} while producing its body and kept the connection to the next chunk "
                    "(an open cursor such as queryset.iterator(), or queries with nothing giving it back)"
                )
            elif first and not conn.in_atomic_block:
                what = (
                    f"started sending its body holding database connection {alias!r} "
                    f"(used {count} time(s) since the request started, connecting and querying; "
                    "nothing gave it back)"
                )
            elif first:
                what = (
                    f"started sending its body after using {alias!r} {count} time(s) with nothing giving "
                    "the connection back: outside the test's transaction it would be held until the last chunk"
                )
            else:  # queries counted since a release, by code outside the body between two chunks
                what = f"held database connection {alias!r} between two chunks of its body"
            problem = f"{self.view} {what}"
            self.problems.append(problem)
            self.watch.problems.append(problem)

    def follow(self, content: Iterator[Any]) -> Iterator[Any]:
        first = True
        while True:
            if not first:
                self.check(False)  # held across the chunk just sent
            self.watch.producing.append(self)
            try:
                chunk = next(content)
            except StopIteration:
                return  # a query made for nothing but the end held nothing across a chunk
            finally:
                self.watch.producing.pop()
            if first:
                self.check(True)
                first = False
            yield chunk

    async def afollow(self, content: AsyncIterator[Any]) -> AsyncIterator[Any]:
        from asgiref.sync import sync_to_async

        check = sync_to_async(self.check, thread_sensitive=True)
        first = True
        while True:
            if not first:
                await check(False)
            self.watch.producing.append(self)
            try:
                chunk = await anext(content)
            except StopAsyncIteration:
                return
            finally:
                self.watch.producing.pop()
            if first:
                await check(True)
                first = False
            yield chunk
