"""matrix.toml: backends, variants, scenarios and named matrices, read and checked here."""

import itertools
import json
import math
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

from harness import ROOT, UsageError

MATRIX_FILE = ROOT / "matrix.toml"
# What a scenario's `fault` may be: harness/measure/faults.py injects them (matrix.toml says what each does).
FAULTS = ("none", "pg-restart", "worker-kill", "client-abort")
# The server's garbage collector: Python's defaults, or tuned (benchapp/gunicorn.conf.py).
SERVER_GC = ("default", "tuned")


def _limits(low, high, unit):
    """A parameter's bounds and unit, checked for every cell before anything starts."""
    return field(metadata={"limits": (low, high, unit)})


@dataclass(frozen=True)
class Params:
    """Everything a cell runs with; defaults live in matrix.toml's [defaults], not here. The
    stream's bounds are the app's own (benchapp/views.py STREAM_PARAMS; a test keeps them equal)."""

    pool_max: int = _limits(1, 10_000, "connections")
    db_max_connections: int = _limits(5, 100_000, "connections")
    streams: int = _limits(1, 1_000_000, "clients")
    spawn_s: float = _limits(0, 86_400, "seconds")
    duration_s: int = _limits(1, 86_400, "seconds")
    chunks: int = _limits(1, 1_000_000, "chunks")
    chunk_bytes: int = _limits(1, 16 * 1024 * 1024, "bytes")
    delay_ms: int = _limits(0, 3_600_000, "milliseconds")
    read_rate_bps: int = _limits(0, 10**12, "bytes per second (0: unlimited)")
    recv_buffer_bytes: int = _limits(0, 64 * 1024 * 1024, "bytes (0: the kernel's own)")
    probe_rate: float = _limits(0.1, 10_000, "probes per second")
    probe_timeout_s: float = _limits(0.1, 3_600, "seconds")
    stream_timeout_s: float = _limits(1, 86_400, "seconds")
    pool_timeout_s: float = _limits(0.1, 3_600, "seconds")
    seed_rows: int = _limits(1, 100_000_000, "rows")
    workers: int = _limits(1, 256, "processes")
    threads: int = _limits(1, 10_000, "threads per worker (servers gthread and granian)")
    worker_connections: int = _limits(1, 1_000_000, "clients per worker")
    locust_workers: int = _limits(1, 256, "Locust worker processes")
    atomic_requests: bool = field(metadata={"limits": None})  # Django's ATOMIC_REQUESTS
    release_all_streams: bool = field(metadata={"limits": None})  # STREAM_RELEASE_ALL_STREAMS
    settle_s: float = _limits(0, 600, "seconds")
    fault: str = field(metadata={"limits": None, "choices": FAULTS})
    fault_at_s: float = _limits(0, 86_400, "seconds")
    instrument: bool = field(metadata={"limits": None})  # the app's connection accounting and the sampler
    server_gc: str = field(metadata={"limits": None, "choices": SERVER_GC})
    capacity_start: int = _limits(1, 1_000_000, "clients")
    capacity_growth: float = _limits(1.01, 100, "times the previous step")
    capacity_max: int = _limits(1, 1_000_000, "clients")
    capacity_step_s: float = _limits(1, 86_400, "seconds")
    slo_probe_p99_ms: float = _limits(0.1, 3_600_000, "milliseconds")
    slo_failures: int = _limits(0, 1_000_000_000, "failed requests")

    @property
    def grace_s(self) -> int:
        """Seconds Locust lets the load run on after the test begins stopping (its
        --stop-timeout), so that the last probes are answered or time out under load."""
        return math.ceil(self.probe_timeout_s) + 1

    @property
    def client_connections(self) -> int:
        """Connections Locust may open at once: one per stream, and one per probe that can be
        in flight (locustfiles/probe.py's probes_in_flight)."""
        return self.streams + math.ceil(self.probe_rate * (self.probe_timeout_s + 1)) + 5

    @property
    def stream_s(self) -> float:
        """How long one stream lasts by design: the server's delays, or the client's reading."""
        sending = (self.chunks - 1) * self.delay_ms / 1000
        reading = self.chunks * self.chunk_bytes / self.read_rate_bps if self.read_rate_bps else 0
        return max(sending, reading)


# {parameter: (lowest, highest, unit)} of the numeric parameters, from the fields above.
LIMITS = {f.name: f.metadata["limits"] for f in fields(Params) if f.metadata["limits"]}
Params.LIMITS = LIMITS
Params.CHOICES = {f.name: f.metadata["choices"] for f in fields(Params) if "choices" in f.metadata}


@dataclass(frozen=True)
class Backend:
    name: str
    description: str
    engine: str
    conn_max_age: int
    options: dict
    driver: str
    env: str
    via: str = ""  # "pgbouncer": the app connects through a PgBouncer the harness starts
    server_side_cursors: bool = True
    servers: tuple = ()  # the servers it works under; empty: every one
    pooled: bool = False  # a pool keeps its connections (matrix.toml's `pooled`)
    gives_back: str = "at-close"  # when the connection goes back (matrix.toml's `gives_back`): GIVES_BACK
    settings: dict = field(default_factory=dict)  # more keys of its DATABASES entry (matrix.toml's `settings`)

    @property
    def per_query(self) -> bool:
        """The backend gives its connection back after every query outside an atomic block."""
        return self.gives_back == "per-query"

    @property
    def persistent(self) -> bool:
        """No pool, but connections kept between requests (CONN_MAX_AGE > 0)."""
        return not self.pooled and self.conn_max_age > 0

    def django_options(self, params: Params) -> dict:
        """OPTIONS with every "{parameter}" string replaced by the cell's value."""
        return _filled(self.options, params)

    def django_settings(self, params: Params) -> dict:
        """The other keys of its DATABASES entry (POOL_OPTIONS, CONN_HEALTH_CHECKS), filled in
        the same way."""
        return _filled(self.settings, params)


def _filled(value, params: Params):
    """`value` with every "{parameter}" string in it replaced by the cell's value."""
    if isinstance(value, dict):
        return {k: _filled(v, params) for k, v in value.items()}
    if isinstance(value, str) and value.startswith("{") and value.endswith("}"):
        return getattr(params, value[1:-1])
    return value


# The keys of a DATABASES entry the harness sets itself (the database, the backend's engine,
# OPTIONS and CONN_MAX_AGE, the parameters): a backend's `settings` may name any other.
HARNESS_DATABASE_KEYS = (
    "ENGINE", "NAME", "USER", "PASSWORD", "HOST", "PORT", "OPTIONS", "CONN_MAX_AGE", "ATOMIC_REQUESTS",
    "DISABLE_SERVER_SIDE_CURSORS",
)  # fmt: skip


@dataclass(frozen=True)
class Server:
    """How the app is served (matrix.toml's [servers]): the `runner`, gunicorn with `worker`,
    daphne or granian, serving the app's WSGI or ASGI application (`app`), in the backend's
    environment."""

    name: str
    description: str
    worker: str  # gunicorn's worker class; empty for a runner that has no workers
    app: str  # "wsgi" or "asgi"
    runner: str = "gunicorn"

    @property
    def one_process(self) -> bool:
        """One process serves every request: no arbiter, no workers to kill or to add."""
        return self.runner == "daphne"

    @property
    def gunicorn(self) -> bool:
        """gunicorn runs it: benchapp/gunicorn.conf.py's hooks (the tuned collector) and its
        arbiter (a killed worker comes back) are there."""
        return self.runner == "gunicorn"

    @property
    def greenlets(self) -> bool:
        """Requests are greenlets of one thread (psycopg2 must then yield to gevent)."""
        return self.worker == "gevent"


APPS = ("wsgi", "asgi")
# when a backend gives its connection back: when Django closes it (the end of the request, or a
# release), or after every query outside an atomic block too (django-pg-real-pool)
GIVES_BACK = ("at-close", "per-query")
RUNNERS = ("gunicorn", "daphne", "granian")


# A target's (make bench TARGET=) own backend: the ENGINE, OPTIONS and CONN_MAX_AGE its settings
# name, in its own environment. A matrix names it as "own"; any other backend a target's matrix
# names is substituted into the target's settings (harness/spec/target_app/bench_target_settings.py).
OWN = Backend(
    name="own",
    description="the backend the target's own settings name",
    engine="",
    conn_max_age=0,
    options={},
    driver="",
    env="target",
)


DEFAULT_SERVER = "gevent"  # a matrix that names no servers runs under this one


def default_server() -> "Server":
    """matrix.toml's gevent: what a server started without one (make peer, the tests) runs under."""
    return load().servers[DEFAULT_SERVER]


@dataclass(frozen=True)
class Cell:
    backend: Backend
    variant: str
    scenario: str
    repeat: int
    params: Params
    server: Server
    matrix_file: Path = MATRIX_FILE  # where it was declared: the load generator reads its variants there

    @property
    def name(self) -> str:
        """<backend>/<variant>/<scenario>, and @<server> under any server but gevent (so the
        names of runs from before there were servers still match)."""
        return f"{self.backend.name}/{self.variant}/{self._scenario_at}"

    @property
    def _scenario_at(self) -> str:
        return self.scenario if self.server.name == DEFAULT_SERVER else f"{self.scenario}@{self.server.name}"

    @property
    def path(self) -> Path:
        """Where the cell's files go inside the run directory."""
        return Path(self.backend.name, self.variant, self._scenario_at, f"r{self.repeat}")


@dataclass
class Matrix:
    path: Path
    defaults: dict
    backends: dict
    variants: dict
    scenarios: dict
    matrices: dict
    servers: dict = field(default_factory=dict)
    raw: dict = field(repr=False, default_factory=dict)

    def cells(
        self, matrix: str, overrides: dict | None = None, repeat: int = 1, servers: list[str] | None = None
    ) -> list[Cell]:
        """`servers` (SERVER=): run every part of the matrix under these servers instead of those
        it names (gevent when it names none)."""
        if matrix not in self.matrices:
            raise UsageError(f"MATRIX={matrix} is unknown: use one of {', '.join(self.matrices)}")
        spec = parts(self.matrices[matrix])
        for name in servers or []:
            if name not in self.servers:
                raise UsageError(f"SERVER={name} is unknown: use one of {', '.join(self.servers)}")
        where = f"MATRIX={matrix}" + (f" SERVER={','.join(servers)}" if servers else "")
        params = {s: self.params(s, overrides) for part in spec for s in part["scenarios"]}
        backends = {**self.backends, OWN.name: OWN}
        once = [
            (self.servers[server], backends[b], v, s)
            for part in spec
            for server, b, v, s in itertools.product(
                servers or part.get("servers", [DEFAULT_SERVER]), part["backends"], part["variants"], part["scenarios"]
            )
        ]
        # SERVER= can make two parts' cells the same: each once
        once = list({(srv.name, b.name, v, sc): (srv, b, v, sc) for srv, b, v, sc in once}.values())
        # Every other repeat runs the cells in reverse order, so that no cell always runs first, or
        # always after the same neighbour: a comparison of two cells (overhead vs overhead-off)
        # then carries no bias of its position, such as the state the cell before left behind.
        cells = [
            Cell(backend, v, s, r, params[s], server, self.path)
            for r in range(1, repeat + 1)
            for server, backend, v, s in (once if r % 2 else reversed(once))
        ]
        for cell in cells:
            check_pair(cell.backend, cell.server, where)
            check_variant(self, cell.variant, cell.server, where)
            check_server_params(cell.params, cell.server, f"{where} scenario {cell.scenario}")
        return cells

    def params(self, scenario: str, overrides: dict | None = None) -> Params:
        values = dict(self.defaults)
        values.update(self.scenario_values(scenario))
        values.update(overrides or {})
        return check_params(values, f"scenario {scenario}")

    def scenario_values(self, scenario: str, seen=()) -> dict:
        """A scenario's own parameters, on top of those of the scenario it names as `base`."""
        table = self.scenarios[scenario]
        base = table.get("base")
        if base is not None and (base not in self.scenarios or base in seen or base == scenario):
            raise UsageError(
                f"{self.path.name}: [scenarios.{scenario}] has base = {base!r}, which is "
                + ("part of a loop" if base in self.scenarios else "not a declared scenario")
            )
        values = {} if base is None else self.scenario_values(base, (*seen, scenario))
        values.update({k: v for k, v in table.items() if k not in ("description", "base")})
        return values


def check_pair(backend: Backend, server: Server, where: str):
    """A backend runs only under the servers it declares (django-db-geventpool: gevent's)."""
    if backend.servers and server.name not in backend.servers:
        raise UsageError(
            f"{where}: backend {backend.name} does not work under server {server.name} "
            f"(only {', '.join(backend.servers)}): pick another backend or server"
        )


def check_server_params(params: Params, server: Server, where: str):
    """A server of one process (daphne) has no workers to add; only gunicorn's have the hooks
    and the arbiter that the tuned collector and a worker kill need."""
    if server.one_process and params.workers != 1:
        raise UsageError(
            f"{where}: workers={params.workers} under server {server.name}, which runs one process: "
            "set workers=1 or pick a gunicorn server"
        )
    if not server.gunicorn and params.server_gc != "default":
        raise UsageError(
            f"{where}: server_gc={params.server_gc} under server {server.name}: the tuned collector is set "
            "in gunicorn's post_worker_init; set server_gc=default or pick a gunicorn server"
        )
    if not server.gunicorn and params.fault == "worker-kill":
        raise UsageError(
            f"{where}: fault worker-kill under server {server.name}, which has no gunicorn worker to kill: "
            "pick a gunicorn server"
        )


def check_variant(spec, variant: str, server: Server, where: str):
    """A variant with `app` (an async body: "asgi") runs only under servers of that kind."""
    app = spec.variants[variant].get("app")
    if app and app != server.app:
        fitting = ", ".join(n for n, s in spec.servers.items() if s.app == app)
        raise UsageError(
            f"{where}: variant {variant} runs only under {app.upper()} servers, not {server.name}: "
            f"pick a server of {fitting}"
        )


def parts(spec: dict) -> list[dict]:
    """A named matrix is one product of backends x variants x scenarios, or a list of them
    under `parts`."""
    return spec["parts"] if "parts" in spec else [spec]


def _expand_all(spec: dict, everything: dict) -> dict:
    """A matrix with "all" in place of a list of backends, variants, scenarios or servers: every
    one declared, in the file's order."""

    def expand(part):
        return {k: list(everything[k]) if v == "all" and k in everything else v for k, v in part.items()}

    return {**expand(spec), "parts": [expand(p) for p in spec["parts"]]} if "parts" in spec else expand(spec)


def _require(table, key, where, kind):
    if key not in table:
        raise UsageError(f"{MATRIX_FILE.name}: {where} needs a {key!r} {kind}")
    return table[key]


def _check_placeholders(options, where, key="options"):
    names = {f.name for f in fields(Params)}
    for value in options.values():
        if isinstance(value, dict):
            _check_placeholders(value, where, key)
        elif isinstance(value, str) and value.startswith("{") and value[1:-1] not in names:
            raise UsageError(f"{MATRIX_FILE.name}: {where} {key} use {value}, which is not a parameter")


def check_pool_fits(params: Params, max_connections: int, where: str, limit="db_max_connections"):
    """The pools of all workers must leave PostgreSQL's 3 superuser slots free (the sampler's).
    `limit` names where max_connections comes from: the parameter, or an external server."""
    if params.pool_max * params.workers > max_connections - 3:
        fix = "lower pool_max or raise db_max_connections" if limit == "db_max_connections" else "lower pool_max"
        raise UsageError(
            f"pool_max={params.pool_max} x workers={params.workers} in {where} exceeds "
            f"{limit}={max_connections} minus 3 superuser slots: {fix}"
        )


def check_params(values: dict, where: str) -> Params:
    names = {f.name: f.type for f in fields(Params)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise UsageError(f"unknown parameter {unknown[0]!r} in {where}: known are {', '.join(names)}")
    missing = sorted(set(names) - set(values))
    if missing:
        raise UsageError(f"{MATRIX_FILE.name}: [defaults] lacks {missing[0]!r}")
    out = {}
    for name, kind in names.items():
        value = values[name]
        if kind in (bool, "bool"):
            if not isinstance(value, bool):
                raise UsageError(f"{name}={value!r} in {where} must be true or false")
            out[name] = value
            continue
        if kind in (str, "str"):
            choices = Params.CHOICES[name]
            if value not in choices:
                raise UsageError(f"{name}={value!r} in {where} is unknown: use one of {', '.join(choices)}")
            out[name] = value
            continue
        low, high, unit = LIMITS[name]
        number_type = int if kind in (int, "int") else float
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
            or (number_type is int and value != int(value))
        ):
            raise UsageError(
                f"{name}={value!r} in {where} must be a whole number of {unit}"
                if number_type is int
                else f"{name}={value!r} in {where} must be a number of {unit}"
            )
        if value < low:
            raise UsageError(f"{name}={value} in {where} is too small: use at least {low} ({unit})")
        if value > high:
            raise UsageError(f"{name}={value} in {where} is too large: use at most {high} ({unit})")
        out[name] = number_type(value)
    params = Params(**out)
    check_pool_fits(params, params.db_max_connections, where)
    if params.fault != "none" and not 0 < params.fault_at_s < params.duration_s:
        raise UsageError(
            f"fault_at_s={params.fault_at_s:g} in {where} is not inside duration_s={params.duration_s}: "
            f"inject the {params.fault} after the start and before the end, or run longer"
        )
    check_connections(params, where)
    return params


def check_connections(params: Params, where: str, streams="streams"):
    """The server must accept every client connection Locust may open (`streams`: the
    parameter that sets the streams, for the message)."""
    if params.client_connections > params.worker_connections * params.workers:
        raise UsageError(
            f"{streams}={params.streams} in {where} and up to "
            f"{params.client_connections - params.streams} probes in flight are more than the server "
            f"accepts (worker_connections={params.worker_connections} x workers={params.workers}): "
            f"raise worker_connections or lower {streams}"
        )


def parse_overrides(items: list[str]) -> dict:
    """`--set key=value` pairs; values are numbers, true/false, or a name (fault=pg-restart)."""
    out = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise UsageError(f"--set {item!r} must look like key=value, e.g. --set duration_s=20")
        try:
            out[key.strip()] = json.loads(raw)
        except json.JSONDecodeError:
            if key.strip() in Params.CHOICES:
                out[key.strip()] = raw
                continue
            raise UsageError(f"--set {item}: {raw!r} is not a number, true or false") from None
    return out


def load(path: Path | None = None) -> Matrix:
    """matrix.toml, or the file MATRIX_FILE= names (--matrix-file), checked: every table, and
    every name a matrix gives, declared."""
    given, path = path is not None, Path(path or MATRIX_FILE)
    label = f"MATRIX_FILE={path}" if given else path.name
    raw = _read(path, label, given)
    servers = _servers(raw["servers"], label)
    backends = _backends(raw["backends"], servers, label)
    everything = {
        "backends": list(backends),
        "variants": list(raw["variants"]),
        "scenarios": list(raw["scenarios"]),
        "servers": list(servers),
    }
    matrix = Matrix(
        path=Path(path),
        defaults=raw["defaults"],
        backends=backends,
        variants=raw["variants"],
        scenarios=raw["scenarios"],
        matrices={name: _expand_all(spec, everything) for name, spec in raw["matrices"].items()},
        servers=servers,
        raw=raw,
    )
    for name in matrix.scenarios:
        matrix.params(name)
    _check_matrices(matrix, label)
    return matrix


def _read(path: Path, label: str, given: bool) -> dict:
    """The file's tables, each there and not empty."""
    try:
        raw = tomllib.loads(path.read_text())
    except (FileNotFoundError, IsADirectoryError):
        raise UsageError(
            f"{label} not found: "
            + ("give the path of a matrix file like matrix.toml" if given else "run from a checkout of this project")
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"{label} is not valid TOML ({exc}): fix that line") from None
    for section in ("defaults", "backends", "variants", "scenarios", "matrices", "servers"):
        if not isinstance(raw.get(section), dict) or not raw[section]:
            raise UsageError(f"{label} needs a non-empty [{section}] table")
    return raw


def _servers(tables: dict, label: str) -> dict[str, Server]:
    servers = {name: _server(name, table, label) for name, table in tables.items()}
    if DEFAULT_SERVER not in servers:
        raise UsageError(f"{label} needs [servers.{DEFAULT_SERVER}]: a matrix that names no servers runs under it")
    return servers


def _server(name: str, table: dict, label: str) -> Server:
    where = f"[servers.{name}]"
    runner = table.get("runner", "gunicorn")
    if runner not in RUNNERS:
        raise UsageError(f"{label}: {where} runner = {runner!r}: use one of {', '.join(RUNNERS)}")
    if runner != "gunicorn" and "worker" in table:
        raise UsageError(f"{label}: {where} names a worker, but runner {runner} has none: remove worker")
    server = Server(
        name=name,
        description=table.get("description", ""),
        runner=runner,
        worker=_require(table, "worker", where, "gunicorn worker class") if runner == "gunicorn" else "",
        app=_require(table, "app", where, "application kind (wsgi or asgi)"),
    )
    if server.app not in APPS:
        raise UsageError(f"{label}: {where} app = {server.app!r}: use one of {', '.join(APPS)}")
    if runner == "daphne" and server.app != "asgi":
        raise UsageError(f'{label}: {where} runner daphne serves ASGI only: set app = "asgi"')
    return server


def _backends(tables: dict, servers: dict, label: str) -> dict[str, Backend]:
    if OWN.name in tables:
        raise UsageError(f"{label}: [backends.{OWN.name}] is reserved for a target's own backend: rename it")
    return {name: _backend(name, table, servers, label) for name, table in tables.items()}


def _backend(name: str, table: dict, servers: dict, label: str) -> Backend:
    where = f"[backends.{name}]"
    backend = Backend(
        name=name,
        description=table.get("description", ""),
        engine=_require(table, "engine", where, "Django ENGINE"),
        conn_max_age=int(table.get("conn_max_age", 0)),
        options=dict(table.get("options", {})),
        driver=_require(table, "driver", where, "driver name"),
        env=_require(table, "env", where, "environment name"),
        via=table.get("via", ""),
        server_side_cursors=table.get("server_side_cursors", True),
        servers=tuple(table.get("servers", ())),
        pooled=bool(table.get("pooled", False)),
        gives_back=table.get("gives_back", Backend.gives_back),
        settings=dict(table.get("settings", {})),
    )
    if backend.gives_back not in GIVES_BACK:
        raise UsageError(f"{label}: {where} gives_back = {backend.gives_back!r}: use one of {', '.join(GIVES_BACK)}")
    if backend.per_query and not backend.pooled:
        raise UsageError(f'{label}: {where} gives_back = "per-query" needs a pool: set pooled = true')
    _check_placeholders(backend.options, where)
    _check_placeholders(backend.settings, where, "settings")
    taken = [key for key in backend.settings if key in HARNESS_DATABASE_KEYS or key != key.upper()]
    if taken:
        raise UsageError(
            f"{label}: {where} settings names {taken[0]!r}: the harness sets it (or it is not a DATABASES key); "
            "use engine, options and conn_max_age, and upper-case keys such as POOL_OPTIONS"
        )
    unknown = [s for s in backend.servers if s not in servers]
    if unknown:
        raise UsageError(
            f"{label}: {where} servers names {unknown[0]!r}, which is not declared: use one of {', '.join(servers)}"
        )
    return backend


def _check_matrices(matrix: Matrix, label: str):
    """Each named matrix names only what is declared."""
    declared = {
        "backends": {**matrix.backends, OWN.name: OWN},
        "variants": matrix.variants,
        "scenarios": matrix.scenarios,
    }
    for name, spec in matrix.matrices.items():
        if not isinstance(spec.get("side_by_side", False), bool):
            raise UsageError(
                f"{label}: [matrices.{name}] side_by_side = {spec['side_by_side']!r}: use true (the cells of "
                "each repeat at once) or false"
            )
        for part, (key, known) in itertools.product(parts(spec), declared.items()):
            unknown = [item for item in _require(part, key, f"[matrices.{name}]", "list") if item not in known]
            if unknown:
                raise UsageError(
                    f"{label}: [matrices.{name}] names {key[:-1]} {unknown[0]!r}, which "
                    f"is not declared: use one of {', '.join(known)}"
                )
        for part in parts(spec):
            unknown = [item for item in part.get("servers", []) if item not in matrix.servers]
            if unknown:
                raise UsageError(
                    f"{label}: [matrices.{name}] names server {unknown[0]!r}, which is not "
                    f"declared: use one of {', '.join(matrix.servers)}"
                )
