"""`python -m harness detector-cost` (make detector-cost): what django-stream-release's detector
middleware costs per request, measured in one process on a real PostgreSQL.

Whole requests: two Django WSGI handlers of the same app, one with `StreamReleaseMiddleware`
and one without, serve the same requests in turn: batches of `requests` requests to one
handler, then the other, in a random order each repeat, so that drift in the machine hits both
alike. A request is the whole WSGI call: the view, its queries, every chunk of the body, and
close() (which gives the connection back, as a server does). The cost is the median over the
repeats of (with − without) per request, in microseconds; its spread, the repeats' lowest and
highest difference, says how much of it is noise (PostgreSQL's round trips vary far more
than the middleware costs).

The middleware alone: the same kind of response (eight chunks of 256 bytes, or a plain
response) through the middleware and without it, 10 × `requests` times a batch, with no
view, database or server: its own work per request, precise to a fraction of a microsecond.

- `probe`: /probe/, not streaming (one query): the middleware only looks at the response;
- `stream-release`: /stream/release/: streaming, nothing pinned: one look at each connection;
- `stream-hold`: /stream/hold/: pinned: the warning (to the server's log, here a file), the
  counter and the hold's histogram.

The run directory gets detector_cost.csv and run.json.
"""

import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import time
from wsgiref.util import setup_testing_defaults

from harness import ROOT, CellError, UsageError
from harness.results import runinfo
from harness.runs import capacity
from harness.spec import matrix
from harness.stack import postgres
from harness.stack.envs import python_for
from harness.stack.server import prepare_database, server_env

KINDS = {
    "probe": "/probe/",
    "stream-release": "/stream/release/?chunks=8&chunk_bytes=256&delay_ms=0&category=1",
    "stream-hold": "/stream/hold/?chunks=8&chunk_bytes=256&delay_ms=0&category=1",
}
# without_us_p50 and cost_us_*: whole requests (wall time) without the middleware, and what it
# added; middleware_alone_us_*: the middleware's own work on the same kind of response, without
# the view, the database or the server, and its share of the whole request (pct)
COLUMNS = [
    "request",
    "path",
    "backend",
    "requests_per_batch",
    "repeats",
    "without_us_p50",
    "cost_us_p50",
    "cost_us_min",
    "cost_us_max",
    "middleware_alone_us_p50",
    "middleware_alone_us_min",
    "middleware_alone_us_max",
    "middleware_alone_pct_p50",
]
MIDDLEWARE = "stream_release.middleware.StreamReleaseMiddleware"


def run(backend="geventpool", requests=300, repeats=11, out=None, matrix_file=None, overrides=None, console=None):
    """`overrides`: parameters (SET=) over the slow-server scenario's."""
    from rich.console import Console

    console = console or Console(stderr=True)
    spec = matrix.load(matrix_file)
    if backend not in spec.backends:
        raise UsageError(f"BACKEND={backend} is unknown: use one of {', '.join(spec.backends)}")
    if spec.backends[backend].via:
        raise UsageError(
            f"BACKEND={backend} needs {spec.backends[backend].via}: choose a backend the app "
            "reaches directly (the detector's cost does not depend on it)"
        )
    for name, value, low in (("REQUESTS", requests, 10), ("REPEATS", repeats, 3)):
        if value < low:
            raise UsageError(f"{name}={value} is too small: use at least {low}")
    p = spec.params("slow-server", {"seed_rows": 2000, **(overrides or {})})
    external = postgres.preflight()
    run_dir, info = runinfo.create("detector-cost", out, backend=backend, requests_per_batch=requests, repeats=repeats)
    run_id = info["run_id"]
    console.print(
        f"[bold]{run_id}[/]: the detector's cost per request, {repeats} repeats of {requests} requests "
        f"per kind and handler; results in {os.path.relpath(run_dir)}"
    )
    with runinfo.recording(run_dir, info):
        with (
            contextlib.nullcontext(external)
            if external
            else postgres.Cluster(p.db_max_connections, os.path.join(run_dir, "postgres.log")) as db
        ):
            prepare_database(spec.backends[backend], p, db.app_url, os.path.join(run_dir, "prepare.log"))
            env = server_env(spec.backends[backend], p, db.app_url, 0)
            with open(os.path.join(run_dir, "server.log"), "w") as log:
                result = subprocess.run(
                    [
                        python_for(spec.backends[backend].env),
                        "-m",
                        "harness.studies.detector_cost",
                        str(requests),
                        str(repeats),
                    ],
                    env=env,
                    cwd=ROOT,
                    stdout=subprocess.PIPE,
                    stderr=log,
                    text=True,
                    timeout=1800,
                )
            if result.returncode != 0:
                raise CellError(f"the measurement failed: see {os.path.join(run_dir, 'server.log')}")
        rows = [
            {"backend": backend, "requests_per_batch": requests, "repeats": repeats, **row}
            for row in json.loads(result.stdout)
        ]
        capacity.write_csv(os.path.join(run_dir, "detector_cost.csv"), COLUMNS, rows)
    _print(rows, console)
    console.print(f"detector cost: {os.path.relpath(os.path.join(run_dir, 'detector_cost.csv'))}")
    return run_dir, rows


def _print(rows, console):
    from rich.table import Table

    table = Table(
        title="what the detector middleware costs per request, µs (microseconds): medians of the "
        "repeats, their lowest and highest in brackets (detector_cost.csv)"
    )
    for title in ("request", "whole request", "added to it", "the middleware alone", "alone, % of the request"):
        table.add_column(title, justify="left" if title == "request" else "right")
    for r in rows:
        table.add_row(
            r["request"],
            f"{r['without_us_p50']:.0f}",
            f"{r['cost_us_p50']:.0f} ({r['cost_us_min']:.0f}, {r['cost_us_max']:.0f})",
            f"{r['middleware_alone_us_p50']:.1f} ({r['middleware_alone_us_min']:.1f}, "
            f"{r['middleware_alone_us_max']:.1f})",
            f"{r['middleware_alone_pct_p50']:.2f}",
        )
    console.print(table)


def _paired(run_batch, sides, repeats):
    """{side: [µs per request of each repeat]}, the sides' batches in a random order each repeat."""
    got = {side: [] for side in sides}
    for _ in range(repeats):
        for side in random.sample(list(sides), len(sides)):
            got[side].append(run_batch(side))
    return got


def _costs(got):
    costs = [w - wo for w, wo in zip(got["with"], got["without"], strict=True)]
    return statistics.median(got["without"]), statistics.median(costs), min(costs), max(costs)


def measure(requests, repeats):
    """In the app's own environment and settings (Django configured): the table's rows."""
    import django

    django.setup()
    from django.db import connection
    from django.test import RequestFactory

    from stream_release.middleware import StreamReleaseMiddleware

    handlers = _handlers()
    # the middleware alone, on the same responses without the view, the database or the server:
    # what it adds to any request. stream-hold keeps a connection checked out throughout.
    made = _responses()
    fake_request = RequestFactory().get("/stream/hold/")

    rows = []
    for kind, path in KINDS.items():
        for handler in handlers.values():  # warm-up: connections, caches, the first warning
            for _ in range(20):
                _request(handler, path)
        end_to_end = _end_to_end(handlers, path, requests)
        chains = {"without": made[kind], "with": StreamReleaseMiddleware(made[kind])}
        alone = _alone(chains, fake_request, requests * 10)
        e2e = _costs(_paired(end_to_end, handlers, repeats))
        if kind == "stream-hold":
            connection.ensure_connection()
        else:
            connection.close()
        mw = _costs(_paired(alone, chains, repeats))
        connection.close()
        rows.append(_row(kind, path, e2e, mw))
    return rows


def _handlers():
    """{"without": a WSGI handler of the app without the middleware, "with": one with it first}."""
    from django.conf import settings
    from django.core.handlers.wsgi import WSGIHandler
    from django.test.utils import override_settings

    others = [m for m in settings.MIDDLEWARE if m != MIDDLEWARE]
    handlers = {}
    for side, middleware in (("without", others), ("with", [MIDDLEWARE, *others])):
        with override_settings(MIDDLEWARE=middleware):
            handlers[side] = WSGIHandler()
    return handlers


def _request(handler, path):
    """One whole GET of `path` through `handler`, as a WSGI server makes it (body read, then
    close()); raises RuntimeError unless the status is 200."""
    route, _, query = path.partition("?")
    environ = {"PATH_INFO": route, "QUERY_STRING": query, "REQUEST_METHOD": "GET"}
    setup_testing_defaults(environ)
    status = []
    response = handler(environ, lambda s, headers, exc_info=None: status.append(s))
    for _ in response:
        pass
    response.close()
    if not status[0].startswith("200"):
        raise RuntimeError(f"{path}: {status[0]}")


def _responses():
    """{kind: a view-less callable (request -> response) making that kind's response}."""
    from django.db import connection
    from django.http import HttpResponse, StreamingHttpResponse

    from stream_release import ReleasingStreamingHttpResponse

    chunks = [b"x" * 256] * 8
    return {
        "probe": lambda _: HttpResponse(b"x" * 256),
        "stream-release": lambda _: ReleasingStreamingHttpResponse(iter(chunks)),
        # a cursor made and closed: the request used the connection it keeps (the detector warns
        # only about connections the request used), with no round trip to the database
        "stream-hold": lambda _: (connection.cursor().close(), StreamingHttpResponse(iter(chunks)))[1],
    }


def _end_to_end(handlers, path, requests):
    """run_batch(side) for _paired: µs per whole request of `requests` requests of `path` to
    that side's handler."""

    def end_to_end(side):
        started = time.perf_counter()
        for _ in range(requests):
            _request(handlers[side], path)
        return (time.perf_counter() - started) / requests * 1e6

    return end_to_end


def _alone(chains, fake_request, n):
    """run_batch(side) for _paired: µs per response of `n` responses through that side's chain
    (the middleware or not), each body read to the end."""

    def alone(side):
        chain = chains[side]
        started = time.perf_counter()
        for _ in range(n):
            for _ in chain(fake_request):
                pass
        return (time.perf_counter() - started) / n * 1e6

    return alone


def _row(kind, path, e2e, mw):
    """The table's row of one kind, from _costs of the whole requests (e2e) and of the middleware
    alone (mw)."""
    return {
        "request": kind,
        "path": path,
        "without_us_p50": round(e2e[0], 1),
        "cost_us_p50": round(e2e[1], 1),
        "cost_us_min": round(e2e[2], 1),
        "cost_us_max": round(e2e[3], 1),
        "middleware_alone_us_p50": round(mw[1], 2),
        "middleware_alone_us_min": round(mw[2], 2),
        "middleware_alone_us_max": round(mw[3], 2),
        "middleware_alone_pct_p50": round(100 * mw[1] / e2e[0], 2),
    }


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]), int(sys.argv[2]))))
