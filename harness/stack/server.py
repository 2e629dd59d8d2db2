"""The app under test: gunicorn with the gevent worker, started for one cell and stopped after.

`server_env()` is the one translation from a backend and its parameters to the BENCH_*
variables that benchapp/settings.py and benchapp/gunicorn.conf.py read.
"""

import json
import os
import subprocess
import urllib.error
import urllib.parse
import urllib.request

from harness import ROOT, CellError, phase
from harness.spec import matrix
from harness.spec.matrix import OWN, Backend, Params
from harness.stack import procs
from harness.stack.envs import python_for, python_for_target

GRACEFUL_TIMEOUT_S = 5  # what gunicorn gives open streams after SIGTERM
LOOPBACK = "127.0.0.1"  # where the harness's servers listen, unless make serve BIND= says otherwise


def server_env(
    backend: Backend,
    params: Params,
    database_url: str,
    port: int,
    accounting_dir: str = "",
    server: matrix.Server | None = None,
) -> dict:
    """The server's whole BENCH_* configuration; any BENCH_* in the harness's own
    environment is dropped, so a run is exactly what run.json records."""
    env = gunicorn_env(params, database_url, port, accounting_dir, server)
    env.update(
        DJANGO_SETTINGS_MODULE="benchapp.settings",
        PYTHONPATH=str(ROOT),
        **backend_env(backend, params),
        BENCH_ATOMIC_REQUESTS="1" if params.atomic_requests else "0",
        BENCH_SEED_ROWS=str(params.seed_rows),
    )
    return env


def backend_env(backend: Backend, params: Params) -> dict:
    """The backend's DATABASES entry as BENCH_* variables (benchapp/settings.py, and a target's
    settings shim when a matrix backend is substituted into it); only its name for a target's own."""
    if backend is OWN:
        return {"BENCH_BACKEND": backend.name}
    return {
        "BENCH_BACKEND": backend.name,
        "BENCH_DB_ENGINE": backend.engine,
        "BENCH_CONN_MAX_AGE": str(backend.conn_max_age),
        "BENCH_DB_OPTIONS": json.dumps(backend.django_options(params)),
        "BENCH_DB_SETTINGS": json.dumps(backend.django_settings(params)),
        "BENCH_DISABLE_SERVER_SIDE_CURSORS": "0" if backend.server_side_cursors else "1",
    }


def gunicorn_env(
    params: Params, database_url: str, port: int, accounting_dir: str = "", server: matrix.Server | None = None
) -> dict:
    """What every server the harness starts reads (benchapp/gunicorn.conf.py, the accounting),
    whatever app it serves, under `server` (None: gunicorn.conf.py's own, gevent); the harness's
    own BENCH_* dropped."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BENCH_") and k != "PROMETHEUS_MULTIPROC_DIR"}
    if server is not None:
        env.update(
            BENCH_SERVER=server.name,
            BENCH_WORKER_CLASS=server.worker,
            BENCH_APP_KIND=server.app,
            BENCH_THREADS=str(params.threads),
        )
    env.update(
        PYTHONUNBUFFERED="1",
        BENCH_DATABASE_URL=database_url,
        BENCH_HOST=LOOPBACK,
        BENCH_PORT=str(port),
        BENCH_WORKERS=str(params.workers),
        BENCH_WORKER_CONNECTIONS=str(params.worker_connections),
        BENCH_ACCOUNTING_DIR=str(accounting_dir) if params.instrument else "",
        BENCH_ACCOUNTING="1" if params.instrument else "0",
        BENCH_GC=params.server_gc,
        BENCH_RELEASE_ALL_STREAMS="1" if params.release_all_streams else "0",
        BENCH_GRACEFUL_TIMEOUT=str(GRACEFUL_TIMEOUT_S),
    )
    # With several workers, Server.start() adds PROMETHEUS_MULTIPROC_DIR, so that /metrics
    # sums them (prometheus_client's multiprocess mode).
    return env


def prepare_database(backend: Backend, params: Params, database_url: str, log_path):
    """Create the schema and seed the table, with Django's stock backend (no pool needed)."""
    env = server_env(backend, params, database_url, 0)
    env["BENCH_DB_ENGINE"] = "django.db.backends.postgresql"
    env["BENCH_DB_OPTIONS"] = "{}"
    for args in (["migrate", "--no-input", "-v", "0"], ["seed", "--rows", str(params.seed_rows)]):
        result = subprocess.run(
            [python_for(backend.env), "-m", "benchapp", *args],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        with open(log_path, "a") as log:
            log.write(f"$ python -m benchapp {' '.join(args)}\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            raise CellError(f"python -m benchapp {' '.join(args)} failed:\n{result.stderr[-2000:]}")


def get(url: str, timeout: float = 5.0):
    """(status, body bytes, headers) of a GET; HTTP errors are answers, not exceptions."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read(), response.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


class Server(procs.Service):
    """`with Server(backend, params, db_url, port, log_path, accounting_dir) as server:`"""

    stop_timeout = GRACEFUL_TIMEOUT_S + 5  # SIGTERM: gunicorn's graceful shutdown

    def __init__(
        self,
        backend: Backend,
        params: Params,
        database_url: str,
        port: int,
        log_path,
        accounting_dir="",
        server: matrix.Server | None = None,
    ):
        """It listens on 127.0.0.1 unless listen_on() says otherwise before it starts."""
        self.backend, self.params, self.server = backend, params, server or matrix.default_server()
        self.port, self.log_path = port, log_path
        self.env = self.environment(database_url, accounting_dir)
        self.listen_on(LOOPBACK)
        self.health = {}

    def environment(self, database_url, accounting_dir) -> dict:
        """What the server runs with: benchapp's settings from the backend and parameters."""
        return server_env(self.backend, self.params, database_url, self.port, accounting_dir, self.server)

    def listen_on(self, bind: str):
        """Where the server listens: 127.0.0.1, or (make serve BIND=) one address of this machine."""
        self.bind, self.env["BENCH_HOST"] = bind, bind
        self.url = f"http://{bind}:{self.port}"

    def start(self):
        if self.params.workers > 1:  # removed by stop(), like any Service's directory
            self.make_tmp("bench-metrics-")
            self.env["PROMETHEUS_MULTIPROC_DIR"] = self.tmp
        # where this start's lines begin in a log that may hold earlier ones (make serve's)
        self.log_start = os.path.getsize(self.log_path) if self.log_path and os.path.exists(self.log_path) else 0
        self.proc = procs.spawn(self.command(), self.log_path, env=self.env, cwd=self.cwd)
        phase("server start")
        self.health = procs.wait_ready(self.proc, self._health, self.server.runner, self.log_path, timeout=30)
        self.check_health(self.health)
        if self.server.gunicorn:
            self.check_worker()
        return self

    def command(self) -> list:
        """The server's runner on the cell's address, serving the application of its kind."""
        return getattr(self, f"_{self.server.runner}_command")()

    def application(self) -> str:
        """The application the server serves: benchapp's, or a target's (BENCH_*_APP)."""
        if self.server.app == "asgi":
            return self.env.get("BENCH_ASGI_APP", "benchapp.asgi:application")
        return self.env.get("BENCH_WSGI_APP", "benchapp.wsgi:application")

    def _gunicorn_command(self) -> list:
        """gunicorn with benchapp/gunicorn.conf.py, which reads the BENCH_* environment."""
        return [self.python(), "-m", "gunicorn", "-c", ROOT / "benchapp" / "gunicorn.conf.py"]

    def _daphne_command(self) -> list:
        return [
            self.python(),
            "-m",
            "daphne",
            "--bind",
            self.bind,
            "--port",
            str(self.port),
            "--application-close-timeout",
            str(GRACEFUL_TIMEOUT_S),
            self.application(),
        ]

    def _granian_command(self) -> list:
        """granian's WSGI interface runs a request in one of `threads` blocking threads, like
        gthread; its ASGI one without lifespan events (asginl), which Django does not handle."""
        wsgi = self.server.app == "wsgi"
        return [
            self.python(),
            "-m",
            "granian",
            "--interface",
            "wsgi" if wsgi else "asginl",
            "--host",
            self.bind,
            "--port",
            str(self.port),
            "--workers",
            str(self.params.workers),
            *(["--blocking-threads", str(self.params.threads)] if wsgi else []),
            "--workers-kill-timeout",
            str(GRACEFUL_TIMEOUT_S),
            "--no-ws",
            self.application(),
        ]

    def check_worker(self):
        """gunicorn says which worker class it runs ("Using worker: ..."): the server's own."""
        if self.log_path is None:
            return
        with open(self.log_path, errors="replace") as log:
            log.seek(self.log_start)
            used = [line.rsplit("Using worker: ", 1)[1].strip() for line in log if "Using worker: " in line]
        if used != [self.server.worker]:
            raise CellError(
                f"gunicorn runs worker {', '.join(used) or 'unknown'}, not {self.server.worker} "
                f"(server {self.server.name}):\n{procs.tail(self.log_path)}"
            )

    cwd = ROOT
    health_path = "/healthz"

    def why(self, body: bytes) -> str:
        """What a failed request left: the exception line of the last traceback in this start's
        server log, and where the log is; else the start of the body."""
        exception = last_exception(self.log_path, getattr(self, "log_start", 0)) if self.log_path else None
        if exception:
            return f"{exception} (the traceback is in {self.log_path})"
        return f"{body[:200]!r}" + (f" (see {self.log_path})" if self.log_path else "")

    @property
    def metrics_base(self):
        """Where /metrics (the accounting, for the sampler) is served."""
        return self.url

    def python(self):
        return python_for(self.backend.env)

    def _health(self):
        try:
            status, body, _ = get(f"{self.url}{self.health_path}", timeout=2)
        except OSError:
            return None  # not listening yet
        if status != 200:
            raise CellError(f"{self.health_path} answered {status}:\n{procs.tail(self.log_path)}")
        return json.loads(body)

    def check_health(self, health: dict):
        if health.get("backend") != self.backend.name:
            raise CellError(
                f"{self.health_path} reports backend {health.get('backend')!r}, expected {self.backend.name!r}"
            )
        self.check_server(health)
        self.check_driver(health)
        limit = health.get("pool_limit")
        if limit is not None and limit != self.params.pool_max:
            raise CellError(f"{self.health_path} reports pool_limit {limit}, expected pool_max={self.params.pool_max}")

    def check_server(self, health: dict):
        if (health.get("server"), health.get("app")) != (self.server.name, self.server.app):
            raise CellError(
                f"{self.health_path} reports server {health.get('server')!r} serving "
                f"{health.get('app')!r}, expected {self.server.name!r} serving {self.server.app!r}"
            )

    def check_driver(self, health: dict):
        if self.backend is not OWN and health.get("driver") != self.backend.driver:
            raise CellError(
                f"the server runs on {health.get('driver')!r}, but backend {self.backend.name!r} declares "
                f"{self.backend.driver!r}: its environment {self.backend.env!r} has the wrong driver"
            )
        greenlets = self.server.greenlets
        if greenlets and health.get("driver") == "psycopg2" and not health.get("psycopg2_gevent_patched"):
            raise CellError(
                "the server's psycopg2 is not gevent-patched (psycogreen in post_fork: is psycogreen installed "
                "in its environment?): every query would block the whole worker and the numbers would mean "
                "something else"
            )
        if not greenlets and health.get("psycopg2_gevent_patched"):
            raise CellError(f"psycopg2 is gevent-patched under server {self.server.name}, which has no gevent hub")

    def verify(self, variant: str, warmup_probes: int = 10):
        """Check each endpoint answers as it should, the app accepts the cell's stream shape,
        and warm the worker up."""
        p = self.params
        for chunks, chunk_bytes, delay_ms in ((2, 64, 0), (p.chunks, 1, 0), (1, p.chunk_bytes, p.delay_ms)):
            status, body, _ = get(
                f"{self.url}/stream/{variant}/?chunks={chunks}&chunk_bytes={chunk_bytes}&delay_ms={delay_ms}"
            )
            if status != 200 or len(body) != chunks * chunk_bytes:
                raise CellError(
                    f"/stream/{variant}/ answered {status} with {len(body)} bytes, expected "
                    f"200 with {chunks * chunk_bytes}: {self.why(body)}"
                )
        phase("warm-up")
        for _ in range(warmup_probes):
            status, body, _ = get(f"{self.url}/probe/")
            if status != 200 or not json.loads(body).get("item"):
                raise CellError(f"/probe/ answered {status}: {body[:200]!r} (is the table seeded?)")
        status, body, _ = get(f"{self.url}/metrics")
        if p.instrument and (status != 200 or b"stream_release_connections_in_use" not in body):
            raise CellError(f"/metrics answered {status} without the connection accounting")


def target_env(
    target,
    backend: Backend,
    params: Params,
    database_url: str,
    port: int = 0,
    accounting_dir: str = "",
    server: matrix.Server | None = None,
) -> dict:
    """What a target's processes (manage.py, gunicorn) run with: its settings through the shim,
    and the backend (its own, or a matrix backend substituted in)."""
    env = {
        **gunicorn_env(params, database_url, port, accounting_dir, server),
        **target.env(),
        **backend_env(backend, params),
    }
    if backend.engine.startswith("benchapp."):  # a backend of this project's own (geventpool-bounded)
        env["PYTHONPATH"] += os.pathsep + str(ROOT)
    return env


class TargetServer(Server):
    """A target's own project (harness/spec/target.py) on the same servers as benchapp, with the
    harness's settings shim (harness/spec/target_app/): its database, the accounting, the detector,
    and its own backend or one of matrix.toml's."""

    health_path = "/__stream_release__/healthz"

    @property
    def metrics_base(self):
        return f"{self.url}/__stream_release__"

    def __init__(self, target, *args, **kwargs):
        """Server's arguments, after the target."""
        self.target, self.cwd = target, target.project
        super().__init__(*args, **kwargs)

    def environment(self, database_url, accounting_dir) -> dict:
        return target_env(self.target, self.backend, self.params, database_url, self.port, accounting_dir, self.server)

    def python(self):
        return python_for_target(self.target, self.backend)

    def check_health(self, health: dict):
        if self.backend is OWN:  # whatever its settings name: nothing to hold it to
            self.check_server(health)
            self.check_driver(health)
        else:
            super().check_health(health)

    def routes(self, *paths):
        """The routes the accounting labels these paths' checkouts with (their views' names)."""
        query = "&".join(f"resolve={urllib.parse.quote(p, safe='')}" for p in paths)
        status, body, _ = get(f"{self.url}{self.health_path}?{query}")
        routes = json.loads(body).get("routes", {}) if status == 200 else {}
        missing = [p for p in paths if not routes.get(p)]
        if missing:
            raise CellError(f"TARGET={self.target.file}: {', '.join(missing)} resolve(s) to no view of the project")
        return tuple(routes[p] for p in paths)

    def verify(self, stream=None, warmup_probes: int = 10):
        """Each stream answers 200 and the probe uses the database (a checkout in the accounting)."""
        from harness.stack.metrics import read_metrics

        for s in self.target.streams if stream is None else [stream]:
            status, body, _ = get(f"{self.url}{s.path}", timeout=120)
            if status != 200:
                raise CellError(
                    f"TARGET={self.target.file}: stream {s.name!r} ({s.path}) answered {status} on "
                    f"warm-up, not 200: {self.why(body)}"
                )
        phase("warm-up")
        before = read_metrics(self.metrics_base).get("pool_checkouts_total", 0)
        for _ in range(warmup_probes):
            status, body, _ = get(f"{self.url}{self.target.probe}")
            if status != 200:
                raise CellError(f"TARGET={self.target.file}: the probe {self.target.probe} answered {status}, not 200")
        after = read_metrics(self.metrics_base).get("pool_checkouts_total", 0)
        if self.params.instrument and after == before:
            raise CellError(
                f"TARGET={self.target.file}: the probe {self.target.probe} never touched the database "
                "(no connection checked out): point target.probe.path at a view that queries it"
            )


def last_exception(log_path, start=0) -> str | None:
    """The exception line (`module.Class: message`) of the last Python traceback in the log
    from byte `start`, or None."""
    try:
        with open(log_path, errors="replace") as log:
            log.seek(start)
            lines = log.read().splitlines()
    except OSError:
        return None
    found, in_traceback = None, False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            in_traceback = True
        elif in_traceback and line and not line.startswith((" ", "\t")):
            found, in_traceback = line.strip()[:300], False
    return found


def prepare_target(target, params: Params, database_url: str, log_path):
    """The project's own migrations, then its setup commands, in its directory with the shim's
    settings and its own backend ("python" in a command is the target's environment's)."""
    import shlex

    python = python_for_target(target, OWN)
    env = target_env(target, OWN, params, database_url)
    for command in ["python manage.py migrate --no-input", *target.setup]:
        argv = shlex.split(command)
        if argv and argv[0] == "python":
            argv[0] = python
        result = subprocess.run(argv, env=env, cwd=target.project, capture_output=True, text=True)
        with open(log_path, "a") as log:
            log.write(f"$ {command}\n{result.stdout}{result.stderr}")
        if result.returncode != 0:
            raise CellError(f"TARGET={target.file}: {command!r} failed in {target.project}:\n{result.stderr[-2000:]}")


_IMPORT_CHECK = """
import importlib, sys
try:
    import django
    django.setup()
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}".splitlines()[0]); sys.exit(3)
module, _, attribute = sys.argv[1].partition(":")
try:
    getattr(importlib.import_module(module), attribute)
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}".splitlines()[0]); sys.exit(4)
# the streams whose views are async (coroutine functions, or class-based views marked so)
import asyncio, json
from django.urls import Resolver404, resolve
found = []
for path in sys.argv[2:]:
    try:
        view = resolve(path.split("?", 1)[0]).func
    except Resolver404:
        continue  # the warm-up says so, with the server's answer
    cls = getattr(view, "view_class", None)
    if asyncio.iscoroutinefunction(view) or (cls is not None and getattr(cls, "view_is_async", False)):
        found.append(path)
print(json.dumps(found))
"""


def check_target_imports(target, backend: Backend, params: Params, kind: str = "wsgi"):
    """The target's settings and its application for servers of this kind ("wsgi" or "asgi")
    import in the backend's environment, with the backend substituted in (no database is
    touched), or UsageError naming the key."""
    from harness import UsageError

    application = target.application(kind)
    env = target_env(target, backend, params, "postgres://nobody@127.0.0.1:1/none")
    result = subprocess.run(
        [python_for_target(target, backend), "-c", _IMPORT_CHECK, application, *(st.path for st in target.streams)],
        env=env,
        cwd=target.project,
        capture_output=True,
        text=True,
    )
    why = result.stdout.strip() or (result.stderr.strip().splitlines() or ["no message"])[-1]
    where = "" if backend is OWN else f" with backend {backend.name}"
    if result.returncode == 3:
        raise UsageError(
            f"TARGET={target.file}: target.settings={target.settings!r} does not import{where} ({why}): "
            "fix the module path, or add what it needs to target.requirements"
        )
    if result.returncode != 0:
        raise UsageError(
            f"TARGET={target.file}: target.{kind}={application!r} does not import{where} ({why}): "
            "fix the module path, or add what it needs to target.requirements"
        )
    asynchronous = set(json.loads(result.stdout.strip().splitlines()[-1]))
    stream = next((st for st in target.streams if st.path in asynchronous), None)
    if kind == "wsgi" and stream is not None:
        raise UsageError(
            f"TARGET={target.file}: stream {stream.name!r} ({stream.path}) is an async view, and the server "
            "serves WSGI, where Django runs it through async_to_sync (under gevent its async ORM calls fail "
            "with SynchronousOnlyOperation): run it under an ASGI server, e.g. SERVER=uvicorn"
        )


class ExternalApp(Server):
    """An app something else started (`make bench HOST=...`): nothing is started or stopped;
    /healthz must answer as this project's app. No accounting log reaches the harness."""

    def __init__(self, url: str, params: Params):
        self.url, self.params = url.rstrip("/"), params
        self.health = {}

    def start(self):
        from harness import UsageError

        try:
            self.health = fetch_health(self.url)
        except UsageError as exc:  # it answered before the run: now it is this cell's failure
            raise CellError(str(exc)) from None
        return self

    def stop(self):
        pass


def fetch_health(url: str) -> dict:
    """/healthz of this project's app at `url`, or UsageError naming HOST."""
    from harness import UsageError

    try:
        status, body, _ = get(f"{url.rstrip('/')}/healthz", timeout=5)
        health = json.loads(body) if status == 200 else None
    except (OSError, ValueError) as exc:
        raise UsageError(
            f"HOST={url} is unreachable ({exc}): start the app (e.g. docker compose up) or fix the URL"
        ) from None
    if not isinstance(health, dict) or "backend" not in health:
        raise UsageError(f"HOST={url}/healthz did not answer as this project's app: point HOST at benchapp")
    return health
