"""pytest plugin (entry point pytest11, next to pytest-django): streaming responses that would
pin a database connection, caught in your test suite.

- `pytest --fail-on-pinned-streams` (or the ini option `fail_on_pinned_streams = true`) fails
  every test in which a streaming response's body is consumed while the response holds a
  database connection.
- The fixture `assert_stream_releases(response)` consumes one response's body, fails the test
  the same way if it holds a connection, and returns the body's bytes.

What counts as holding, for each alias, at the first chunk and between chunks:
- the view (or the body, between two chunks) queried the alias since the request started and
  since the connection was last given back (closed, or release_connections()), and
- the connection is still open outside an atomic block (it is held), or it is inside the
  test's own transaction (django_db, TestCase): there nothing can be given back, so the plugin
  reports that outside the test's transaction it would be held.
A query the body makes during its last chunk's production holds nothing across a chunk and is
not reported. Queries are seen through Django's execute wrappers on every connection of the
test's thread (and of threads that connect while the test runs). Docs: what it sees under
django_db, django_db(transaction=True), TestCase and TransactionTestCase.
"""

import sys
from collections import defaultdict

import pytest

_WATCH = pytest.StashKey()
_OPTION = "fail_on_pinned_streams"


def pytest_addoption(parser):
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
        type="bool",
        default=False,
        help="fail tests in which a streaming response's body is sent while it holds a database connection",
    )


def _fails(config) -> bool:
    given = config.getoption(_OPTION)
    return config.getini(_OPTION) if given is None else given


def pytest_report_header(config):
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
def pytest_runtest_setup(item):
    if _fails(item.config) or "assert_stream_releases" in getattr(item, "fixturenames", ()):
        item.stash[_WATCH] = Watch()
        item.stash[_WATCH].start()
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item):
    result = yield
    watch = item.stash.get(_WATCH, None)
    if watch is not None and watch.problems and _fails(item.config):
        pytest.fail(report(watch.problems), pytrace=False)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    try:
        return (yield)
    finally:
        watch = item.stash.get(_WATCH, None)
        if watch is not None:
            watch.stop()


@pytest.fixture
def assert_stream_releases(request):
    """`body = assert_stream_releases(response)`: consume a streaming response and fail if it
    held a database connection while its body was sent (with or without the option)."""
    watch = request.node.stash[_WATCH]

    def check(response):
        __tracebackhide__ = True
        stream = getattr(response, "_stream_release_watched", None)
        if stream is None:
            raise TypeError(
                f"assert_stream_releases() takes a streaming response made during the test, "
                f"got {type(response).__name__}"
            )
        body = _consume(response)
        if stream.problems:
            for problem in stream.problems:
                watch.problems.remove(problem)
            pytest.fail(report(stream.problems))
        return body

    return check


def report(problems) -> str:
    head = f"stream_release: {len(problems)} streaming response(s) held a database connection while the body was sent:"
    return "\n".join([head, *(f"  - {p}" for p in problems)])


def _consume(response) -> bytes:
    if response.is_async:
        from asgiref.sync import async_to_sync

        async def read():
            return b"".join([part async for part in response.streaming_content])

        return async_to_sync(read)()
    return b"".join(response.streaming_content)


def _caller() -> str:
    """The code that made the response: the first frame outside Django, asgiref and this
    package (the view, or the helper it called)."""
    frame = sys._getframe(2)
    while frame is not None:
        module = frame.f_globals.get("__name__", "")
        if not module.startswith(("django.", "stream_release", "asgiref")):
            return f"{module}.{frame.f_code.co_qualname}"
        frame = frame.f_back
    return "a view"


class Watch:
    """One test's watch: connection uses per alias, and every streaming response made meanwhile."""

    def __init__(self):
        self.problems = []
        self.uses = defaultdict(int)  # alias -> connects and queries since the request or the last release
        self.producing = []  # the streams whose body is producing a chunk right now
        self._original = None

    def start(self):
        from django.core.signals import request_started
        from django.db import connections
        from django.db.backends.signals import connection_created
        from django.http import StreamingHttpResponse

        from stream_release.signals import connections_released

        watch, original = self, StreamingHttpResponse._set_streaming_content
        self._original = original

        def _set_streaming_content(response, value):
            original(response, value)
            if getattr(response, "_stream_release_watched", None) is None:
                # innermost: whatever wraps the body later (the release, a middleware) runs first
                stream = _Stream(watch, _caller())
                response._stream_release_watched = stream
                response._iterator = (
                    stream.afollow(response._iterator) if response.is_async else stream.follow(response._iterator)
                )

        StreamingHttpResponse._set_streaming_content = _set_streaming_content
        request_started.connect(self._request_started, dispatch_uid=id(self))
        connection_created.connect(self._connected, dispatch_uid=id(self))
        connections_released.connect(self._released, dispatch_uid=id(self))
        for conn in connections.all(initialized_only=True):
            self._instrument(conn)

    def stop(self):
        from django.core.signals import request_started
        from django.db import connections
        from django.db.backends.signals import connection_created
        from django.http import StreamingHttpResponse

        from stream_release.signals import connections_released

        StreamingHttpResponse._set_streaming_content = self._original
        request_started.disconnect(dispatch_uid=id(self))
        connection_created.disconnect(dispatch_uid=id(self))
        connections_released.disconnect(dispatch_uid=id(self))
        for conn in connections.all(initialized_only=True):
            if self._execute in conn.execute_wrappers:
                conn.execute_wrappers.remove(self._execute)

    def _instrument(self, conn):
        if self._execute not in conn.execute_wrappers:
            conn.execute_wrappers.append(self._execute)

    def _execute(self, execute, sql, params, many, context):
        alias = context["connection"].alias
        self.uses[alias] += 1
        if self.producing:
            self.producing[-1].body_queries[alias] += 1
        return execute(sql, params, many, context)

    def _request_started(self, **kwargs):
        from django.db import connections

        self.uses.clear()
        # ATOMIC_REQUESTS: the request's transaction uses the connection even if the view does
        # not (and in a test the connection may be open already, so no connect shows it)
        for alias in connections:
            if connections[alias].settings_dict.get("ATOMIC_REQUESTS"):
                self.uses[alias] += 1

    def _connected(self, sender, connection, **kwargs):
        # opening a connection is a use too: ATOMIC_REQUESTS opens one for a view that never queries
        self._instrument(connection)
        self.uses[connection.alias] += 1

    def _released(self, sender, released, kept_in_atomic, **kwargs):
        for alias in (*released, *kept_in_atomic):
            self.uses.pop(alias, None)


class _Stream:
    def __init__(self, watch, view):
        self.watch, self.view = watch, view
        self.problems = []
        self.body_queries = defaultdict(int)  # alias -> queries made while producing a chunk
        self._reported = set()

    def check(self, first: bool):
        from django.db import connections

        for alias, count in list(self.watch.uses.items()):
            if not count:
                continue
            conn = connections[alias]
            if conn.connection is None or conn.closed_in_transaction:
                self.watch.uses.pop(alias, None)  # given back since
                continue
            if alias in self._reported:
                continue
            self._reported.add(alias)
            if self.body_queries[alias]:
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

    def follow(self, content):
        first = True
        while True:
            self.watch.producing.append(self)
            try:
                chunk = next(content)
            except StopIteration:
                return  # a query made for nothing but the end held nothing across a chunk
            finally:
                self.watch.producing.pop()
            self.check(first)
            first = False
            yield chunk

    async def afollow(self, content):
        from asgiref.sync import sync_to_async

        first = True
        while True:
            self.watch.producing.append(self)
            try:
                chunk = await anext(content)
            except StopAsyncIteration:
                return
            finally:
                self.watch.producing.pop()
            await sync_to_async(self.check, thread_sensitive=True)(first)
            first = False
            yield chunk
