"""`python -m harness peer`: the same slow-read load from slowhttptest's slow-read mode (-X)
and from this project's slow client (locustfiles/slow_stream.py), one after the other against
one server, and what each cost.

Both open `streams` connections to /stream/<variant>/ over spawn_s seconds, keep them for
duration_s and read each at read_rate_bps (slowhttptest: -z read_rate_bps bytes every second;
ours: a tenth of that ten times a second). The body (chunks x chunk_bytes) must outlast the
run, so that every connection stays open. What is compared is measured over the part of the
run after the server has answered every connection (its accounting's checkouts, read from
/metrics: one a stream) and a second more, so that neither the opening of the connections nor
the server's catching up with them counts: the connections open on average (slowhttptest's own
per-second CSV; our request log), and the cores each client and the server used
(harness/measure/cpu.py). `measured_from_s` says when that began, after the client started.

slowhttptest 1.8.2 spins on a closed socket it still polls (about a whole core, whatever the
load): its probe's, and any connection's that ended. So its probe comes only once, at the start
(-p beyond -l; a later connection reuses that socket's number), and the default backend is
`stock`, whose connection per request never runs out as a pool can. A run in which
slowhttptest's connections closed (streams_closed) says its CPU figure is the bug's.
"""

import os
import shutil
import signal
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass

from harness import ROOT, CellError, UsageError
from harness.measure import cpu
from harness.measure.load import WINDOW_FILE, load_options, test_window
from harness.results import cellfiles, runinfo
from harness.runs import capacity
from harness.spec import matrix
from harness.stack import pgbouncer, postgres, procs
from harness.stack.metrics import read_metrics
from harness.stack.server import Server, prepare_database

INSTALL_HINT = (
    "slowhttptest is not installed: install it (Debian/Ubuntu: sudo apt-get install slowhttptest) "
    "or set BENCH_SLOWHTTPTEST to its executable"
)
MAX_READ = 576  # the most slowhttptest reads at once here (its socket's smallest receive buffer)
COLUMNS = [
    "client",
    "streams",
    "streams_open",
    "streams_closed",
    "read_rate_bps",
    "measured_from_s",
    "measured_s",
    "client_cores",
    "server_cores",
    "client_core_pct_per_1k_streams",
    "server_core_pct_per_1k_streams",
    "client_cpu_ratio_to_slowhttptest",
]


def find():
    configured = os.environ.get("BENCH_SLOWHTTPTEST")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("slowhttptest")


def check(p: matrix.Params, where):
    if not 1 <= p.read_rate_bps <= MAX_READ:
        raise UsageError(
            f"read_rate_bps={p.read_rate_bps} in {where}: slowhttptest reads at most {MAX_READ} bytes a "
            f"second per connection here; set read_rate_bps between 1 and {MAX_READ}"
        )
    design_s = p.chunks * p.chunk_bytes / p.read_rate_bps
    if design_s < p.duration_s + p.spawn_s + 10:
        raise UsageError(
            f"chunks={p.chunks} x chunk_bytes={p.chunk_bytes} at read_rate_bps={p.read_rate_bps} lasts "
            f"{design_s:.0f} s, less than the run: raise chunks or chunk_bytes"
        )


def run(
    backend="stock",
    variant="release",
    scenario="peer-slow-read",
    overrides=None,
    out=None,
    matrix_file=None,
    console=None,
):
    from rich.console import Console

    console = console or Console(stderr=True)
    spec = matrix.load(matrix_file)
    p, tool = _checked(spec, backend, variant, scenario, overrides)
    external = postgres.preflight()
    run_dir, info = runinfo.create(
        "peer", out, backend=backend, variant=variant, scenario=scenario, params=vars(p), slowhttptest=tool
    )
    run_id = info["run_id"]
    console.print(
        f"[bold]{run_id}[/]: slowhttptest, then this project's slow client: {p.streams} connections "
        f"reading {p.read_rate_bps} B/s each for {p.duration_s} s; results in {os.path.relpath(run_dir)}"
    )
    rows = []
    with runinfo.recording(run_dir, info):
        with ExitStack() as stack:
            server = _start(stack, spec.backends[backend], p, external, run_dir)
            server.verify(variant)
            _both_clients(rows, server, tool, p, variant, run_dir, console)
        _add_ratios(rows)
        capacity.write_csv(os.path.join(run_dir, "peer.csv"), COLUMNS, rows)
    _print(rows, console)
    console.print(f"peer: {os.path.relpath(os.path.join(run_dir, 'peer.csv'))}")
    return run_dir, rows


def _checked(spec, backend, variant, scenario, overrides):
    """The scenario's parameters and slowhttptest's executable, once the names, the parameters,
    slowhttptest and the backend's pgbouncer are all there; UsageError otherwise."""
    for name, value, known in (
        ("BACKEND", backend, spec.backends),
        ("VARIANT", variant, spec.variants),
        ("SCENARIO", scenario, spec.scenarios),
    ):
        if value not in known:
            raise UsageError(f"{name}={value} is unknown: use one of {', '.join(known)}")
    p = spec.params(scenario, overrides)
    check(p, f"scenario {scenario}")
    tool = find()
    if tool is None:
        raise UsageError(INSTALL_HINT)
    if pgbouncer.missing_for(spec.backends[backend]):
        raise UsageError(f"BACKEND={backend}: {pgbouncer.INSTALL_HINT}")
    return p, tool


def _start(stack, backend, p, external, run_dir):
    """PostgreSQL (`external`, or a cluster of the run's), its database prepared, pgbouncer if
    the backend goes through it, and the app's server, each entered on `stack`: the server."""
    db = external or stack.enter_context(postgres.Cluster(p.db_max_connections, os.path.join(run_dir, "postgres.log")))
    prepare_database(backend, p, db.app_url, os.path.join(run_dir, "prepare.log"))
    app_db = pgbouncer.front(stack, backend, p, db, os.path.join(run_dir, "pgbouncer.log"))
    return stack.enter_context(
        Server(backend, p, app_db.app_url, postgres.free_port(), os.path.join(run_dir, "server.log"))
    )


def _both_clients(rows, server, tool, p, variant, run_dir, console):
    """slowhttptest, then this project's slow client, against `server`: each one's row appended
    to `rows` as it ends, the server left idle after each."""
    url = f"{server.url}/stream/{variant}/?chunks={p.chunks}&chunk_bytes={p.chunk_bytes}&delay_ms={p.delay_ms}"
    for client, command in (
        (SLOWHTTPTEST, _slowhttptest(tool, p, url, run_dir)),
        (LOCUST, _locust(p, server.url, variant, run_dir)),
    ):
        console.print(f"{client.name}: {p.streams} connections for {p.duration_s} s")
        answered_at, start, cpu_rows = _run_client(client, command, p, run_dir, server)
        if answered_at is None:
            console.print(
                f"[yellow]{client.name}: the app never counted {p.streams} checkouts (is its accounting "
                "on? instrument=true): measured from spawn_s + 1, the server's catching up included[/]"
            )
        rows.append(_row(client, p, run_dir, start, answered_at, cpu_rows))
        _wait_idle(server, p)


def _add_ratios(rows):
    """Each row's client_cpu_ratio_to_slowhttptest: its client's cores over the first row's."""
    base = rows[0]["client_cores"]
    for row in rows:
        row["client_cpu_ratio_to_slowhttptest"] = (
            round(row["client_cores"] / base, 2) if base and row["client_cores"] != "" else ""
        )


def _slowhttptest(tool, p, url, run_dir):
    return [
        tool,
        "-X",
        "-c",
        p.streams,
        "-r",
        max(1, round(p.streams / max(p.spawn_s, 1))),
        "-l",
        p.duration_s,
        "-w",
        512,
        "-y",
        1024,
        "-n",
        1,
        "-z",
        p.read_rate_bps,
        "-p",
        p.duration_s + 60,
        "-u",
        url,
        "-g",
        "-o",
        os.path.join(run_dir, "slowhttptest"),
    ]


def _locust(p, host, variant, run_dir):
    """The slow clients alone (no probe user): `streams` users, the stream options as for a cell."""
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        ROOT / "locustfiles" / "slow_stream.py",
        "--headless",
        "--host",
        host,
        "-u",
        p.streams,
        "-r",
        p.streams / p.spawn_s if p.spawn_s else p.streams,
        *load_options(p, users=False),
        "-t",
        f"{p.duration_s}s",
        "--stop-timeout",
        0,
        "--only-summary",
        "--exit-code-on-error",
        0,
        "--variant",
        variant,
        "--request-log",
        os.path.join(run_dir, "requests.csv"),
        "--window-file",
        os.path.join(run_dir, WINDOW_FILE),
    ]


class _Answered:
    """When the server had answered every stream (unix s): its accounting's checkouts, one a
    stream, polled from /metrics until `streams` more than when the client started."""

    def __init__(self, server, streams):
        self.url, self.streams = server.url, streams
        self.before = self._checkouts()
        self.at = None

    def _checkouts(self):
        try:
            return read_metrics(self.url)["pool_checkouts_total"]
        except (OSError, KeyError):  # busy past the timeout, or not yet counted: asked again
            return None

    def poll(self):
        if self.at is None and self.before is not None:
            now = self._checkouts()
            if now is not None and now - self.before >= self.streams:
                self.at = time.time()


def _run_client(client, command, p, run_dir, server):
    """Run the client to its end, its and the server's CPU sampled: (when the server had answered
    every stream, unix s, or None; when the client started; the CPU samples)."""
    cpu_path = os.path.join(run_dir, f"cpu-{client.name}.csv")
    answered = _Answered(server, p.streams)
    proc = procs.spawn(command, os.path.join(run_dir, f"{client.name}.log"), cwd=run_dir)
    start = time.time()
    try:
        with cpu.CpuSampler(cpu_path, {"client": proc.pid, "server": server.proc.pid}):
            while proc.poll() is None:
                if time.time() - start > p.duration_s + p.spawn_s + 60:
                    raise CellError(f"{client.name} still running {p.duration_s + p.spawn_s + 60} s after it started")
                answered.poll()
                time.sleep(0.2)
            procs.wait_group_exit(proc.pid, timeout=10)
        procs.forget(proc)
        proc = None
    finally:
        procs.stop(proc, signal.SIGTERM, timeout=5)
    return answered.at, start, cpu.read(run_dir, os.path.basename(cpu_path))


def _row(client, p, run_dir, start, answered_at, cpu_rows):
    """The client's row, measured from a second after the server had answered every stream
    (from spawn_s + 1 if it never did)."""
    start, end = client.window(run_dir, p, start)
    begin = max(start + p.spawn_s, answered_at or 0) + 1
    opened, closed = client.connected(run_dir, start, begin, end)
    row = {
        "client": client.name,
        "streams": p.streams,
        "streams_open": round(opened, 1),
        "streams_closed": closed,
        "read_rate_bps": p.read_rate_bps,
        "measured_from_s": round(begin - start, 1),
        "measured_s": round(end - begin, 1),
    }
    for name in ("client", "server"):
        cores = cpu.cores(cpu_rows, name, begin, end)
        row[f"{name}_cores"] = round(cores, 3) if cores is not None else ""
        row[f"{name}_core_pct_per_1k_streams"] = (
            round(100 * cores / (opened / 1000), 2) if cores is not None and opened >= 1 else ""
        )
    return row


def _slowhttptest_connected(run_dir, start, begin, end):
    """slowhttptest's connections open on average, from its per-second CSV, from `begin` to `end`
    (unix s; its seconds count from `start`), and how many had closed by then (ended, or failed)."""
    first_s, last_s = round(begin - start), round(end - start)
    rows = [
        r for r in cellfiles.read(os.path.join(run_dir, "slowhttptest.csv")) if first_s <= int(r["Seconds"]) <= last_s
    ]
    if not rows:
        return 0.0, ""
    return sum(int(r["Connected"]) for r in rows) / len(rows), int(rows[-1]["Closed"])


def _locust_connected(run_dir, start, begin, end):
    """Our streams open on average from `begin` to `end`, from the request log, and how many had
    ended (or been aborted) in the whole run."""
    requests = cellfiles.read_requests(run_dir)
    closed = sum(1 for r in requests if r["request_type"] in ("STREAM", "ABORTED"))
    return capacity.open_streams(requests, begin, end), closed


@dataclass(frozen=True)
class Client:
    """What differs between the two clients once they ran: the run's window from its own
    records, and the connections it held open in a part of it."""

    name: str
    window: Callable  # (run_dir, p, when the harness started it) -> (start, end), unix s
    connected: Callable  # (run_dir, start, begin, end) -> (open on average, closed)


SLOWHTTPTEST = Client("slowhttptest", lambda run_dir, p, start: (start, start + p.duration_s), _slowhttptest_connected)
# Locust's own window: its test starts once it has imported and parsed, a second or more later
LOCUST = Client(
    "locust",
    lambda run_dir, p, start: test_window(run_dir, fallback=(start, time.time()))[0],
    _locust_connected,
)


def _wait_idle(server, p, timeout=30):
    """Until the server has seen the last client's connections go (its CPU idle), so that the
    next client is measured alone."""
    deadline = time.time() + timeout
    pgid = server.proc.pid
    before = cpu.groups_cpu_s([pgid])[pgid]
    while time.time() < deadline:
        time.sleep(1)
        now = cpu.groups_cpu_s([pgid])[pgid]
        if now - before < 0.02:
            return
        before = now


def _print(rows, console):
    from rich.table import Table

    table = Table(
        title="the same slow-read load from slowhttptest and from this project's slow client "
        "(cores: CPU seconds per second; every column: peer.csv)"
    )
    for title in (
        "client",
        "streams open",
        "closed",
        "measured from s",
        "client cores",
        "client % core /1k streams",
        "server cores",
        "ratio to slowhttptest",
    ):
        table.add_column(title, justify="left" if title == "client" else "right")
    for r in rows:
        table.add_row(
            r["client"],
            str(r["streams_open"]),
            str(r["streams_closed"]),
            str(r["measured_from_s"]),
            str(r["client_cores"]),
            str(r["client_core_pct_per_1k_streams"]),
            str(r["server_cores"]),
            str(r["client_cpu_ratio_to_slowhttptest"]),
        )
    console.print(table)
    if any(r["client"] == "slowhttptest" and r["streams_closed"] for r in rows):
        console.print(
            "[yellow]slowhttptest's connections closed during the run: its CPU figure is then its "
            "busy-loop bug's (see harness/studies/peer.py), not the cost of its connections[/]"
        )
