"""`python -m harness bench`: run every cell of a named matrix and record the run.

Per cell: start the server, verify its endpoints and warm it up, start the sampler, run
Locust headless for the cell's duration, stop everything, summarize. summary.csv and run.json
are rewritten after every cell, so an interrupted run keeps what finished.
"""

import dataclasses
import os
import signal
import subprocess
import sys
import threading
import time
from contextlib import ExitStack

import psycopg2
from rich.console import Console
from rich.progress import Progress

import harness
from harness import CellError, UsageError
from harness.measure import cpu, faults
from harness.measure.load import WORKERS_WAIT_S, Master, locust_command, test_window
from harness.measure.sampler import Sampler
from harness.pages import terminal
from harness.results import audit, cellfiles, runinfo, summary
from harness.runs import modes, schedules, subjects
from harness.spec import matrix
from harness.stack import envs, pgbouncer, postgres, procs

# The sampler reads PostgreSQL every 0.1 s and the server's /metrics every METRICS_EVERY-th time
METRICS_EVERY = 10
CELL_OVERHEAD_S = 4  # server start, warm-up and Locust start, for the remaining-time estimate
TOGETHER_TIMEOUT_S = 300  # side by side: how long a lane ready for its load waits for the others


@dataclasses.dataclass(frozen=True)
class Run:
    """What every cell of a run shares: where it is recorded, how it loads its cells (mode), and
    what it runs against (subject: benchapp, a project of yours, an app something else started),
    Locust's workers on other machines (master)."""

    run_id: str
    run_dir: str
    mode: modes.LoadMode
    subject: subjects.Subject
    master: Master | None = None


@dataclasses.dataclass(frozen=True)
class Request:
    """What `make bench` or `make capacity` was asked to run: the matrix (`matrix_file`'s, else
    matrix.toml's), its parameters' overrides and repeats, and

    - `servers` (SERVER=): every cell under these servers instead of those the matrix names;
    - `host`: an app something else started (with BENCH_DATABASE_URL, its database); the cells
      then run with the backend that app reports, and nothing is started;
    - `target`: a target file (harness/spec/target.py): your own project instead of benchapp, one
      cell per stream and scenario of the matrix, with the backend its settings name;
    - `master` (load.Master): Locust's workers are on other machines, and connect to it;
    - `out`: the run directory (default: results/<run id>)."""

    matrix: str = "default"
    overrides: dict = dataclasses.field(default_factory=dict)
    repeat: int = 1
    out: str | None = None
    matrix_file: str | None = None
    servers: tuple[str, ...] = ()
    host: str | None = None
    target: str | None = None
    master: Master | None = None

    def check(self):
        """Refuse, in one line, options that contradict each other."""
        if self.repeat < 1:
            raise UsageError(f"REPEAT={self.repeat} must be at least 1")
        if self.servers and self.host:
            raise UsageError(
                f"SERVER={','.join(self.servers)} with HOST={self.host}: the app's server is what its /healthz reports"
            )
        if self.master is not None and not self.host:
            raise UsageError(
                f"MASTER_BIND={self.master.host}:{self.master.port} needs HOST= too: workers on other machines reach "
                "the app at an address of its own (make serve BIND=<address> there), not at this machine's 127.0.0.1"
            )


def run(request: Request, mode: modes.LoadMode | None = None, console: Console | None = None):
    """Run `request`'s cells under `mode` (harness/runs/modes.py): FixedLoad (make bench, the
    default) or StepLoad (make capacity). Returns (the run directory, its rows)."""
    console = console or Console(stderr=True)
    mode = mode or modes.FixedLoad()
    request.check()
    spec = matrix.load(request.matrix_file)
    subject = subjects.of(request.host, request.target)
    plan = _plan(spec, request, subject, mode)
    pythons = subject.environments(plan.cells, console)
    if any(subject.lacks_pgbouncer(c) for c in plan.cells):
        console.print(f"[yellow]{pgbouncer.INSTALL_HINT}; its cells are skipped[/]")
    facts = _run_facts(request, spec, subject, plan, pythons)
    run_dir, info = runinfo.create(mode.kind, request.out, **facts)  # the last check: it creates the directory
    the_run = Run(info["run_id"], run_dir, mode, subject, request.master)
    rows = [_identity(the_run.run_id, c, "incomplete", subject) for c in plan.cells]
    mode.write_rows(os.path.join(run_dir, mode.results_file), rows)
    _announce(the_run, request, plan, console)
    _record(the_run, plan, rows, info, console)
    return run_dir, rows


@dataclasses.dataclass(frozen=True)
class _Plan:
    """The run's cells, checked; the external database (None: a throwaway cluster per lane);
    when they run (the schedule, its batches of cell indexes, each cell's lane) and how long
    each batch should take."""

    cells: list
    external: postgres.Database | None
    schedule: schedules.OneAfterAnother
    batches: list
    lanes: dict
    planned_s: list


def _plan(spec, request: Request, subject, mode) -> _Plan:
    cells, external = _checked_cells(spec, request, subject, mode)
    schedule = schedules.of(spec, request.matrix)
    schedule.check(request.matrix, request.host, external)
    batches = schedule.batches(cells)
    planned = [max(mode.planned_s(cells[i].params) for i in batch) + CELL_OVERHEAD_S for batch in batches]
    return _Plan(cells, external, schedule, batches, schedules.lanes(batches), planned)


def _announce(the_run: Run, request: Request, plan: _Plan, console):
    """What the run is about to do, and where Locust's remote workers connect."""
    master, cells = the_run.master, plan.cells
    if master is not None:
        console.print(
            f"Locust's master listens on {master.host}:{master.port} for {cells[0].params.locust_workers} "
            f"workers per cell: on each load machine run  {master.worker_command()}"
        )
    console.print(
        f"[bold]{the_run.run_id}[/]: {len(cells)} cells of matrix {request.matrix!r}"
        + (", those of a repeat side by side" if len(plan.batches) < len(cells) else "")
        + f", about {sum(plan.planned_s) / 60:.1f} min; results in {os.path.relpath(the_run.run_dir)}"
    )


def _record(the_run: Run, plan: _Plan, rows, info, console):
    """Run the batches, then the report; run.json and the results file say how far it got,
    however it ends (complete, incomplete when interrupted, failed)."""
    mode, run_dir = the_run.mode, the_run.run_dir
    results = os.path.join(run_dir, mode.results_file)
    where = {"label": None}  # the cell running, for the interrupt's message
    harness.PHASE["name"] = None
    try:
        _run_batches(the_run, plan, rows, info, console, where)
        info["status"] = "complete"  # every cell ran; the report says so, once written
        info["ended_utc"] = runinfo.utc_now().isoformat()  # the cells' end: the report's, and run.json's
        harness.PHASE["name"] = "report"
        runinfo.write_json(os.path.join(run_dir, "run.json"), info)
        _print_outputs(the_run, rows, results, console)
    except KeyboardInterrupt:
        info["status"] = "incomplete"
        label = where["label"]
        info["interrupted_in"] = (harness.PHASE["name"] or "start-up") + (f" of {label}" if label else "")
        console.print(
            f"[yellow]interrupted in {info['interrupted_in']}; stopped everything; "
            f"results so far kept in {os.path.relpath(run_dir)}[/]"
            + (f" (make report RUN={run_dir} writes the report)" if harness.PHASE["name"] == "report" else "")
        )
        raise
    except BaseException as exc:
        info["status"] = "failed"
        info["error"] = _one_line(exc)
        for row in rows:
            if row["status"] == "incomplete":
                row.update(status="failed", error=info["error"])
        raise
    finally:
        if info["status"] != "complete":  # a complete run ended with its last cell, not its report
            info["ended_utc"] = runinfo.utc_now().isoformat()
        runinfo.write_json(os.path.join(run_dir, "run.json"), info)
        mode.write_rows(results, rows)


def _run_batches(the_run: Run, plan: _Plan, rows, info, console, where):
    """Each batch of cells, side by side when it has several, each lane on its own database;
    the rows and the results file updated after each batch."""
    cells, planned, mode = plan.cells, plan.planned_s, the_run.mode
    results = os.path.join(the_run.run_dir, mode.results_file)
    with ExitStack() as stack, terminal.progress(console) as progress:
        task = progress.add_task("starting PostgreSQL", total=sum(planned))
        lanes = range(1, max(plan.lanes.values()) + 1)
        databases = [_Databases(the_run, plan.external, stack, lane) for lane in lanes]
        for b, batch in enumerate(plan.batches):
            where["label"] = _batch_label(batch, cells)
            harness.PHASE["name"] = "cell start"
            progress.update(task, description=where["label"], completed=sum(planned[:b]))
            slot = _Slot(progress, task, sum(planned[:b]), planned[b])
            jobs = [_lane_job(cells[i], databases[plan.lanes[i] - 1], the_run, slot, info) for i in batch]
            for i, row in zip(batch, _side_by_side(jobs) if len(jobs) > 1 else [jobs[0](None)], strict=True):
                rows[i] = row
            mode.write_rows(results, rows)
            for i in batch:
                _report_cell(console, _batch_label([i], cells), rows[i], mode)
        where["label"] = None


def _checked_cells(spec, request: Request, subject, mode):
    """The run's cells, every refusal about them made before anything starts; (cells, the
    external database or None)."""
    planned = spec.cells(request.matrix, request.overrides, request.repeat, list(request.servers) or None)
    cells = subject.cells(planned, spec, request.matrix)
    mode.check(cells)
    external = postgres.preflight()
    faults.refuse_unsupported(cells, own_cluster=external is None, own_server=subject.starts_server)
    if external is not None:
        for cell in cells:
            matrix.check_pool_fits(
                cell.params, external.max_connections, cell.name, "BENCH_DATABASE_URL's max_connections"
            )
    return cells, external


def _run_facts(request: Request, spec, subject, plan: _Plan, pythons):
    """What a bench or capacity run's run.json says beyond every run's header (runinfo.create):
    the matrix, the app, what the harness did not control, the cells (the database once it is up)."""
    cells, external = plan.cells, plan.external
    not_controlled = []
    if external is not None:
        not_controlled.append(
            "PostgreSQL: BENCH_DATABASE_URL's server, neither started nor configured by the harness "
            "(max_connections and the rest as found)"
        )
    not_controlled += subject.not_controlled()
    master, matrix_name = request.master, request.matrix
    if master is not None:
        not_controlled.append(
            f"Locust's workers: on other machines, connected to the master at {master.host}:{master.port}; "
            "their CPU is not sampled (loadgen_cores empty)"
        )
    return {
        "matrix": matrix_name,
        "matrix_description": spec.matrices[matrix_name].get("description", ""),
        "overrides": request.overrides or {},
        "repeat": request.repeat,
        "server_packages": {env: envs.freeze(python) for env, python in sorted(pythons.items())},
        "ended_utc": None,
        "database": None,
        "postgres_settings": {**postgres.THROWAWAY_SETTINGS, **postgres.LOG_SETTINGS}
        if external is None
        else "as configured on the external server",
        **subject.facts(),
        "not_controlled": not_controlled,
        "locust_master": None if master is None else {"bind": f"{master.host}:{master.port}", "workers": "remote"},
        "matrix_file": spec.raw,
        "schedule": plan.schedule.name,
        "cells": [
            {
                "cell": c.name,
                "repeat": c.repeat,
                "path": str(c.path),
                "params": vars(c.params),
                "backend": vars(c.backend),
                "postgres_log": schedules.lane_file("postgres.log", plan.lanes[i]),
            }
            for i, c in enumerate(cells)
        ],
    }


def _batch_label(batch, cells):
    """ "cell 3/40 <name>", or for cells side by side "cells 3-4/40 <name> + <name>"."""
    numbers = f"{batch[0] + 1}" if len(batch) == 1 else f"{batch[0] + 1}-{batch[-1] + 1}"
    return f"cell{'s' if len(batch) > 1 else ''} {numbers}/{len(cells)} " + " + ".join(cells[i].name for i in batch)


def _lane_job(cell, databases, the_run, slot, info):
    """A function that runs `cell` against its lane's database, given the barrier the cells
    running with it start their load at (None when it runs alone); its row."""

    def job(together):
        db = databases.for_cell(cell)
        if databases.lane == 1:
            info["database"] = db.describe()
        return _run_cell(cell, db, databases.cluster, databases.log, the_run, slot, together)

    return job


def _side_by_side(jobs):
    """Run the jobs at once, each in a thread of its own (its lane), and start their load at
    the same moment; their rows, in order. An interrupt (Ctrl-C reaches the main thread, here)
    stops every lane as if each were interrupted itself; then it goes on up from here."""
    together = threading.Barrier(len(jobs))
    harness.STOP.clear()
    results, errors = [None] * len(jobs), [None] * len(jobs)

    def lane(k):
        try:
            results[k] = jobs[k](together)
        except BaseException as exc:  # raised again in the main thread
            errors[k] = exc
        finally:
            together.abort()  # a lane that ended before the load: the others wait no longer, and run alone

    threads = [threading.Thread(target=lane, args=(k,), name=f"lane {k + 1}", daemon=True) for k in range(len(jobs))]
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            while thread.is_alive():
                thread.join(0.1)
    except KeyboardInterrupt:
        harness.STOP.set()
        together.abort()
        for thread in threads:
            thread.join()
        raise
    for exc in errors:
        if exc is not None:
            raise exc
    return results


class _Databases:
    """One lane's throwaway cluster at a time (none with BENCH_DATABASE_URL), started again when
    a cell needs another max_connections or the last one died; seeded (benchapp's rows, or a
    target's migrations and setup) when it is new or a cell wants other rows. A run has one
    lane, or one for each cell that runs side by side with others (harness/runs/schedules.py)."""

    def __init__(self, the_run: Run, external, stack: ExitStack, lane=1):
        self.run, self.external, self.stack, self.lane = the_run, external, stack, lane
        self.cluster, self.db, self.seeded = None, external, None
        self.log = os.path.join(the_run.run_dir, schedules.lane_file("postgres.log", lane))

    def for_cell(self, cell):
        p = cell.params
        if self.external is None and (
            self.cluster is None
            or self.cluster.max_connections != p.db_max_connections
            or self.cluster.proc is None
            or self.cluster.proc.poll() is not None  # a failed restart
        ):
            if self.cluster is not None:
                self.cluster.stop()
            self.cluster = postgres.Cluster(p.db_max_connections, self.log)
            self.stack.callback(self.cluster.stop)
            self.db, self.seeded = self.cluster.start(), None
        prepare_log = os.path.join(self.run.run_dir, schedules.lane_file("prepare.log", self.lane))
        self.seeded = self.run.subject.seed(cell, self.db, self.seeded, prepare_log)
        return self.db


def _print_outputs(the_run, rows, results, console):
    """The end of a complete run: its tables, where its results are, its report or plots."""
    mode = the_run.mode
    mode.print_tables(rows, Console(width=None if sys.stdout.isatty() else 200))
    console.print(f"{mode.results_name}: {os.path.relpath(results)}")
    try:
        files = mode.outputs(the_run.run_dir, rows)
        console.print(f"{mode.outputs_name}:  " + ", ".join(os.path.relpath(f) for f in files))
    except Exception as exc:  # the run's results stand without their report
        console.print(
            f"[red]{mode.outputs_what} not written: {_one_line(exc)}[/] (make report RUN={the_run.run_dir} retries)"
        )


def _identity(run_id, cell, status, subject):
    p = cell.params
    row = {
        "run_id": run_id,
        "cell": cell.name,
        "backend": cell.backend.name,
        "variant": cell.variant,
        "scenario": cell.scenario,
        "server": cell.server.name,
        "repeat": cell.repeat,
        "status": status,
        "streams": p.streams,
        "pool_max": p.pool_max,
        "duration_s": p.duration_s,
        "stream_design_ms": round(p.stream_s * 1000, 1),
        "instrument": p.instrument,
        "release_all_streams": p.release_all_streams,
    }
    return subject.identity(row, cell)


@dataclasses.dataclass
class _Slot:
    """A cell's place on the run's progress bar: the time planned before it, and its own."""

    progress: Progress
    task: object
    done_before: float
    planned_s: float

    def advance(self, elapsed):
        self.progress.update(self.task, completed=self.done_before + min(elapsed, self.planned_s))


def _run_cell(cell, db, cluster, postgres_log, the_run: Run, slot: _Slot, together=None):
    """One cell under the run's mode: the app (started, or the external one checked), the
    sampler, Locust, the leak check; then its row, measured from the raw files. `cluster`: the
    throwaway PostgreSQL, for the pg-restart fault and its CPU (None with BENCH_DATABASE_URL),
    and `postgres_log` its log. `together`: the barrier of the cells side by side with this
    one, which start their load at once."""
    return _CellRun(cell, db, cluster, postgres_log, the_run, slot, together).run()


@dataclasses.dataclass
class _CellRun:
    """One cell being run, with what it has started so far (for its cleanup)."""

    cell: matrix.Cell
    db: postgres.Database
    cluster: object
    postgres_log: str
    the_run: Run
    slot: _Slot
    together: object = None
    locust: object = None  # Locust's process, until it has ended well
    measure: object = None  # the function that measures the cell from its files, once its load ended

    @property
    def cell_dir(self) -> str:
        return os.path.join(self.the_run.run_dir, self.cell.path)

    def run(self) -> dict:
        os.makedirs(self.cell_dir)
        cell, subject = self.cell, self.the_run.subject
        row = _identity(self.the_run.run_id, cell, "incomplete", subject)
        row["db_limit"] = self.db.max_connections
        if subject.lacks_pgbouncer(cell):
            row.update(status="skipped", error=pgbouncer.INSTALL_HINT)
            return row
        try:
            with ExitStack() as stack:
                sampler, load_ended, pool_capacity, requests = self._load(stack)
                leaks = self._after_load(sampler, load_ended, pool_capacity, requests)
            row.update(self.measure())
            row.update(leaks)
            row["status"] = "ok"
            notes = [leak_note(leaks, cell.params.settle_s)]
            if sampler is not None and sampler.errors:
                notes.append(f"{sampler.errors} timeline samples incomplete ({_one_line(sampler.error)})")
            row["error"] = "; ".join(n for n in notes if n)
            self.the_run.mode.finish_cell(self.cell_dir, row)
        except (CellError, psycopg2.Error, OSError, subprocess.SubprocessError) as exc:
            row["status"] = "failed"
            row["error"] = _one_line(exc)
            with open(os.path.join(self.cell_dir, "error.txt"), "w") as f:
                f.write(str(exc) + "\n")
        except BaseException:
            if self.measure is not None:
                row.update(self.measure())
            raise
        finally:
            procs.stop(self.locust, signal.SIGTERM, timeout=5)
        return row

    def _load(self, stack):
        """The app and its sampler started, Locust's load run to its end and checked; (the
        sampler, when the load ended, the pool's capacity, Locust's requests)."""
        cell, cell_dir, the_run, subject = self.cell, self.cell_dir, self.the_run, self.the_run.subject
        server, pooler_console = subject.start(stack, cell, self.db, cell_dir)
        paths = subject.verify(server, cell, cell_dir)
        sampler = _sampler(stack, cell, self.db, server, pooler_console, cell_dir, subject.starts_server)
        shape = the_run.mode.shape_options(cell_dir, cell.params)
        _start_together(self.together)
        start = time.time()
        self.locust = procs.spawn(
            locust_command(cell, server.url, cell_dir, shape, master=the_run.master, **paths),
            os.path.join(cell_dir, "locust.log"),
        )
        harness.phase("load")
        stack.enter_context(_cpu_sampler(cell_dir, self.locust, server, self.cluster, the_run))
        injector = faults.Injector(cell, cell_dir, self.cluster, server)
        _wait_for_load(self.locust, cell, injector, self.slot, start, the_run.master)
        load_ended = time.time()
        window, grace_end = test_window(cell_dir, fallback=(start, load_ended))
        injector.finish(window[0])
        pool_capacity = _pool_capacity(cell, server.health.get("pool_limit"))
        requests = cellfiles.read_requests(cell_dir)  # once: for the audit and the summary
        context = summary.CellContext(window, grace_end, pool_capacity, self.postgres_log, self.db.app_user)
        self.measure = the_run.mode.measure(cell_dir, cell, context, requests)
        if self.locust.returncode != 0:
            raise CellError(
                f"Locust exited with {self.locust.returncode}:\n{procs.tail(os.path.join(cell_dir, 'locust.log'))}"
            )
        procs.forget(self.locust)
        self.locust = None
        return sampler, load_ended, pool_capacity, requests

    def _after_load(self, sampler, load_ended, pool_capacity, requests) -> dict:
        """The leak check, with the app still up, and the audit rows behind lost_writes; the
        leak columns."""
        harness.phase("leak check")
        if sampler is None:  # instrument=false: nothing to check against
            leaks = {"leaked_conns": "", "settle_s": ""}
        else:
            sampler.metrics_every = 1  # the leak check reads the server's gauges at every sample
            leaks = leak_check(sampler, pool_capacity or 0, self.cell.params.settle_s, since=load_ended)
        if self.the_run.subject.audited:  # a target has no audit table: lost_writes stays empty, not 0
            audit.export(self.cell_dir, self.db.admin_url, requests, f"/stream/{self.cell.variant}/")
        return leaks


def _start_together(together):
    """Wait for the cells side by side with this one to be ready for their load too: when one
    of them failed before, or took too long, this one runs alone."""
    if together is None:
        return
    try:
        together.wait(TOGETHER_TIMEOUT_S)
    except threading.BrokenBarrierError:
        harness.check_stop()


def _sampler(stack, cell, db, server, pooler_console, cell_dir, accounted):
    """PostgreSQL's sessions, the server's /metrics and PgBouncer's pools every 0.1 s
    (timeline.csv); None when the cell runs uninstrumented."""
    if not cell.params.instrument:
        return None
    return stack.enter_context(
        Sampler(
            os.path.join(cell_dir, "timeline.csv"),
            db,
            server.metrics_base,
            pooler_url=pooler_console,
            # the pool's timeline comes from the accounting log, exactly: /metrics once a
            # second during the load; every sample with no log (an app the harness did not start)
            metrics_every=METRICS_EVERY if accounted else 1,
        )
    )


def _cpu_sampler(cell_dir, locust, server, cluster, the_run: Run):
    """CPU and memory of each process group of the cell on this machine."""
    return cpu.CpuSampler(
        os.path.join(cell_dir, cpu.FILE),
        {
            # the load's CPU only where all of Locust runs: not with workers elsewhere (empty, not the master's)
            **({"loadgen": locust.pid} if the_run.master is None else {}),
            **({"server": server.proc.pid} if the_run.subject.starts_server else {}),
            **({"postgres": cluster.proc.pid} if cluster is not None else {}),
        },
    )


def _wait_for_load(locust, cell, injector, slot: _Slot, start, master):
    """Until Locust and its workers have ended: the load, then probes settling and streams ending
    (each up to the grace period), with the cell's fault injected on time."""
    limit = slot.planned_s + 2 * cell.params.grace_s + 60 + (WORKERS_WAIT_S if master else 0)
    while locust.poll() is None:
        harness.check_stop()
        elapsed = time.time() - start
        slot.advance(elapsed)
        if elapsed > limit:
            raise CellError(f"Locust still running {limit:.0f}s after start; stopped it")
        injector.poll()
        time.sleep(0.1)
    # distributed: the workers are the master's children, and send their logs as they end
    if not procs.wait_group_exit(locust.pid, timeout=cell.params.grace_s + 10):
        raise CellError("Locust's worker processes did not end after its master")


def leak_check(sampler, idle_allowance, timeout_s, since):
    """After the load has ended (every client gone): wait up to `timeout_s` for the connections
    in use to return to 0 and PostgreSQL's backends of the app to what the pool keeps idle
    (`idle_allowance`); {leaked_conns: what is left over then, settle_s: seconds it took, or
    empty if it never did}. Read from the sampler's samples taken after `since`."""
    deadline = since + timeout_s
    leaked = ""
    while True:
        sample = sampler.latest or {}
        in_use, backends = sample.get("pool_in_use", ""), sample.get("db_backends", "")
        if float(sample.get("unix_s", 0)) > since and in_use != "" and backends != "":
            leaked = max(in_use, backends - idle_allowance, 0)
            if leaked == 0:
                return {"leaked_conns": 0, "settle_s": round(float(sample["unix_s"]) - since, 2)}
        if time.time() > deadline:
            return {"leaked_conns": leaked, "settle_s": ""}
        time.sleep(0.05)


def leak_note(leaks, settle_s) -> str:
    """What a row says when its leak check ran out of time with connections left: a connection
    that comes back later than settle_s looks leaked, and only a longer settle tells which."""
    if leaks["settle_s"] != "" or leaks["leaked_conns"] in ("", 0):
        return ""
    return (
        f"leak check ran out of time: {leaks['leaked_conns']} connections still in use or open when "
        f"settle_s={settle_s:g} ended; raise settle_s to tell a leak from a late return"
    )


def _pool_capacity(cell, pool_limit):
    """The most PostgreSQL connections the configuration should use: PgBouncer's pool, or the
    app's pool in each worker; None for backends without a pool."""
    if cell.backend.via == "pgbouncer":
        return cell.params.pool_max
    return None if pool_limit is None else pool_limit * cell.params.workers


def _one_line(exc):
    """The message's first line, plus the last line of any log tail it quotes."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if len(lines) > 1:
        return f"{lines[0]} {lines[-1]}"
    return lines[0] if lines else type(exc).__name__


def _report_cell(console, label, row, mode):
    if row["status"] != "ok":
        colour = "yellow" if row["status"] == "skipped" else "red"
        console.print(f"{label}: [{colour}]{row['status']}[/] {row.get('error', '')}")
        return
    console.print(mode.cell_text(label, {k: ("-" if v == "" else v) for k, v in row.items()}))
