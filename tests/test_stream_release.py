"""Per backend and variant, on real gunicorn (gevent worker) with a pool of one connection:
while a stream's body is still being sent, is its connection checked out (the server's
accounting) and unusable by anyone else (PostgreSQL's pg_stat_activity, and a probe)? After
the stream ends, is it back?

tests/support/facts.py says what docs/facts.md reports; these tests measure it."""

import http.client
import json
import time
from contextlib import ExitStack

import pytest

from harness.stack import pgbouncer, postgres
from harness.stack.metrics import read_metrics
from harness.stack.server import Server
from stream_release import event_log
from tests.conftest import SPEC, app_backends, app_server
from tests.support.facts import PERSISTENT, POOLED, releases_on_a_server
from tests.support.waiting import wait_for

CHUNKS, CHUNK_BYTES, DELAY_MS = 3, 64, 700
# the view's queries before it returns (the audit row, the aggregate, the page): a backend that
# gives its connection back after each query checks one out for each
VIEW_QUERIES = 3
STREAM_MS = (CHUNKS - 1) * DELAY_MS
VARIANTS = ["hold", "close-old", "force-close", "guarded-close", "release"]

# PgBouncer in transaction mode gives PostgreSQL's connection back after every transaction:
# the app's connection to PgBouncer is held as with stock-persistent, PostgreSQL's is not.
BEHIND_PGBOUNCER = {"pgbouncer"}


@pytest.fixture(scope="module", params=list(SPEC.backends))
def server(request, database, tmp_path_factory):
    backend = SPEC.backends[request.param]
    directory = tmp_path_factory.mktemp(request.param)
    params = SPEC.params("slow-server", {"pool_max": 1, "seed_rows": 2000})
    with ExitStack() as stack:
        db = database
        if pgbouncer.missing_for(backend):
            pytest.skip(pgbouncer.INSTALL_HINT)
        if backend.via == "pgbouncer":
            db = stack.enter_context(pgbouncer.PgBouncer(database, 1, 100, directory / "pgbouncer.log"))
        s = stack.enter_context(
            Server(
                backend, params, db.app_url, postgres.free_port(), directory / "server.log", accounting_dir=directory
            )
        )
        s.accounting_dir = directory
        yield s


def in_use(server):
    return read_metrics(server.url)["pool_in_use"]


def probe(server, timeout):
    """The backend pid that served a /probe/, or None if no answer within `timeout`."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        conn.request("GET", "/probe/")
        response = conn.getresponse()
        return json.loads(response.read())["backend_pid"] if response.status == 200 else None
    except TimeoutError:
        return None
    finally:
        conn.close()


def open_stream(server, variant):
    """(connection, response) of a /stream/<variant>/ answered 200, its body not read yet."""
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    conn.request("GET", f"/stream/{variant}/?chunks={CHUNKS}&chunk_bytes={CHUNK_BYTES}&delay_ms={DELAY_MS}")
    response = conn.getresponse()
    assert response.status == 200
    return conn, response


def stream_events(server):
    rows = []
    for path in server.accounting_dir.glob("accounting-*.csv"):
        rows += [r for r in event_log.read(path) if r["route"] == "stream" and r["event"] in ("checkout", "return")]
    return sorted(rows, key=lambda r: float(r["unix_s"]))


def events_since(server, since):
    """The stream events after the first `since`, but for the returns of connections checked out
    before (a persistent connection of an earlier test goes whenever the garbage collector
    takes it, which may be now)."""
    events = stream_events(server)[since:]
    ours = {e["backend_pid"] for e in events if e["event"] == "checkout"}
    return [e for e in events if e["event"] == "checkout" or e["backend_pid"] in ours]


def returns_after_checkout(server, pid, since):
    """The stream's checkout of backend `pid` after `since` events, and the returns of that
    connection that followed it."""
    events = stream_events(server)[since:]
    checkouts = [i for i, e in enumerate(events) if e["event"] == "checkout" and e["backend_pid"] == str(pid)]
    assert checkouts, "the stream's checkout is in the accounting log"
    return [e for e in events[checkouts[-1] :] if e["event"] == "return" and e["backend_pid"] == str(pid)]


@pytest.mark.parametrize("variant", VARIANTS)
def test_connection_is_pinned_only_while_not_released(server, admin, database, variant):
    backend = server.backend.name
    releases = releases_on_a_server(backend, variant)
    since = len(stream_events(server))
    before = in_use(server)
    conn, response = open_stream(server, variant)
    stream_pid = int(response.getheader("X-Bench-Backend-Pid"))
    assert len(response.read(CHUNK_BYTES)) == CHUNK_BYTES  # the body has started, not ended

    # The server's accounting: has the stream's connection come back already?
    returned = returns_after_checkout(server, stream_pid, since)
    assert bool(returned) == releases
    backends = {pid: query for pid, _, query in app_backends(admin, database)}
    if backend in BEHIND_PGBOUNCER:
        assert len(backends) <= 1  # PostgreSQL sees PgBouncer's one server connection at most
        assert probe(server, timeout=5) is not None  # which is free between transactions
    elif backend in POOLED:
        assert in_use(server) == before + (0 if releases else 1)
        if releases:
            # the pool's only connection serves someone else while the stream goes on, and
            # PostgreSQL saw that backend run the probe's lookup after the stream's query
            assert probe(server, timeout=5) == stream_pid
            queries = {pid: query for pid, _, query in app_backends(admin, database)}
            assert '"sku" = ' in queries[stream_pid]
        else:
            assert '"category" = ' in backends[stream_pid]  # its last statement: the stream's query
            assert probe(server, timeout=0.5) is None  # nobody else can get a connection
    elif releases:
        # closed: PostgreSQL has no such backend, once it has handled the client's Terminate
        # (the backend exits just after the client closes, while the stream goes on)
        wait_for(lambda: stream_pid not in {pid for pid, _, _ in app_backends(admin, database)}, timeout=1)
    else:
        assert '"category" = ' in backends[stream_pid]  # open, its last statement the stream's

    rest = response.read()
    assert len(rest) == (CHUNKS - 1) * CHUNK_BYTES
    conn.close()

    if backend in PERSISTENT and not releases:
        # Django does not close it when the request ends: it goes only if the garbage
        # collector takes the finished greenlet's connection wrapper
        time.sleep(0.5)
        assert all(r["detail"] == "garbage-collected" for r in returns_after_checkout(server, stream_pid, since))
        return
    wait_for(lambda: returns_after_checkout(server, stream_pid, since))
    held_ms = float(returns_after_checkout(server, stream_pid, since)[0]["hold_ms"])
    if releases:
        assert held_ms < STREAM_MS / 4
    else:
        assert STREAM_MS * 0.9 <= held_ms <= STREAM_MS * 2
    if backend in POOLED:
        wait_for(lambda: in_use(server) == before)


def test_harness_refuses_an_unpatched_server(database, tmp_path):
    from harness import CellError

    server = app_server(database, tmp_path, pool_max=1)
    server.env["BENCH_PSYCOGREEN"] = "0"
    with pytest.raises(CellError, match="not gevent-patched"):
        with server:
            pass
    assert server.proc is None


@pytest.mark.parametrize("variant", ["cursor-hold", "release-per-batch"])
def test_a_stream_that_reads_rows_as_it_goes_holds_a_connection_per_batch_or_throughout(server, variant):
    """cursor-hold reads one QuerySet.iterator() cursor chunk by chunk; release-per-batch
    fetches each chunk's rows with stream_release.batches(), giving the connection back
    after each: its holds follow query time, cursor-hold's the stream's."""
    backend = server.backend.name
    view_checkouts = VIEW_QUERIES if server.backend.per_query else 1
    since = len(stream_events(server))
    before = in_use(server)
    conn, response = open_stream(server, variant)
    assert response.read(CHUNK_BYTES).startswith(b"# rows from a ")
    if backend in POOLED:  # between batches the pool's only connection is free, or not
        assert in_use(server) == before + (variant == "cursor-hold")
    assert len(response.read()) == (CHUNKS - 1) * CHUNK_BYTES
    conn.close()

    if variant == "release-per-batch":
        # the view's own checkouts, then one per chunk, each given back before the next
        wait_for(lambda: len(events_since(server, since)) == 2 * (CHUNKS + view_checkouts))
        events = events_since(server, since)
        assert [e["event"] for e in events] == ["checkout", "return"] * (CHUNKS + view_checkouts)
        assert max(float(e["hold_ms"]) for e in events if e["event"] == "return") < DELAY_MS / 4
    elif backend in PERSISTENT:
        time.sleep(0.5)  # kept after the request, as with hold: see the test above
        events = events_since(server, since)
        assert [e["event"] for e in events].count("checkout") == 1
        assert all(e["detail"] == "garbage-collected" for e in events if e["event"] == "return")
    else:
        # the cursor's checkout: the view's (at close), or one of its own after the view's
        # checkouts, each given back after its query (per query)
        pairs = 1 if view_checkouts == 1 else view_checkouts + 1
        wait_for(lambda: len(events_since(server, since)) == 2 * pairs)
        *view, checkout, back = events_since(server, since)
        assert [e["event"] for e in view] == ["checkout", "return"] * (pairs - 1)
        assert all(float(e["hold_ms"]) < DELAY_MS / 4 for e in view if e["event"] == "return")
        assert (checkout["event"], back["event"]) == ("checkout", "return")
        assert STREAM_MS * 0.9 <= float(back["hold_ms"]) <= STREAM_MS * 2
    if backend in POOLED:
        wait_for(lambda: in_use(server) == before)
