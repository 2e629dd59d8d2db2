"""The app under test, as a type: bench runs a cell the same way whatever it is.

- BenchApp: benchapp, the sample app, on the matrix's backends and servers;
- TargetProject: your own Django project (make bench TARGET=), one cell per stream;
- ExternalApp: an app something else started (make bench HOST=), measured as it is.

Each says which cells the matrix means for it, the environments its servers run in, how its
database is seeded, how its app is started (or found) and verified, and what a summary row and
run.json say of it.
"""

import dataclasses
import os

import harness
from harness.results import cellfiles, runinfo
from harness.spec import matrix
from harness.spec import target as targets
from harness.stack import envs, pgbouncer, postgres
from harness.stack import server as server_module
from harness.stack.server import Server, prepare_database

HEALTH_FILE = "healthz.json"  # a cell's server as its health URL described it once started


class Subject:
    """benchapp's behaviour; the other kinds change what differs."""

    starts_server = True  # the harness starts the app (and so can kill its worker, sample its CPU)
    audited = True  # the app writes benchapp's audit rows (lost_writes)
    name = "benchapp"
    # make serve and make ui: the backend without BACKEND=; make serve shows the server's output
    # on the terminal (else in server.log); the accounting keeps its event log in the log folder
    default_backend = "geventpool"
    serves_to_terminal = True
    keeps_event_log = False

    def backends(self, spec) -> dict:
        """The backends it runs on, by name."""
        return spec.backends

    def first_variant(self, spec) -> str:
        """What make serve and make ui stream first: benchapp's first variant, a target's first stream."""
        return next(iter(spec.variants))

    def cells(self, cells, spec, matrix_name):
        """The cells the matrix means for this app, every refusal about them made."""
        return cells

    def environments(self, cells, console) -> dict:
        """Each server environment the cells run in, built now: {its name: its python}."""
        pythons = {}
        for env in dict.fromkeys(c.backend.env for c in cells):
            pythons[env] = envs.python_for(env, console)
        return pythons

    def seed(self, cell, db, seeded, prepare_log):
        """Seed a database new to the lane, or one a cell wants other rows in; what it now holds."""
        if seeded != cell.params.seed_rows:
            harness.phase("seeding")
            prepare_database(cell.backend, cell.params, db.app_url, prepare_log)
        return cell.params.seed_rows

    def lacks_pgbouncer(self, cell) -> bool:
        """The cell needs a PgBouncer the harness would start, and there is none: it is skipped."""
        return pgbouncer.missing_for(cell.backend)

    def start(self, stack, cell, db, cell_dir):
        """The cell's app, started behind PgBouncer if its backend wants one; (server,
        PgBouncer's console URL or "")."""
        app_db = pgbouncer.front(stack, cell.backend, cell.params, db, os.path.join(cell_dir, "pgbouncer.log"))
        args = (cell.backend, cell.params, app_db.app_url, postgres.free_port(), os.path.join(cell_dir, "server.log"))
        return stack.enter_context(self.server(args, cell_dir, cell.server)), app_db.pooler_console

    def server(self, args, accounting_dir, served) -> Server:
        """Its server, not started: `args` are Server's first five (backend, params, database
        URL, port, log path)."""
        return Server(*args, accounting_dir=accounting_dir, server=served)

    def warm_up(self, server):
        """make serve and make ui: anything to check once its server is up."""

    def announce(self, server, cell, spec) -> list[str]:
        """make serve and make ui: where its server answers, what to request."""
        p = cell.params
        return [
            f"app:      {server.url}/  (backend {cell.backend.name}, pool_max {p.pool_max}, server {cell.server.name})",
            f"          {server.url}/stream/hold/?chunks={p.chunks}&chunk_bytes={p.chunk_bytes}"
            f"&delay_ms={p.delay_ms}   variants: {', '.join(spec.variants)}",
            f"          {server.url}/probe/   {server.url}/healthz   {server.url}/metrics",
        ]

    def locust_paths(self) -> list[str]:
        """make ui: Locust's options for its stream and probe paths ([]: benchapp's)."""
        return []

    def verify(self, server, cell, cell_dir) -> dict:
        """The app's endpoints checked and warmed up, what answered recorded (healthz.json); the
        stream and probe paths Locust gets ({}: benchapp's)."""
        server.verify(cell.variant)
        runinfo.write_json(os.path.join(cell_dir, HEALTH_FILE), server.health)
        return {}

    def identity(self, row, cell) -> dict:
        """A summary row's identity columns, as this app has them."""
        return row

    def facts(self) -> dict:
        """What run.json says of the app."""
        return {"app": {"controlled": True}, "target": None}

    def not_controlled(self) -> list[str]:
        return []


class BenchApp(Subject):
    def cells(self, cells, spec, matrix_name):
        if matrix.OWN.env in {c.backend.env for c in cells}:
            raise harness.UsageError(
                f"MATRIX={matrix_name} names backend {matrix.OWN.name!r}, a target's own: "
                "give TARGET=path/to/target.toml, or use a matrix of benchapp's backends"
            )
        return cells


@dataclasses.dataclass
class TargetProject(Subject):
    """Your own project: one cell per stream of the target and backend, scenario and repeat of
    the matrix, on the backend its settings name ("own") or one of matrix.toml's substituted in."""

    target: targets.Target
    audited = False  # a target has no audit table: lost_writes stays empty, not 0
    default_backend = matrix.OWN.name
    serves_to_terminal = False
    keeps_event_log = True

    @property
    def name(self):
        return self.target.name

    def backends(self, spec) -> dict:
        return {matrix.OWN.name: matrix.OWN, **spec.backends}

    def first_variant(self, spec) -> str:
        return self.target.streams[0].name

    def warm_up(self, server):
        server.verify()

    def announce(self, server, cell, spec) -> list[str]:
        t, health = self.target, server.health
        return [
            f"app:      {server.url}/  (target {t.name}: {t.settings}, backend {cell.backend.name}, "
            f"engine {health.get('engine')}, pool limit {health.get('pool_limit')})",
            *(f"          {server.url}{stream.path}   (stream {stream.name})" for stream in t.streams),
            f"          {server.url}{t.probe}   (probe)   {server.url}/__stream_release__/metrics",
        ]

    def locust_paths(self) -> list[str]:
        """The form streams its first stream; the probe is its own."""
        return ["--stream-path", self.target.streams[0].path, "--probe-path", self.target.probe]

    def expand(self, cells):
        """One cell per stream for each of the matrix's (the variant's place holds the stream's name)."""
        out = {}
        for c in cells:
            for stream in self.target.streams:
                out.setdefault(
                    (c.server.name, c.backend.name, stream.name, c.scenario, c.repeat),
                    dataclasses.replace(c, variant=stream.name),
                )
        return list(out.values())

    def cells(self, cells, spec, matrix_name):
        cells = self.expand(cells)
        for backend, kind in {(c.backend.name, c.server.app): (c.backend, c.server.app) for c in cells}.values():
            server_module.check_target_imports(self.target, backend, cells[0].params, kind)
        return cells

    def environments(self, cells, console) -> dict:
        pythons = {}
        for backend in {c.backend.name: c.backend for c in cells}.values():
            python = envs.python_for_target(self.target, backend, console)
            pythons.setdefault(os.path.basename(os.path.dirname(os.path.dirname(python))), python)
        return pythons

    def seed(self, cell, db, seeded, prepare_log):
        """The project's own migrations and setup, once per cluster."""
        if seeded is None:
            harness.phase("seeding")
            server_module.prepare_target(self.target, cell.params, db.app_url, prepare_log)
        return "target"

    def server(self, args, accounting_dir, served):
        return server_module.TargetServer(self.target, *args, accounting_dir=accounting_dir, server=served)

    def verify(self, server, cell, cell_dir) -> dict:
        stream = self.target.stream(cell.variant)
        server.verify(stream)
        runinfo.write_json(os.path.join(cell_dir, HEALTH_FILE), server.health)
        paths = {"stream_path": stream.path, "probe_path": self.target.probe}
        routes = server.routes(stream.path, self.target.probe)  # what the summary, the plots and the judge read
        runinfo.write_json(
            os.path.join(cell_dir, cellfiles.ROUTES_FILE),
            {**dict(zip(("stream", "probe"), routes, strict=True)), **paths},
        )
        return paths

    def identity(self, row, cell) -> dict:
        # its streams' shape is its own, and so is its pool unless a matrix backend is substituted in
        return {
            **row,
            "target": self.target.name,
            "stream_path": self.target.stream(cell.variant).path,
            "stream_design_ms": "",
            "pool_max": row["pool_max"] if cell.backend is not matrix.OWN else "",
        }

    def facts(self) -> dict:
        t = self.target
        return {
            "app": {"controlled": True},
            "target": {
                "file": str(t.file),
                "project": str(t.project),
                "settings": t.settings,
                "wsgi": t.wsgi,
                "streams": {st.name: st.path for st in t.streams},
                "probe": t.probe,
            },
        }


@dataclasses.dataclass
class ExternalApp(Subject):
    """An app something else started, at `host`, with BENCH_DATABASE_URL its database: its cells
    run with the backend and server its /healthz reports, and nothing is started or seeded."""

    host: str
    health: dict = dataclasses.field(default_factory=dict)
    starts_server = False
    name = "external"

    def cells(self, cells, spec, matrix_name):
        if not os.environ.get("BENCH_DATABASE_URL"):
            raise harness.UsageError(
                f"HOST={self.host} needs DATABASE_URL= too: the app's database, which the harness "
                "samples (pg_stat_activity) and reads the audit rows from"
            )
        self.health = server_module.fetch_health(self.host)
        if self.health["backend"] not in spec.backends:
            raise harness.UsageError(
                f"HOST={self.host} reports backend {self.health['backend']!r}, not in matrix.toml: "
                f"set its BENCH_BACKEND to one of {', '.join(spec.backends)}"
            )
        served = self.health.get("server", matrix.DEFAULT_SERVER)  # an app from before there were servers: gevent
        if served not in spec.servers:
            raise harness.UsageError(
                f"HOST={self.host} reports server {served!r}, not in matrix.toml: "
                f"set its BENCH_SERVER to one of {', '.join(spec.servers)}"
            )
        backend, server = spec.backends[self.health["backend"]], spec.servers[served]
        out = {}
        for c in cells:
            out.setdefault((c.variant, c.scenario, c.repeat), dataclasses.replace(c, backend=backend, server=server))
        return list(out.values())

    def seed(self, cell, db, seeded, prepare_log):
        return seeded  # an app of its own is seeded by its owner

    def lacks_pgbouncer(self, cell) -> bool:
        return False

    def start(self, stack, cell, db, cell_dir):
        """The app, checked to be still what it was when the run began."""
        server = stack.enter_context(server_module.ExternalApp(self.host, cell.params))
        now = (server.health.get("backend"), server.health.get("server", matrix.DEFAULT_SERVER))
        if now != (cell.backend.name, cell.server.name):
            raise harness.CellError(
                f"HOST={self.host} now reports backend {now[0]!r} under server {now[1]!r}, not "
                f"{cell.backend.name!r} under {cell.server.name!r} as when the run began"
            )
        return server, ""

    def facts(self) -> dict:
        return {"app": {"controlled": False, "url": self.host, "healthz": self.health}, "target": None}

    def not_controlled(self) -> list[str]:
        return [
            f"the app at {self.host}: not started; its backend, pool limit and settings are what its /healthz "
            "reports, not the matrix's; no server-side accounting log, so the pool peaks, waits and hold "
            "times from it (peak_pool_*, pool_wait_p99_ms, conn_hold_*) are empty; the timeline "
            "samples its /metrics"
        ]


def of(host=None, target=None) -> Subject:
    """The app under test a run's options name: HOST=, TARGET=, or benchapp."""
    if target and host:
        raise harness.UsageError(
            f"TARGET={target} and HOST={host}: a target is started by the harness; give one of them"
        )
    if host:
        return ExternalApp(host)
    if target:
        return TargetProject(targets.load(target))
    return BenchApp()
