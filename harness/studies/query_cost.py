"""`python -m harness query-cost` (make query-cost): what a view that does not stream pays for
each way of keeping its connection short, on real gunicorn servers, a real PostgreSQL and
Locust.

A switch that releases streams should cost ordinary views nothing; a backend that gives the
connection back after every query (django-pg-real-pool) pays a pool checkout per query, and
wins when a request waits outside the database while holding a connection. The setups (SETUPS)
run side by side, each a server of its own on the same database; the shapes (SHAPES) are
benchapp's /queries/ view. Each round measures every shape under every setup, the setups in a
random order each time, with a closed loop of `users` Locust users for `seconds` seconds:
requests per second, and the median and 99th percentile of the response time. The rounds pair
the setups: each setup's difference from the baseline in the same round is tested with
Wilcoxon's signed-rank test, its size estimated by Hodges-Lehmann's estimator (harness/results/paired.py).

The run directory gets query_cost.csv (one row per round, shape and setup),
query_cost_summary.csv (per shape and setup), each server's log and run.json;
`make table RUN=<it>` draws the page.
"""

import csv
import os
import random
import signal
import statistics
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass, field, replace

from harness import ROOT, CellError, UsageError
from harness.results import paired, runinfo
from harness.runs import capacity
from harness.spec import matrix
from harness.stack import envs, postgres, procs
from harness.stack.envs import python_for
from harness.stack.server import Server, prepare_database


@dataclass(frozen=True)
class Setup:
    """One way of running the same project: a backend of matrix.toml, how much of
    django-stream-release it installs (benchapp's BENCH_STREAM_RELEASE) and the switch."""

    name: str
    backend: str
    installs: str  # "none", "middleware" or "all"
    switch: bool
    description: str


@dataclass(frozen=True)
class Shape:
    name: str
    path: str
    description: str


SETUPS = (
    Setup("no-package", "native-pool", "none", False, "Django's native pool; django-stream-release not installed"),
    # an A/A control: the baseline again, in a server of its own; what it differs by is the method's noise
    Setup("no-package-again", "native-pool", "none", False, "the same as no-package, another server: the noise"),
    Setup(
        "switch",
        "native-pool",
        "middleware",
        True,
        "the same pool, django-stream-release's middleware with STREAM_RELEASE_ALL_STREAMS = True",
    ),
    Setup("peer", "pg-real-pool", "none", False, "django-pg-real-pool on the same pool, no package"),
)
BASELINE = "no-package"
SHAPES = (
    Shape("ten-queries", "/queries/?n=10", "ten indexed lookups, nothing else"),
    Shape(
        "ten-queries-and-a-call",
        "/queries/?n=10&wait_ms=20",
        "ten indexed lookups and a 20 ms wait halfway: a call outside the database",
    ),
)
LOCUSTFILE = ROOT / "locustfiles" / "queries.py"
WARMUP_S = 3
# order: the setup's place in its round and view (the order is random); rps: answered requests
# (not failed) per second
COLUMNS = ["round", "shape", "setup", "order", "requests", "failures", "rps", "p50_ms", "p99_ms"]
SUMMARY_COLUMNS = [
    "shape",
    "setup",
    "backend",
    "installs",
    "switch",
    "rounds",
    "requests",
    "failures",
    "rps_p50",
    "p50_ms_p50",
    "p99_ms_p50",
    "rps_change_pct",
    "rps_change_low_pct",
    "rps_change_high_pct",
    "rps_change_confidence",
    "rps_change_p",
    "p99_change_ms",
    "p99_change_p",
]
# what the run.json records of the servers' own environment
SERVER_PACKAGES = ("Django", "psycopg", "psycopg-pool", "django-pg-real-pool", "django-stream-release", "gunicorn")
# below 6 rounds, Wilcoxon's exact two-sided test cannot reach p < 0.05 however large the change
LIMITS = {"USERS": (1, 1000), "SECONDS": (2, 600), "ROUNDS": (6, 100)}


@dataclass(frozen=True)
class Request:
    """What make query-cost was asked: `users` closed-loop Locust users, `seconds` per
    measurement, `rounds` of every view and setup, under `server`, written to `out`; the matrix
    file, and SET= `overrides` over the slow-server scenario's parameters (pool_max, say)."""

    users: int = 16
    seconds: int = 10
    rounds: int = 8
    server: str = "gevent"
    out: str | None = None
    matrix_file: str | None = None
    overrides: dict = field(default_factory=dict)

    @property
    def measurements(self) -> int:
        return self.rounds * len(SHAPES) * len(SETUPS)


def check(request: Request, spec):
    missing = sorted({s.backend for s in SETUPS} - set(spec.backends))
    if missing:
        raise UsageError(f"the matrix file declares no backend {', '.join(missing)}: query-cost's setups run on it")
    for name, value in (("USERS", request.users), ("SECONDS", request.seconds), ("ROUNDS", request.rounds)):
        low, high = LIMITS[name]
        if not low <= value <= high:
            raise UsageError(f"{name}={value} is out of range: use {low} to {high}")
    server = request.server
    if server not in spec.servers:
        raise UsageError(f"SERVER={server} is unknown: use one of {', '.join(spec.servers)}")
    for setup in SETUPS:
        backend = spec.backends[setup.backend]
        if backend.servers and server not in backend.servers:
            raise UsageError(f"SERVER={server}: backend {setup.backend} runs under {', '.join(backend.servers)} only")


def run(request: Request = Request(), console=None):
    """Every view under every setup, `request.rounds` times in a random order each round; the
    run directory."""
    from rich.console import Console

    console = console or Console(stderr=True)
    spec = matrix.load(request.matrix_file)
    check(request, spec)
    p = spec.params("slow-server", {**request.overrides, "instrument": False})
    matrix.check_server_params(p, spec.servers[request.server], f"SERVER={request.server}")
    pythons = {s.name: python_for(spec.backends[s.backend].env, console) for s in SETUPS}  # built before the run
    external = postgres.preflight()
    run_dir, info = runinfo.create(
        "query-cost",
        request.out,
        server=request.server,
        users=request.users,
        seconds=request.seconds,
        rounds=request.rounds,
        pool_max=p.pool_max,
        workers=p.workers,
        overrides=request.overrides,
        setups={s.name: s.description for s in SETUPS},
        shapes={s.name: f"{s.path}: {s.description}" for s in SHAPES},
    )
    total = request.measurements * (request.seconds + 2)
    console.print(
        f"[bold]{info['run_id']}[/]: {len(SHAPES)} views × {len(SETUPS)} setups × {request.rounds} rounds of "
        f"{request.seconds} s, {request.users} users, under {request.server} (about {total / 60:.0f} min); "
        f"results in {os.path.relpath(run_dir)}"
    )
    with runinfo.recording(run_dir, info), ExitStack() as stack:
        db = external or stack.enter_context(
            postgres.Cluster(p.db_max_connections, os.path.join(run_dir, "postgres.log"))
        )
        if not db.version:
            postgres.inspect(db)
        info["database"] = db.describe()
        prepare_database(spec.backends[BASELINE_BACKEND], p, db.app_url, os.path.join(run_dir, "prepare.log"))
        servers = {}
        for setup in SETUPS:
            servers[setup.name] = stack.enter_context(_server(spec, setup, p, db, request.server, run_dir))
        frozen = {python: envs.freeze(python) for python in set(pythons.values())}  # once per environment
        info["server_versions"] = {
            s.name: {name: frozen[pythons[s.name]].get(name) for name in SERVER_PACKAGES} for s in SETUPS
        }
        rows = _rounds(request, servers, run_dir, console)
        capacity.write_csv(os.path.join(run_dir, "query_cost_summary.csv"), SUMMARY_COLUMNS, summarize(rows))
    console.print(f"query cost: {os.path.relpath(os.path.join(run_dir, 'query_cost_summary.csv'))}")
    return run_dir


def _rounds(request: Request, servers, run_dir, console) -> list[dict]:
    """The warm-up (not recorded: connections opened, code paths warm), then the rounds: each
    view under each setup, the setups in a random order; every measurement kept as it comes, so
    that an interrupted run keeps what it measured."""
    for setup in SETUPS:
        _locust(servers[setup.name], SHAPES[0], request.users, WARMUP_S, os.path.join(run_dir, "warmup"), setup.name)
    rows = []
    for n in range(1, request.rounds + 1):
        for shape in SHAPES:
            for order, setup in enumerate(random.sample(SETUPS, len(SETUPS)), 1):
                label = f"{n}-{shape.name}-{setup.name}"
                row = _locust(servers[setup.name], shape, request.users, request.seconds, run_dir, label)
                rows.append({"round": n, "shape": shape.name, "setup": setup.name, "order": order, **row})
                capacity.write_csv(os.path.join(run_dir, "query_cost.csv"), COLUMNS, rows)
                console.print(
                    f"  [{len(rows)}/{request.measurements}] round {n}, {shape.name}, {setup.name}: "
                    f"{row['rps']:.1f} requests/s, p99 {row['p99_ms']:.0f} ms, {row['failures']} failed"
                )
    return rows


BASELINE_BACKEND = next(s.backend for s in SETUPS if s.name == BASELINE)


def _server(spec, setup, p, db, server, run_dir):
    params = replace(p, release_all_streams=setup.switch)
    s = Server(
        spec.backends[setup.backend],
        params,
        db.app_url,
        postgres.free_port(),
        os.path.join(run_dir, f"server-{setup.name}.log"),
        server=spec.servers[server],
    )
    s.env["BENCH_STREAM_RELEASE"] = setup.installs
    return _Checked(s, setup)


class _Checked:
    """The server, started, and refused unless /healthz says it runs the setup."""

    def __init__(self, server, setup):
        self.server, self.setup = server, setup

    def __enter__(self):
        s = self.server.__enter__()
        got, imported = s.health.get("stream_release"), s.health.get("stream_release_imported")
        if got != self.setup.installs or imported != (self.setup.installs != "none"):
            self.server.__exit__(None, None, None)
            raise CellError(
                f"setup {self.setup.name}: the server installs {got!r} of the package "
                f"({'imported' if imported else 'not imported'}), not {self.setup.installs!r}"
            )
        return s

    def __exit__(self, *exc):
        return self.server.__exit__(*exc)


def _locust(server, shape, users, seconds, run_dir, label) -> dict:
    """One closed-loop measurement: {requests, failures, rps, p50_ms, p99_ms}."""
    os.makedirs(run_dir, exist_ok=True)
    prefix = os.path.join(run_dir, f"locust-{label}")
    command = [
        sys.executable,
        "-m",
        "locust",
        "-f",
        str(LOCUSTFILE),
        "--headless",
        "--host",
        server.url,
        "-u",
        str(users),
        "-r",
        str(users),
        "-t",
        f"{seconds}s",
        "--reset-stats",
        "--stop-timeout",
        "5",
        "--csv",
        prefix,
        "--only-summary",
        "--exit-code-on-error",
        "0",
        "--queries-path",
        shape.path,
    ]
    proc = procs.spawn(command, f"{prefix}.log", cwd=run_dir)
    start = time.monotonic()
    try:
        while proc.poll() is None:
            if time.monotonic() - start > seconds + 60:
                raise CellError(f"Locust still running {seconds + 60} s after it started: see {prefix}.log")
            time.sleep(0.2)
        if not procs.wait_group_exit(proc.pid, timeout=10):
            raise CellError(f"Locust's processes outlived it by 10 s: see {prefix}.log")
        procs.forget(proc)
        code, proc = proc.returncode, None
    finally:
        procs.stop(proc, signal.SIGTERM, timeout=5)
    if code != 0:
        raise CellError(f"Locust exited with {code}:\n{procs.tail(prefix + '.log')}")
    return read_stats(prefix + "_stats.csv")


def read_stats(path) -> dict:
    """Locust's --csv stats: the Aggregated row's counts, requests per second and percentiles."""
    with open(path, newline="") as f:
        row = next((r for r in csv.DictReader(f) if r["Name"] == "Aggregated"), None)
    if row is None or not int(row["Request Count"]):
        raise CellError(f"no request was answered: {path} has no requests")
    requests, failures = int(row["Request Count"]), int(row["Failure Count"])
    return {
        "requests": requests,
        "failures": failures,
        # Locust's requests per second count the failed ones too: a setup failing fast would look faster
        "rps": float(row["Requests/s"]) * (requests - failures) / requests,
        "p50_ms": float(row["50%"]),
        "p99_ms": float(row["99%"]),
    }


def summarize(rows) -> list[dict]:
    """Per shape and setup: the medians over the rounds, and against the baseline of the same
    round: the change in requests per second (%, Hodges-Lehmann with its interval, Wilcoxon's p)
    and in p99 (ms)."""
    out = []
    by = {(r["shape"], r["setup"], int(r["round"])): r for r in rows}
    rounds = sorted({int(r["round"]) for r in rows})
    for shape in SHAPES:
        base = [by[(shape.name, BASELINE, n)] for n in rounds]
        for setup in SETUPS:
            mine = [by[(shape.name, setup.name, n)] for n in rounds]
            row = {
                "shape": shape.name,
                "setup": setup.name,
                "backend": setup.backend,
                "installs": setup.installs,
                "switch": setup.switch,
                "rounds": len(mine),
                "requests": sum(int(r["requests"]) for r in mine),
                "failures": sum(int(r["failures"]) for r in mine),
                "rps_p50": round(statistics.median(float(r["rps"]) for r in mine), 1),
                "p50_ms_p50": statistics.median(float(r["p50_ms"]) for r in mine),
                "p99_ms_p50": statistics.median(float(r["p99_ms"]) for r in mine),
            }
            if setup.name != BASELINE:
                change = [
                    100 * (float(m["rps"]) - float(b["rps"])) / float(b["rps"]) for m, b in zip(mine, base, strict=True)
                ]
                estimate, low, high, confidence = paired.hodges_lehmann(change)
                p99 = [float(m["p99_ms"]) - float(b["p99_ms"]) for m, b in zip(mine, base, strict=True)]
                p_rps, p_p99 = paired.signed_rank_p(change), paired.signed_rank_p(p99)
                row.update(
                    rps_change_pct=round(estimate, 1),
                    rps_change_low_pct=round(low, 1),
                    rps_change_high_pct=round(high, 1),
                    rps_change_confidence=round(confidence, 3),
                    rps_change_p="" if p_rps is None else round(p_rps, 4),
                    p99_change_ms=round(statistics.median(p99), 1),
                    p99_change_p="" if p_p99 is None else round(p_p99, 4),
                )
            out.append(row)
    return out
