"""`python -m harness capacity`: each cell's breaking point under a step load of slow streams.

Locust runs locustfiles/step_shape.py (a LoadTestShape): the streams rise step by step
(capacity_start, ×capacity_growth, up to capacity_max) and the test stops one step after the
shape sees an objective broken. Here every step is judged again, exactly, from the request
log, the sampler's timeline and the processes' CPU time:

- probe p99 of the probes started in the step's hold, failed ones included, above slo_probe_p99_ms;
- failed requests (probes, and streams that ended in the step) above slo_failures;
- PostgreSQL connections of the app above the pool's limit (pool_max per worker, or PgBouncer's
  pool), as bench's overshoot;
- the load generator itself at its limit: its processes busy 90% of a core or more each, or
  fewer than 90% of the step's streams open on average. The server is then not what broke:
  the cell's answer is a lower bound (more Locust workers, or another machine, go further).

max_streams_ok is the streams of the last step before the first broken one. Per cell:
steps.csv (every step), capacity.csv (the verdict), capacity.png; per run: capacity.csv
(every cell) and capacity.png (every cell's max_streams_ok). The plots are drawn by plots.py
(capacity_cell, capacity_run), the console tables by terminal.py.
"""

import bisect
import csv
import dataclasses
import functools
import json
import os
from dataclasses import fields, replace
from types import SimpleNamespace

from harness import UsageError
from harness.measure import cpu
from harness.measure.load import test_window
from harness.results import cellfiles, runinfo, summary
from harness.results.summary import percentile
from harness.spec import matrix
from harness.stack import pglog

STEPS_FILE = "steps.json"  # written by the shape
LOADGEN_BUSY = 0.9  # a Locust process this busy (cores) limits the load, not the server
OPEN_SHORT = 0.9  # ... as do fewer open streams than this share of the step's

STEP_COLUMNS = [
    "step",
    "streams",
    "streams_open",
    "start_unix",
    "full_unix",
    "end_unix",
    "probes",
    "probe_failures",
    "probe_p50_ms",
    "probe_p99_ms",
    "stream_failures",
    "streams_completed",
    "peak_pool_in_use",
    "peak_pool_waiting",
    "peak_db_backends",
    "server_gc_pause_max_ms",
    "loadgen_cores",
    "server_cores",
    "postgres_cores",
    "loadgen_core_pct_per_1k_streams",
    "server_core_pct_per_1k_streams",
    "broken_objective",
    "broken",
]
VERDICT_COLUMNS = [
    *summary.IDENTITY,
    "max_streams_ok",
    "broken_objective",
    "broken_at_streams",
    "broken_detail",
    "steps",
    "highest_streams",
    "slo_probe_p99_ms",
    "slo_failures",
    "pool_capacity",
    "stream_design_ms",
    "probe_p99_ms_at_max_ok",
    "loadgen_core_pct_per_1k_streams",
    "server_core_pct_per_1k_streams",
    "leaked_conns",
    "settle_s",
    "error",
]


def levels(p):
    """The streams of each step for parameters `p` (the shape computes the same)."""
    out = [min(p.capacity_start, p.capacity_max)]
    while out[-1] < p.capacity_max:
        out.append(min(p.capacity_max, max(out[-1] + 1, int(out[-1] * p.capacity_growth + 0.5))))
    return out


def planned_s(p):
    """The longest a cell can take: every step's ramp (one stream's length) and hold."""
    return len(levels(p)) * (p.stream_s + p.capacity_step_s + 1)


def shape_options(p):
    return [
        "--step-levels",
        ",".join(str(n) for n in levels(p)),
        "--step-ramp-s",
        p.stream_s,
        "--step-hold-s",
        p.capacity_step_s,
        "--slo-probe-p99-ms",
        p.slo_probe_p99_ms,
        "--slo-failures",
        p.slo_failures,
    ]


# ---------------------------------------------------------------- judging the steps


def open_streams(requests, start, end):
    """The streams open on average between `start` and `end` (unix s), from the client's view:
    from sending the request to the body's end (STREAM, UNFINISHED or ABORTED)."""
    if end <= start:
        return 0.0
    total = 0.0
    for r in requests:
        if r["request_type"] in ("STREAM", "UNFINISHED", "ABORTED") and r["start_unix_s"]:
            s = float(r["start_unix_s"])
            e = s + r["response_time_ms"] / 1000
            total += max(0.0, min(e, end) - max(s, start))
    return total / (end - start)


@dataclasses.dataclass(frozen=True)
class CellRecord:
    """What a capacity cell's files say: Locust's requests, the sampled timeline, the CPU
    samples, the server's accounting events (its garbage collector's pauses and the exact peaks
    of its pool), the probe's path, and the app's PostgreSQL sessions from the cluster's log
    (harness/stack/pglog.py) for exact peaks of backends; without the last two, the sampled peaks."""

    requests: list
    timeline: list = ()
    cpu_rows: list = ()
    accounting: list = ()
    probe_name: str = "/probe/"
    sessions: list | None = None

    @functools.cached_property
    def probes(self) -> list:
        """(start, request) of every probe, by start."""
        return sorted(
            (
                (float(r["start_unix_s"]), r)
                for r in self.requests
                if r["request_type"] == "GET" and r["name"] == self.probe_name and r["start_unix_s"]
            ),
            key=lambda item: item[0],
        )

    @functools.cached_property
    def streams_ended(self) -> list:
        """(end, request) of every whole or failed stream."""
        return [
            (float(r["start_unix_s"]) + r["response_time_ms"] / 1000, r)
            for r in self.requests
            if r["request_type"] == "STREAM" and r["start_unix_s"]
        ]

    @functools.cached_property
    def probe_starts(self) -> list:
        return [t for t, _ in self.probes]

    @functools.cached_property
    def samples(self) -> list:
        """The timeline's samples, their time a number."""
        return [{**s, "unix_s": float(s["unix_s"])} for s in self.timeline]

    def probes_between(self, start, end) -> list:
        starts = self.probe_starts
        return [r for _, r in self.probes[bisect.bisect_left(starts, start) : bisect.bisect_left(starts, end)]]

    def peaks(self, start, end) -> dict:
        """The step's peaks of connections in use, waiting, and PostgreSQL backends: exact where
        the accounting and the log have them, else sampled."""
        peaks = {}
        for column in ("pool_in_use", "pool_waiting", "db_backends"):
            values = [
                int(s[column]) for s in self.samples if start <= s["unix_s"] <= end and s.get(column) not in (None, "")
            ]
            peaks[column] = max(values) if values else ""
        if self.sessions is not None:
            peaks["db_backends"] = pglog.peak(self.sessions, start, end)
        if any(e["event"] == "checkout" for e in self.accounting):  # exact, from the accounting log
            peaks["pool_in_use"], peaks["pool_waiting"] = summary.pool_peaks(self.accounting, start, end)
        return peaks

    def gc_pause_max_ms(self, start, end):
        """The longest collector pause the server logged in [start, end] (from 10 ms,
        benchapp/instrument.py; a whole worker stops meanwhile), or ""."""
        pauses = (float(e["hold_ms"]) for e in self.accounting if e["event"] == "gc" and start <= e["unix_s"] <= end)
        return max(pauses, default="")


def judge_steps(steps, record: CellRecord, p, pool_capacity):
    """Every finished step (from the shape's steps.json) as a row of STEP_COLUMNS; `broken`
    lists the objectives it broke, separated by '; '."""
    rows = []
    for step in steps:
        if "end_unix" not in step or "full_unix" not in step:
            continue  # the test stopped during it
        row, peaks, opened = _step_row(step, record)
        broken = _broken(row, peaks, opened, step, p, pool_capacity)
        row["broken_objective"] = broken[0][0] if broken else ""
        row["broken"] = "; ".join(text for _, text in broken)
        rows.append(row)
    return rows


def _step_row(step, record: CellRecord):
    """A step's row but its verdict, its peaks, and the streams open on average (unrounded)."""
    start, full, end = step["start_unix"], step["full_unix"], step["end_unix"]
    # the probes of the step's hold (its steady state); the ramp's transient (the first
    # connections of a test, say) is not the level's
    in_step = record.probes_between(full, end)
    times = [r["response_time_ms"] for r in in_step]
    streams_ended = [r for t, r in record.streams_ended if start <= t < end]
    peaks = record.peaks(start, end)
    opened = open_streams(record.requests, full, end)
    row = {
        "step": step["step"],
        "streams": step["streams"],
        "streams_open": round(opened, 1),
        "start_unix": f"{start:.3f}",
        "full_unix": f"{full:.3f}",
        "end_unix": f"{end:.3f}",
        "probes": len(times),
        "probe_failures": sum(1 for r in in_step if r["failure"]),
        "probe_p50_ms": _round(percentile(times, 50)),
        "probe_p99_ms": _round(percentile(times, 99)),
        "stream_failures": sum(1 for r in streams_ended if r["failure"]),
        "streams_completed": sum(1 for r in streams_ended if not r["failure"]),
        "peak_pool_in_use": peaks["pool_in_use"],
        "peak_pool_waiting": peaks["pool_waiting"],
        "peak_db_backends": peaks["db_backends"],
        "server_gc_pause_max_ms": record.gc_pause_max_ms(full, end),
    }
    for name in ("loadgen", "server", "postgres"):
        cores = cpu.cores(record.cpu_rows, name, full, end)
        row[f"{name}_cores"] = "" if cores is None else round(cores, 3)
    for name in ("loadgen", "server"):
        cores = row[f"{name}_cores"]
        row[f"{name}_core_pct_per_1k_streams"] = (
            round(100 * cores / (opened / 1000), 1) if cores != "" and opened >= 1 else ""
        )
    return row, peaks, opened


def _broken(row, peaks, opened, step, p, pool_capacity) -> list:
    """[(objective, what happened)] for each objective the step broke."""
    broken = []
    if row["probes"] and row["probe_p99_ms"] > p.slo_probe_p99_ms:
        broken.append(("probe_p99", f"probe p99 {row['probe_p99_ms']:g} ms > {p.slo_probe_p99_ms:g} ms"))
    failures = row["probe_failures"] + row["stream_failures"]
    if failures > p.slo_failures:
        broken.append(("failed_requests", f"{failures} failed requests > {p.slo_failures}"))
    # PostgreSQL's view, as bench's overshoot: an app pool's connections in use are among
    # them, and behind PgBouncer only its server pool is (the app's side is not pooled)
    if pool_capacity and peaks["db_backends"] != "" and peaks["db_backends"] > pool_capacity:
        broken.append(("pool_limit", f"{peaks['db_backends']} PostgreSQL connections > pool limit {pool_capacity}"))
    busy, workers = row["loadgen_cores"], p.locust_workers
    if busy != "" and busy / workers >= LOADGEN_BUSY:
        broken.append(("load_generator", f"load generator busy: {busy:.2f} cores for {workers} Locust process(es)"))
    elif opened < OPEN_SHORT * step["streams"]:
        broken.append(("load_generator", f"load generator short: {opened:.0f} of {step['streams']} streams open"))
    return broken


def _round(value):
    return "" if value is None else round(value, 1)


def verdict(step_rows, p, stopped_early):
    """max_streams_ok, and the first objective broken with the streams at which it broke."""
    first = next((r for r in step_rows if r["broken"]), None)
    before = [r for r in step_rows if first is None or r["step"] < first["step"]]
    best = before[-1] if before else None
    out = {
        "max_streams_ok": best["streams"] if best else 0,
        "steps": len(step_rows),
        "highest_streams": step_rows[-1]["streams"] if step_rows else "",
        "probe_p99_ms_at_max_ok": best["probe_p99_ms"] if best else "",
        "loadgen_core_pct_per_1k_streams": best["loadgen_core_pct_per_1k_streams"] if best else "",
        "server_core_pct_per_1k_streams": best["server_core_pct_per_1k_streams"] if best else "",
    }
    if first is not None:
        out.update(
            broken_objective=first["broken_objective"],
            broken_at_streams=first["streams"],
            broken_detail=first["broken"],
        )
    elif step_rows and step_rows[-1]["streams"] >= p.capacity_max:
        out.update(
            broken_objective="none",
            broken_at_streams="",
            broken_detail=f"every step held, up to capacity_max={p.capacity_max}",
        )
    else:
        out.update(
            broken_objective="none",
            broken_at_streams="",
            broken_detail="the test ended before a broken step was confirmed" if stopped_early else "no step finished",
        )
    return out


def read_steps(cell_dir):
    try:
        with open(os.path.join(cell_dir, STEPS_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):
        return []


def measure(cell_dir, cell, context: summary.CellContext, requests):
    """The cell's verdict, once its load has ended; writes its steps.csv and capacity.png."""
    p, pool_capacity = cell.params, context.pool_capacity
    steps = read_steps(cell_dir)
    record = CellRecord(
        requests,
        cellfiles.read(os.path.join(cell_dir, "timeline.csv")),
        cpu.read(cell_dir),
        cellfiles.read_accounting(cell_dir),
        probe_name=cellfiles.probe_path(cell_dir),
        sessions=pglog.sessions(context.postgres_log, context.app_user),
    )
    rows = judge_steps(steps, record, p, pool_capacity)
    write_csv(os.path.join(cell_dir, "steps.csv"), STEP_COLUMNS, rows)
    result = verdict(rows, p, stopped_early=len(steps) < len(levels(p)))
    result.update(pool_capacity=pool_capacity or "", slo_probe_p99_ms=p.slo_probe_p99_ms, slo_failures=p.slo_failures)
    from harness.pages import plots  # matplotlib, once it is needed

    plots.capacity_cell(os.path.join(cell_dir, "capacity.png"), cell.name, rows, p, pool_capacity)
    return result


def rejudge(run_dir):
    """make report RUN=<a capacity run>: every finished cell judged again from its raw files
    (steps.csv, capacity.csv and the plots rewritten); returns the files written."""
    info = runinfo.read_json(os.path.join(run_dir, "run.json"))
    known = {f.name for f in fields(matrix.Params)}
    defaults = {k: v for k, v in matrix.load().defaults.items() if k in known}  # parameters newer than the run
    params = {(c["cell"], c["repeat"]): matrix.Params(**{**defaults, **c["params"]}) for c in info["cells"]}
    path = os.path.join(run_dir, "capacity.csv")
    rows = cellfiles.read(path)
    for row in rows:
        if row["status"] != "ok":
            continue
        cell = SimpleNamespace(name=row["cell"], params=params[(row["cell"], int(row["repeat"]))])
        cell_dir = os.path.join(run_dir, row["cell"], f"r{row['repeat']}")
        # the steps carry their own times: the window is the test's, read back for the record
        context = summary.CellContext(
            test_window(cell_dir, fallback=(0.0, 0.0))[0],
            pool_capacity=int(row["pool_capacity"]) if row["pool_capacity"] else None,
            postgres_log=runinfo.postgres_log(run_dir, cell_dir),
        )
        row.update(measure(cell_dir, cell, context, cellfiles.read_requests(cell_dir)))
        write_verdicts(os.path.join(cell_dir, "capacity.csv"), [row])
    write_verdicts(path, rows)
    from harness.pages import plots

    return [path, *plots.capacity_run(run_dir, rows)]


def refuse_unsupported(cells):
    """make capacity sets the streams itself and injects no faults."""
    for cell in cells:
        if cell.params.fault != "none":
            raise UsageError(
                f"make capacity injects no faults, and cell {cell.name} has fault={cell.params.fault}: "
                "choose a MATRIX without fault scenarios, or SET=fault=none"
            )
        if cell.params.capacity_start > cell.params.capacity_max:
            raise UsageError(
                f"capacity_start={cell.params.capacity_start} in {cell.name} is above "
                f"capacity_max={cell.params.capacity_max}: lower capacity_start or raise capacity_max"
            )
        matrix.check_connections(replace(cell.params, streams=cell.params.capacity_max), cell.name, "capacity_max")


def write_csv(path, columns, rows):
    with runinfo.replacing(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in columns})


def write_verdicts(path, rows):
    write_csv(path, VERDICT_COLUMNS, rows)
