"""The long-running commands a person watches: `make serve` (the app, the way a cell starts it)
and `make ui` (the app and Locust's web UI with the pool panel). harness/cli.py parses their
options and calls serve() or ui()."""

import contextlib
import os
import signal
import socket
import sys
import time
from contextlib import ExitStack
from pathlib import Path

from harness import ROOT, CellError, UsageError
from harness.results import runinfo
from harness.runs import subjects
from harness.spec import matrix
from harness.stack import pgbouncer, postgres, procs

PANEL = ROOT / "locustfiles" / "pool_panel.py"


def _check_ports(args):
    bind = getattr(args, "bind", "127.0.0.1")
    if bind == "0.0.0.0":
        raise UsageError("BIND=0.0.0.0 would listen on every interface: give the one address the load machines reach")
    try:
        socket.getaddrinfo(bind, None, socket.AF_INET, flags=socket.AI_NUMERICHOST)
        with socket.socket() as s:
            s.bind((bind, 0))
    except OSError:
        raise UsageError(f"BIND={bind} is not an IPv4 address of this machine: give one `ip -4 addr` lists") from None
    for name, port in (("PORT", args.port), ("WEB_PORT", getattr(args, "web_port", None))):
        if port is not None and (not 1 <= port <= 65535 or not postgres.port_is_free(port, bind)):
            other = port + 1 if 1 <= port < 65535 else 8001
            raise UsageError(f"{name}={port} is in use or invalid: choose another, e.g. {name}={other}")


def _log_dir(args, command):
    """serve keeps its logs in one place; each ui session gets its own (the panel's CSV is a result)."""
    log_dir = ROOT / "results" / command
    if command == "ui":
        log_dir = Path(runinfo.new_run_dir(getattr(args, "log_dir", None), results=log_dir)[0])
    elif getattr(args, "log_dir", None):
        log_dir = Path(args.log_dir).resolve()
    os.makedirs(log_dir, exist_ok=True)
    return log_dir


@contextlib.contextmanager
def _app(args, command):
    """PostgreSQL (throwaway, or BENCH_DATABASE_URL), PgBouncer if the backend wants it, and the
    app under test (benchapp, or TARGET='s project) on args.port, for `serve` and `ui`, started
    as a cell starts it; yields (subject, params, db, server, stack, log_dir)."""
    spec = matrix.load(args.matrix_file)
    subject = subjects.of(None, args.target)
    backend, served = _backend_and_server(args, subject.backends(spec), subject.default_backend, spec)
    params, external = _params(args, spec, served, command)
    cell = matrix.Cell(backend, subject.first_variant(spec), "serve", 1, params, served, spec.path)
    subject.cells([cell], spec, "serve")  # the refusals a run makes (a target's imports)
    log_dir = _log_dir(args, command)
    with ExitStack() as stack:
        bind = getattr(args, "bind", "127.0.0.1")
        db = external or _cluster(stack, params, log_dir, bind)
        subject.seed(cell, db, None, log_dir / "prepare.log")
        app_db = pgbouncer.front(stack, backend, params, db, log_dir / "pgbouncer.log")
        log = None if command == "serve" and subject.serves_to_terminal else log_dir / "server.log"
        events = str(log_dir) if subject.keeps_event_log else ""
        server = subject.server((backend, params, app_db.app_url, args.port, log), events, served)
        server.listen_on(bind)
        stack.enter_context(server)
        subject.warm_up(server)
        for line in subject.announce(server, cell, spec):
            print(line)
        if subject.keeps_event_log:
            print(f"log:      {log}  (the detector's warnings)")
        via = f"  (the app connects through PgBouncer: {app_db.app_url})" if app_db is not db else ""
        print(f"database: {postgres.redact(db.app_url)}  (superuser: {postgres.redact(db.admin_url)}){via}")
        yield subject, params, db, server, stack, log_dir


def _params(args, spec, served, command):
    """The scenario's parameters (SCENARIO=, SET=), checked against the server, the ports and an
    external database's max_connections; (params, the external database or None)."""
    scenario = args.scenario or next(iter(spec.scenarios))
    if scenario not in spec.scenarios:
        raise UsageError(f"SCENARIO={scenario} is unknown: use one of {', '.join(spec.scenarios)}")
    params = spec.params(scenario, matrix.parse_overrides(args.overrides))
    matrix.check_server_params(params, served, f"SERVER={served.name}")
    _check_ports(args)
    external = postgres.preflight()
    if external is not None:
        matrix.check_pool_fits(params, external.max_connections, command, "BENCH_DATABASE_URL's max_connections")
    return params, external


def _cluster(stack, params, log_dir, bind):
    """A throwaway PostgreSQL for `serve` and `ui`, listening where the app does."""
    return stack.enter_context(
        postgres.Cluster(
            params.db_max_connections, log_dir / "postgres.log", bind=None if bind == "127.0.0.1" else bind
        )
    )


def _backend_and_server(args, backends, default, spec):
    """BACKEND= (of `backends`, `default` when not given) and SERVER=, checked: known, a pair
    that works, PgBouncer installed when the backend needs it."""
    name = args.backend or default
    if name not in backends:
        raise UsageError(f"BACKEND={name} is unknown: use one of {', '.join(backends)}")
    server = args.server or matrix.DEFAULT_SERVER
    if server not in spec.servers:
        raise UsageError(f"SERVER={server} is unknown: use one of {', '.join(spec.servers)}")
    backend, served = backends[name], spec.servers[server]
    matrix.check_pair(backend, served, f"BACKEND={backend.name} SERVER={served.name}")
    if pgbouncer.missing_for(backend):
        raise UsageError(f"BACKEND={backend.name}: {pgbouncer.INSTALL_HINT}")
    return backend, served


def serve(args):
    with _app(args, "serve") as (_, _, _, server, _, _):
        print("Ctrl-C stops both.", flush=True)
        while server.proc.poll() is None:
            time.sleep(0.5)
        raise CellError(f"{server.server.runner} exited with {server.proc.returncode}")


def ui(args):
    """The app and Locust's web UI with this project's users and the database pool panel."""
    from harness.measure.load import LOCUSTFILES, load_options

    with _app(args, "ui") as (subject, params, db, server, stack, log_dir):
        paths = subject.locust_paths()
        command = [
            sys.executable,
            "-m",
            "locust",
            "-f",
            ",".join(str(f) for f in [*LOCUSTFILES, PANEL]),
            "--host",
            server.url,
            "--web-host",
            "127.0.0.1",
            "--web-port",
            args.web_port,
            *load_options(params),
            *(["--matrix-file", args.matrix_file] if args.matrix_file else []),
            *paths,
            "--panel-app-user",
            db.app_user,
            "--panel-app-db",
            db.app_db,
            "--panel-csv",
            str(log_dir / "pool_panel.csv"),
            "--panel-metrics-url",
            server.metrics_base,
        ]
        # the superuser URL (a password, perhaps) through the environment, not the command line
        env = {**os.environ, "BENCH_PANEL_ADMIN_URL": db.admin_url}
        locust = procs.spawn(command, log_dir / "locust.log", cwd=ROOT, env=env)
        stack.callback(procs.stop, locust, signal.SIGTERM, 10)
        url = f"http://127.0.0.1:{args.web_port}"
        procs.wait_ready(locust, lambda: _answers(url), "Locust's web UI", log_dir / "locust.log", timeout=30)
        print(f"Locust:   {url}  (open it; the pool panel is at the bottom right)")
        print(f"logs:     {os.path.relpath(log_dir)}/   Ctrl-C stops everything.", flush=True)
        while locust.poll() is None and server.proc.poll() is None:
            time.sleep(0.5)
        which = "Locust" if locust.poll() is not None else "gunicorn"
        raise CellError(
            f"{which} exited with {(locust if which == 'Locust' else server.proc).returncode}: "
            f"see {os.path.relpath(log_dir)}/"
        )


def _answers(url):
    """True once `url` answers 200, None until then (for procs.wait_ready)."""
    from harness.stack.server import get

    try:
        return get(url, timeout=2)[0] == 200 or None
    except OSError:
        return None
