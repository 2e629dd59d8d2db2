"""`.venv/bin/python -m harness.studies.release_cost [--requests N] [--out DIR] [--backends a,b]`: what
giving a streaming response's database connection back costs and gains, per backend, on a real
PostgreSQL (a throwaway cluster; BENCH_DATABASE_URL is not used: the counts come from the
cluster's own log).

One thread serves N requests one after another, as a sync or gthread worker thread does: each
request is a call of Django's WSGIHandler, its body read to the end, then close() (which sends
request_finished, as a server does). Three views, over a table of ROWS rows:

- `hold`: queries the rows, returns a plain StreamingHttpResponse of them;
- `release`: the same through stream_release.ReleasingStreamingHttpResponse;
- `batches`: a ReleasingStreamingHttpResponse whose body is stream_release.batches(rows, BATCH):
  one query per batch, the connection given back after each (ROWS / BATCH full batches, and one
  more query that finds the end when ROWS is a multiple of BATCH);

each with STREAM_RELEASE_KEEP_PERSISTENT False and True (True keeps a persistent connection
without a pool: it only matters for stock-persistent).

Each backend of matrix.toml (ENGINE, CONN_MAX_AGE, OPTIONS, its Python environment) runs in a
subprocess of its own, Django configured once there; before each configuration every
connection is closed and every pool emptied, so that each starts as a fresh worker would.
Measured per configuration:

- new_connections: sessions of the app's role PostgreSQL started (log_connections lines);
- checkouts: Django's connection_created signals: every connect(), which for a pool is a
  checkout (equal to new_connections without a pool);
- us_per_request_p50/p90: wall time of a whole request (view, body, close()), microseconds;
- left_open: the app's sessions still open in pg_stat_activity after the last request, once
  the count has settled (a persistent connection, or what a pool keeps idle).

Writes release_cost.csv and run.json into --out (default /tmp/release_cost/<UTC time>-<sha12>)
and prints a markdown table on stdout. Bad input exits 2 with one line, before anything starts.
"""

import argparse
import csv
import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import harness
from harness import ROOT, CellError, UsageError
from harness.stack import pglog

ROWS = 100  # rows in the table the views read
BATCH = 10  # rows per batch of the `batches` view
VIEWS = ("hold", "release", "batches")
KEEP_PERSISTENT = (False, True)
MIN_REQUESTS = 10
WARM_UP = 5  # requests of each view before the first configuration (then every connection closed)
DEFAULT_OUT = Path("/tmp/release_cost")
TABLE = "release_cost_row"
WORKER_TIMEOUT_S = 1800
SETTLE_S = 5.0  # longest wait for the app's session count to stop changing
COLUMNS = [
    "backend",
    "keep_persistent",
    "view",
    "requests",
    "new_connections",
    "checkouts",
    "us_per_request_p50",
    "us_per_request_p90",
    "left_open",
]
# Each environment's versions, in run.json (None: not installed there)
DISTRIBUTIONS = (
    "Django",
    "psycopg",
    "psycopg-binary",
    "psycopg-pool",
    "psycopg2",
    "psycopg2-binary",
    "django-db-geventpool",
    "gevent",
    "django-stream-release",
)


# ---------------------------------------------------------------- the harness's side (.venv)


@dataclass(frozen=True)
class _Run:
    """What each backend's measurement shares: the run directory, its run.json record (filled in
    as each backend goes), [defaults]' parameters, the requests per configuration, the console."""

    run_dir: str
    info: dict
    params: object
    requests: int
    console: object


def run(requests=200, out=None, backends=None, console=None):
    """Measure every backend named (default: each of matrix.toml's the app reaches directly);
    returns (run directory, rows)."""
    if requests < MIN_REQUESTS:
        raise UsageError(f"--requests={requests} is too small: use at least {MIN_REQUESTS}")
    from rich.console import Console

    from harness.results import runinfo
    from harness.spec import matrix
    from harness.stack import postgres
    from harness.stack.envs import python_for

    console = console or Console(stderr=True)
    spec = matrix.load()
    params = matrix.check_params(dict(spec.defaults), "[defaults]")
    names = _names(spec, backends, out)
    postgres.find_binaries()
    postgres.run_as()
    # each backend's environment, built now if it is missing or stale (before the cluster starts)
    pythons = {name: python_for(spec.backends[name].env, console) for name in names}

    if out is None:
        DEFAULT_OUT.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    run_dir, info = _create(out, requests, params)
    console.print(
        f"release cost: {len(names)} backends x {len(KEEP_PERSISTENT) * len(VIEWS)} configurations x "
        f"{requests} requests; results in {run_dir}"
    )
    study = _Run(run_dir, info, params, requests, console)
    rows = []
    with runinfo.recording(run_dir, info):
        log_path = os.path.join(run_dir, "postgres.log")
        with postgres.Cluster(params.db_max_connections, log_path) as db:
            info["postgres"] = {"version": db.version, "source": db.source, "max_connections": db.max_connections}
            _seed(db.app_url)
            for name in names:
                rows.extend(_measure_backend(study, db, name, spec.backends[name], pythons[name]))
                _write_csv(os.path.join(run_dir, "release_cost.csv"), rows)
        info["duration_s"] = round(time.monotonic() - started, 1)
    print(markdown(rows))
    console.print(f"release cost: {os.path.join(run_dir, 'release_cost.csv')}, {os.path.join(run_dir, 'run.json')}")
    return run_dir, rows


def _names(spec, backends, out) -> list:
    """The backends to measure (default: each the app reaches directly), once they and `out` are
    fit to use; UsageError otherwise."""
    names = list(backends) if backends else [n for n, b in spec.backends.items() if not b.via]
    for name in names:
        if name not in spec.backends:
            raise UsageError(f"--backends: {name} is unknown: use some of {', '.join(spec.backends)}")
        if spec.backends[name].via:
            raise UsageError(f"--backends: {name} goes through {spec.backends[name].via}: choose backends without one")
    if len(set(names)) != len(names):
        raise UsageError(f"--backends={','.join(names)} names a backend twice: name each once")
    if out is not None and os.path.exists(out):
        raise UsageError(f"--out={out} already exists: choose a new directory; earlier results are never overwritten")
    return names


def _create(out, requests, params):
    """The run's directory and its run.json record (runinfo.create): (run directory, info)."""
    from harness.results import runinfo

    return runinfo.create(
        "release-cost",
        out,
        results=DEFAULT_OUT,
        command=["python", "-m", "harness.studies.release_cost", *sys.argv[1:]],
        parameters={
            "requests": requests,
            "rows": ROWS,
            "batch": BATCH,
            "warm_up_requests_per_view": WARM_UP,
            "views": list(VIEWS),
            "keep_persistent": list(KEEP_PERSISTENT),
            "pool_max": params.pool_max,
            "pool_timeout_s": params.pool_timeout_s,
        },
        backends={},
        environments={},
    )


def _measure_backend(study, db, name, backend, python) -> list[dict]:
    """One backend measured by its worker (`python`) on the cluster `db`, what it is and its
    environment recorded in run.json as it goes: its rows (COLUMNS only)."""
    from harness.stack import procs

    job = {
        "backend": name,
        "driver": backend.driver,
        "database": _database(backend, study.params, db.app_url),
        "requests": study.requests,
        "admin_url": db.admin_url,
        "app_user": db.app_user,
        "app_db": db.app_db,
        "postgres_log": os.path.join(study.run_dir, "postgres.log"),
        "result": os.path.join(study.run_dir, f"worker-{name}.json"),
    }
    info = study.info
    info["backends"][name] = {
        "description": backend.description,
        "env": backend.env,
        "driver": backend.driver,
        "engine": backend.engine,
        "conn_max_age": backend.conn_max_age,
        "options": job["database"]["OPTIONS"],
        "pooled": backend.pooled,
    }
    study.console.print(f"  {name} ({backend.env} environment) ...")
    result = _measure(procs, python, job, study.run_dir)
    info["environments"][backend.env] = {
        "python": os.path.relpath(python, ROOT),
        "python_version": result["python"],
        "versions": result["versions"],
    }
    info["backends"][name]["distinct_backend_pids_seen"] = {
        f"{r['keep_persistent']}/{r['view']}": r["distinct_pids"] for r in result["rows"]
    }
    return [{k: r[k] for k in COLUMNS} for r in result["rows"]]


def _database(backend, params, app_url):
    """The backend's DATABASES entry (matrix.toml's ENGINE, CONN_MAX_AGE, OPTIONS) on the app's role."""
    url = urlsplit(app_url)
    return {
        "ENGINE": backend.engine,
        "NAME": unquote(url.path.lstrip("/")),
        "USER": unquote(url.username or ""),
        "PASSWORD": unquote(url.password or ""),
        "HOST": url.hostname,
        "PORT": str(url.port or ""),
        "CONN_MAX_AGE": backend.conn_max_age,
        "DISABLE_SERVER_SIDE_CURSORS": not backend.server_side_cursors,
        "OPTIONS": backend.django_options(params),
    }


def _seed(app_url):
    import psycopg2

    conn = psycopg2.connect(app_url)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE TABLE {TABLE} (id integer PRIMARY KEY, name text NOT NULL)")
            cur.execute(f"INSERT INTO {TABLE} SELECT g, 'row ' || g FROM generate_series(1, %s) g", (ROWS,))
            cur.execute(f"ANALYZE {TABLE}")
    finally:
        conn.close()


def _measure(procs, python, job, run_dir):
    """Run one backend's worker to its end; its result (the worker's JSON)."""
    job_path = os.path.join(run_dir, f"worker-{job['backend']}.job.json")
    with open(job_path, "w") as f:
        json.dump(job, f, indent=2)
    log = os.path.join(run_dir, f"worker-{job['backend']}.log")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_") and k != "DJANGO_SETTINGS_MODULE"}
    env.update(PYTHONPATH=str(ROOT), PYTHONUNBUFFERED="1")
    proc = procs.spawn([python, "-m", "harness.studies.release_cost", "--worker", job_path], log, env=env, cwd=ROOT)
    try:
        code = proc.wait(WORKER_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise CellError(f"{job['backend']}: the worker took over {WORKER_TIMEOUT_S} s; see {log}") from None
    finally:
        if proc.poll() is None:
            procs.stop(proc)
        else:
            procs.forget(proc)
    if code != 0:
        raise CellError(f"{job['backend']}: the worker failed with {code}; see {log}:\n{procs.tail(log)}")
    with open(job["result"]) as f:
        return json.load(f)


def _write_csv(path, rows):
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def markdown(rows) -> str:
    lines = [
        "| " + " | ".join(COLUMNS) + " |",
        "|" + "|".join("---" if c in ("backend", "keep_persistent", "view") else "---:" for c in COLUMNS) + "|",
    ]
    for r in rows:
        lines.append("| " + " | ".join(str(r[c]) for c in COLUMNS) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- the worker (the backend's environment)


def worker(job_path):
    """Configure Django for one backend, serve the configurations, write the result JSON."""
    with open(job_path) as f:
        job = json.load(f)
    driver = _configure(job)
    serve, seen = _app()
    sessions = _Sessions(job)
    for view in VIEWS:
        for _ in range(WARM_UP):
            serve(view)
    sessions.reset()
    rows = [row for keep in KEEP_PERSISTENT for row in _measure_keep(job, keep, serve, seen, sessions)]
    sessions.reset()
    sessions.close()
    result = {"python": sys.version.split()[0], "driver": driver, "versions": _versions(), "rows": rows}
    with open(job["result"], "w") as f:
        json.dump(result, f, indent=2)


def _configure(job) -> str:
    """Django set up on the job's database; the driver it uses, checked against matrix.toml's."""
    import django
    from django.conf import settings

    settings.configure(
        DEBUG=False,
        SECRET_KEY="release-cost-only",
        ALLOWED_HOSTS=["*"],
        ROOT_URLCONF="release_cost_urls",
        INSTALLED_APPS=["stream_release"],
        MIDDLEWARE=[],
        DATABASES={"default": job["database"]},
        USE_TZ=True,
        STREAM_RELEASE_KEEP_PERSISTENT=False,
    )
    django.setup()
    from django.db.backends.postgresql.psycopg_any import is_psycopg3

    driver = "psycopg" if is_psycopg3 else "psycopg2"
    if driver != job["driver"]:
        raise SystemExit(f"{job['backend']}: Django uses {driver} here, matrix.toml says {job['driver']}")
    return driver


def _app():
    """The three views (hold, release, batches) behind a WSGI handler: (serve(view) -> µs of one
    whole request, seen: the connections made since it was last cleared, and their pids)."""
    from wsgiref.util import setup_testing_defaults

    from django.core.handlers.wsgi import WSGIHandler

    _install_urls()
    seen = _watch_connections()
    handler = WSGIHandler()

    def serve(view):
        """One request as a WSGI server makes it: µs of wall time."""
        environ = {"PATH_INFO": f"/{view}/", "REQUEST_METHOD": "GET"}
        setup_testing_defaults(environ)
        status = []
        got = 0
        started = time.perf_counter()
        response = handler(environ, lambda s, headers, exc_info=None: status.append(s))
        for chunk in response:
            got += chunk.count(b"\n")
        response.close()
        elapsed = time.perf_counter() - started
        if not status[0].startswith("200") or got != ROWS:
            raise RuntimeError(f"/{view}/: {status[0]}, {got} rows of {ROWS}")
        return elapsed * 1e6

    return serve, seen


def _install_urls():
    """The views and their URLconf, installed as the module release_cost_urls (ROOT_URLCONF)."""
    import types

    from django.db import models
    from django.http import StreamingHttpResponse
    from django.urls import path

    from stream_release import ReleasingStreamingHttpResponse, batches

    class Row(models.Model):
        id = models.IntegerField(primary_key=True)
        name = models.TextField()

        class Meta:
            app_label = "release_cost"
            managed = False
            db_table = TABLE

    def lines(rows):
        return b"".join(f"{r.id},{r.name}\n".encode() for r in rows)

    def chunks(rows):  # the body of hold and release: a chunk of BATCH rows, as batches sends
        return (lines(rows[i : i + BATCH]) for i in range(0, len(rows), BATCH))

    def hold(request):
        return StreamingHttpResponse(chunks(list(Row.objects.order_by("pk"))))

    def release(request):
        return ReleasingStreamingHttpResponse(chunks(list(Row.objects.order_by("pk"))))

    def in_batches(request):
        return ReleasingStreamingHttpResponse(lines(batch) for batch in batches(Row.objects.all(), BATCH))

    urls = types.ModuleType("release_cost_urls")
    urls.urlpatterns = [path("hold/", hold), path("release/", release), path("batches/", in_batches)]
    sys.modules["release_cost_urls"] = urls


def _watch_connections() -> dict:
    """Every connection Django makes from now on counted (a checkout, for a pool) and its backend
    pid kept: the dict of both, {"checkouts": n, "pids": set}."""
    from django.db.backends.signals import connection_created

    seen = {"checkouts": 0, "pids": set()}

    def created(sender, connection, **kwargs):
        seen["checkouts"] += 1
        raw = connection.connection
        seen["pids"].add(raw.get_backend_pid() if hasattr(raw, "get_backend_pid") else raw.info.backend_pid)

    connection_created.connect(created, weak=False)
    return seen


class _Sessions:
    """The app's sessions as PostgreSQL sees them, through a superuser connection of its own."""

    def __init__(self, job):
        self.job = job
        self.admin = _admin_connection(job["admin_url"])
        self.cur = self.admin.cursor()

    def close(self):
        self.admin.close()

    def count(self):
        self.cur.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "AND usename = %s AND datname = %s",
            (self.job["app_user"], self.job["app_db"]),
        )
        return self.cur.fetchone()[0]

    def settled(self):
        """The app's open sessions once the count has stayed the same for 0.2 s (a closed
        session's server process takes a moment to end)."""
        deadline = time.monotonic() + SETTLE_S
        last, same = None, 0
        while True:
            count = self.count()
            same = same + 1 if count == last else 0
            last = count
            if same >= 4 or time.monotonic() > deadline:
                return count
            time.sleep(0.05)

    def reset(self):
        """No connection open and no pool: as a fresh worker starts."""
        from django.db import connections

        connections.close_all()
        for conn in connections.all(initialized_only=True):
            if (conn.settings_dict.get("OPTIONS") or {}).get("pool"):
                conn.close_pool()  # Django's own pool: made again at the next connect
            elif callable(getattr(conn, "closeall", None)):
                conn.closeall()  # django-db-geventpool's: its idle connections closed
        deadline = time.monotonic() + SETTLE_S
        while (left := self.count()) and time.monotonic() < deadline:
            time.sleep(0.01)
        if left:
            raise RuntimeError(f"{left} sessions of the app still open {SETTLE_S:g} s after closing everything")


def _measure_keep(job, keep, serve, seen, sessions) -> list[dict]:
    """Each view, `requests` times from no connection, with STREAM_RELEASE_KEEP_PERSISTENT=keep."""
    from django.test.utils import override_settings

    rows = []
    with override_settings(STREAM_RELEASE_KEEP_PERSISTENT=keep):
        for view in VIEWS:
            sessions.reset()
            offset = os.path.getsize(job["postgres_log"])
            seen["checkouts"], seen["pids"] = 0, set()
            times = [serve(view) for _ in range(job["requests"])]
            left_open = sessions.settled()
            opened = _sessions_opened(job["postgres_log"], offset, job["app_user"], job["app_db"])
            rows.append(
                {
                    "backend": job["backend"],
                    "keep_persistent": keep,
                    "view": view,
                    "requests": job["requests"],
                    "new_connections": opened,
                    "checkouts": seen["checkouts"],
                    "us_per_request_p50": round(statistics.median(times), 1),
                    "us_per_request_p90": round(statistics.quantiles(times, n=10, method="inclusive")[8], 1),
                    "left_open": left_open,
                    "distinct_pids": len(seen["pids"]),
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _versions() -> dict:
    import stream_release

    versions = {}
    for name in DISTRIBUTIONS:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    versions["stream_release.__version__"] = stream_release.__version__
    return versions


def _admin_connection(url):
    """An autocommit connection of the superuser, with whichever driver this environment has."""
    try:
        import psycopg2 as driver
    except ImportError:
        import psycopg as driver
    conn = driver.connect(url)
    conn.autocommit = True
    return conn


def _sessions_opened(log_path, offset, user, database) -> int:
    """Sessions of `user` on `database` PostgreSQL authorized after `offset` of its log."""
    with open(log_path, "rb") as f:
        f.seek(offset)
        text = f.read().decode(errors="replace")
    count = 0
    for line in text.splitlines():
        match = pglog.LINE.match(line)
        if match is None or match[3] != "LOG":
            continue
        authorized = pglog.AUTHORIZED.match(match[4])
        if authorized and authorized[1] == user and authorized[2] == database:
            count += 1
    return count


# ---------------------------------------------------------------- command line


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's own adds the usage)
        print(f"error: {message}", file=sys.stderr)
        raise SystemExit(2)


def main(argv=None):
    parser = _Parser(prog="python -m harness.studies.release_cost", description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=200, help="requests per configuration (default 200)")
    parser.add_argument(
        "--out", default=None, help=f"run directory, must not exist (default {DEFAULT_OUT}/<UTC time>-<sha12>)"
    )
    parser.add_argument(
        "--backends",
        default=None,
        help="comma-separated backends of matrix.toml (default: every one the app reaches directly)",
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args.worker)
        return 0

    def body():
        backends = [b.strip() for b in args.backends.split(",") if b.strip()] if args.backends is not None else None
        if backends == []:
            raise UsageError("--backends is empty: name at least one backend of matrix.toml")
        run(args.requests, args.out, backends)
        return 0

    return harness.run_command(body)


if __name__ == "__main__":
    raise SystemExit(main())
