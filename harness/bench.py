"""`python -m harness bench`: run every cell of a named matrix and record the run.

Per cell: start the server, verify its endpoints and warm it up, start the sampler, run
Locust headless for the cell's duration, stop everything, summarize. summary.csv and run.json
are rewritten after every cell, so an interrupted run keeps what finished.
"""

import dataclasses
import functools
import os
import signal
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path

import psycopg2
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

import harness
from harness import (
    CellError,
    UsageError,
    audit,
    capacity,
    compare,
    cpu,
    envs,
    faults,
    html_report,
    matrix,
    pgbouncer,
    postgres,
    procs,
    runinfo,
    summary,
)
from harness import server as server_module
from harness import target as targets
from harness.load import WORKERS_WAIT_S, locust_command, test_window
from harness.sampler import Sampler
from harness.server import Server, prepare_database

# The sampler reads PostgreSQL every 0.1 s and the server's /metrics every METRICS_EVERY-th time
METRICS_EVERY = 10
CELL_OVERHEAD_S = 4  # server start, warm-up and Locust start, for the remaining-time estimate
TABLE_COLUMNS = [
    ("cell", "cell"),
    ("status", "status"),
    ("streams_completed", "streams ok"),
    ("stream_failures", "stream fail"),
    ("conn_hold_p50_ms", "conn hold p50 ms"),
    ("probe_requests", "probes"),
    ("probe_failures", "probe fail"),
    ("probe_p50_ms", "probe p50 ms"),
    ("probe_p99_ms", "probe p99 ms"),
    ("peak_pool_in_use", "peak in use"),
    ("peak_pool_waiting", "peak waiting"),
    ("peak_db_backends", "peak PG backends"),
    ("overshoot", "over pool limit"),
    ("pool_timeouts", "pool timeouts"),
    ("too_many_clients", "too many clients"),
    ("hung_requests", "hung"),
    ("lost_writes", "lost writes"),
    ("leaked_conns", "leaked conns"),
]
# shown when a cell of the run has a fault
FAULT_COLUMNS = [
    ("fault_s", "fault at s"),
    ("failures_after_fault", "failed after fault"),
    ("recovery_s", "recovery s"),
]


def run(
    matrix_name,
    overrides=None,
    repeat=1,
    out=None,
    console=None,
    host=None,
    matrix_file=None,
    search=False,
    target=None,
    master=None,
):
    """`host`: an app something else started (with BENCH_DATABASE_URL, its database); the
    cells then run with the backend that app reports, and nothing is started. `search`: make
    capacity: each cell is a step load searching its breaking point (harness/capacity.py).
    `target`: a target file (harness/target.py): your own project instead of benchapp, one
    cell per stream and scenario of the matrix, with the backend its settings name. `master`
    (load.Master): Locust's workers are on other machines, and connect to it."""
    console = console or Console(stderr=True)
    spec = matrix.load(matrix_file)
    if repeat < 1:
        raise UsageError(f"REPEAT={repeat} must be at least 1")
    cells = spec.cells(matrix_name, overrides, repeat)
    if target:
        if host:
            raise UsageError(f"TARGET={target} and HOST={host}: a target is started by the harness; give one of them")
        target = targets.load(target)
        cells = target_cells(cells, target)
        for backend, kind in {(c.backend.name, c.server.app): (c.backend, c.server.app) for c in cells}.values():
            server_module.check_target_imports(target, backend, cells[0].params, kind)
    if search:
        capacity.refuse_unsupported(cells)
    app_health = None
    if host:
        if not os.environ.get("BENCH_DATABASE_URL"):
            raise UsageError(
                f"HOST={host} needs DATABASE_URL= too: the app's database, which the harness "
                "samples (pg_stat_activity) and reads the audit rows from"
            )
        app_health = server_module.fetch_health(host)
        if app_health["backend"] not in spec.backends:
            raise UsageError(
                f"HOST={host} reports backend {app_health['backend']!r}, not in matrix.toml: "
                f"set its BENCH_BACKEND to one of {', '.join(spec.backends)}"
            )
        served = app_health.get("server", matrix.DEFAULT_SERVER)  # an app from before there were servers: gevent
        if served not in spec.servers:
            raise UsageError(
                f"HOST={host} reports server {served!r}, not in matrix.toml: "
                f"set its BENCH_SERVER to one of {', '.join(spec.servers)}"
            )
        cells = external_cells(cells, spec.backends[app_health["backend"]], spec.servers[served])
    external = postgres.preflight()
    faults.refuse_unsupported(cells, own_cluster=external is None, own_server=not host)
    if external is not None:
        for cell in cells:
            matrix.check_pool_fits(
                cell.params, external.max_connections, cell.name, "BENCH_DATABASE_URL's max_connections"
            )
    if not target and matrix.OWN.env in {c.backend.env for c in cells}:
        raise UsageError(
            f"MATRIX={matrix_name} names backend {matrix.OWN.name!r}, a target's own: "
            "give TARGET=path/to/target.toml, or use a matrix of benchapp's backends"
        )
    pythons = {}  # each server environment the cells run in, built now: {its name: its python}
    for backend in {c.backend.name: c.backend for c in cells}.values():
        python = envs.python_for_target(target, backend, console) if target else envs.python_for(backend.env, console)
        pythons.setdefault(Path(python).parent.parent.name if target else backend.env, python)
    if any(_lacks_pgbouncer(c, host) for c in cells):
        console.print(f"[yellow]{pgbouncer.INSTALL_HINT}; its cells are skipped[/]")
    run_dir, run_id = runinfo.new_run_dir(out)  # the last check: it creates the directory
    info = {
        "format": runinfo.FORMAT,
        "run_id": run_id,
        "status": "running",
        "matrix": matrix_name,
        "matrix_description": spec.matrices[matrix_name].get("description", ""),
        "overrides": overrides or {},
        "repeat": repeat,
        "command": [postgres.redact(a) if a.startswith(("postgres://", "postgresql://")) else a for a in sys.argv],
        "git": runinfo.git_state(),
        "machine": runinfo.machine(),
        "packages": runinfo.versions(),
        "server_packages": {env: envs.freeze(python) for env, python in sorted(pythons.items())},
        "started_utc": runinfo.utc_now().isoformat(),
        "ended_utc": None,
        "database": None,
        "postgres_settings": {**postgres.THROWAWAY_SETTINGS, **postgres.LOG_SETTINGS}
        if external is None
        else "as configured on the external server",
        "app": {"controlled": True} if not host else {"controlled": False, "url": host, "healthz": app_health},
        "not_controlled": []
        if external is None and not host
        else [
            *(
                [
                    "PostgreSQL: BENCH_DATABASE_URL's server, neither started nor configured by the harness "
                    "(max_connections and the rest as found)"
                ]
                if external is not None
                else []
            ),
            *(
                [
                    f"the app at {host}: not started; its backend, pool limit and settings are what its /healthz "
                    "reports, not the matrix's; no server-side accounting log, so the pool peaks, waits and hold "
                    "times from it (peak_pool_*, pool_wait_p99_ms, conn_hold_*) are empty; the timeline "
                    "samples its /metrics"
                ]
                if host
                else []
            ),
        ],
        "kind": "capacity" if search else "bench",
        "locust_master": None if master is None else {"bind": f"{master.host}:{master.port}", "workers": "remote"},
        "target": None
        if not target
        else {
            "file": str(target.file),
            "project": str(target.project),
            "settings": target.settings,
            "wsgi": target.wsgi,
            "streams": {st.name: st.path for st in target.streams},
            "probe": target.probe,
        },
        "matrix_file": spec.raw,
        "cells": [
            {
                "cell": c.name,
                "repeat": c.repeat,
                "path": str(c.path),
                "params": vars(c.params),
                "backend": vars(c.backend),
            }
            for c in cells
        ],
    }
    runinfo.write_json(os.path.join(run_dir, "run.json"), info)
    summary_path = os.path.join(run_dir, "capacity.csv" if search else "summary.csv")
    write_rows = capacity.write_verdicts if search else summary.write
    rows = [_identity(run_id, c, "incomplete", target) for c in cells]
    write_rows(summary_path, rows)

    planned = [(capacity.planned_s(c.params) if search else c.params.duration_s) + CELL_OVERHEAD_S for c in cells]
    if master is not None:
        console.print(
            f"Locust's master listens on {master.host}:{master.port} for {cells[0].params.locust_workers} "
            f"workers per cell: on each load machine run  {master.worker_command()}"
        )
    console.print(
        f"[bold]{run_id}[/]: {len(cells)} cells of matrix {matrix_name!r}, about "
        f"{sum(planned) / 60:.1f} min; results in {os.path.relpath(run_dir)}"
    )
    label = harness.PHASE["name"] = None  # the cell running, and its phase
    try:
        with ExitStack() as stack, _progress(console) as progress:
            task = progress.add_task("starting PostgreSQL", total=sum(planned))
            cluster = db = external  # one throwaway cluster at a time, restarted when
            seeded = None  # a cell needs another max_connections
            for i, cell in enumerate(cells):
                label = f"cell {i + 1}/{len(cells)} {cell.name}"
                harness.PHASE["name"] = "cell start"
                if external is None and (
                    cluster is None
                    or cluster.max_connections != cell.params.db_max_connections
                    or cluster.proc is None
                    or cluster.proc.poll() is not None
                ):  # a failed restart
                    if cluster is not None:
                        cluster.stop()
                    cluster = postgres.Cluster(cell.params.db_max_connections, os.path.join(run_dir, "postgres.log"))
                    stack.callback(cluster.stop)
                    db, seeded = cluster.start(), None
                info["database"] = db.describe()
                if target and seeded is None:  # the project's own migrations and setup, once per cluster
                    harness.phase("seeding")
                    server_module.prepare_target(target, cell.params, db.app_url, os.path.join(run_dir, "prepare.log"))
                    seeded = "target"
                elif (
                    seeded != cell.params.seed_rows and not host and not target
                ):  # an app of its own is seeded by its owner
                    harness.phase("seeding")
                    prepare_database(cell.backend, cell.params, db.app_url, os.path.join(run_dir, "prepare.log"))
                    seeded = cell.params.seed_rows
                progress.update(task, description=label, completed=sum(planned[:i]))
                rows[i] = _run_cell(
                    cell,
                    db,
                    run_id,
                    run_dir,
                    progress,
                    task,
                    sum(planned[:i]),
                    host,
                    cluster=None if external is not None else cluster,
                    search_s=planned[i] if search else None,
                    target=target,
                    master=master,
                )
                write_rows(summary_path, rows)
                _report_cell(console, label, rows[i])
            label = None
        info["status"] = "complete"  # every cell ran; the report says so, once written
        info["ended_utc"] = runinfo.utc_now().isoformat()  # the cells' end: the report's, and run.json's
        harness.PHASE["name"] = "report"
        runinfo.write_json(os.path.join(run_dir, "run.json"), info)
        tables = Console(width=None if sys.stdout.isatty() else 200)
        if search:
            capacity.print_table(rows, tables)
        else:
            print_table(rows, tables)
            print_headline(rows, tables)
        console.print(f"{'capacity' if search else 'summary'}: {os.path.relpath(summary_path)}")
        try:
            console.print(
                f"{'plots' if search else 'report'}:  "
                + ", ".join(
                    os.path.relpath(f)
                    for f in (capacity.plot_run(run_dir, rows) if search else [html_report.write(run_dir)])
                )
            )
        except Exception as exc:  # the run's results stand without their report
            what = "the capacity plots" if search else "report.html"
            console.print(f"[red]{what} not written: {_one_line(exc)}[/] (make report RUN={run_dir} retries)")
    except KeyboardInterrupt:
        info["status"] = "incomplete"
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
        write_rows(summary_path, rows)
    return run_dir, rows


HEALTH_FILE = "healthz.json"  # a cell's server as its health URL described it once started


def _identity(run_id, cell, status, target=None):
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
    }
    if target:  # its streams' shape is its own, and so is its pool unless a matrix backend is substituted in
        row.update(
            target=target.name,
            stream_path=target.stream(cell.variant).path,
            stream_design_ms="",
            pool_max=p.pool_max if cell.backend is not matrix.OWN else "",
        )
    return row


def target_cells(cells, target):
    """One cell per stream of the target and backend, scenario and repeat of the matrix: the
    backend its own settings name ("own"), or one of matrix.toml's substituted in."""
    out = {}
    for c in cells:
        for stream in target.streams:
            out.setdefault(
                (c.server.name, c.backend.name, stream.name, c.scenario, c.repeat),
                dataclasses.replace(c, variant=stream.name),
            )
    return list(out.values())


def external_cells(cells, backend, server):
    """One cell per variant, scenario and repeat, with the backend and server the external app reports."""
    out = {}
    for c in cells:
        out.setdefault((c.variant, c.scenario, c.repeat), dataclasses.replace(c, backend=backend, server=server))
    return list(out.values())


def _run_cell(
    cell,
    db,
    run_id,
    run_dir,
    progress,
    task,
    done_before,
    host=None,
    cluster=None,
    search_s=None,
    target=None,
    master=None,
):
    """One cell: a fixed load for duration_s, or (search_s: its longest time) make capacity's
    step load."""
    cell_dir = os.path.join(run_dir, cell.path)
    os.makedirs(cell_dir)
    row = _identity(run_id, cell, "incomplete", target)
    row["db_limit"] = db.max_connections
    if _lacks_pgbouncer(cell, host):
        row.update(status="skipped", error=pgbouncer.INSTALL_HINT)
        return row
    measure = None
    locust = None
    try:
        with ExitStack() as stack:
            if host:
                server = stack.enter_context(server_module.ExternalApp(host, cell.params))
                now = (server.health.get("backend"), server.health.get("server", matrix.DEFAULT_SERVER))
                if now != (cell.backend.name, cell.server.name):
                    raise CellError(
                        f"HOST={host} now reports backend {now[0]!r} under server {now[1]!r}, not "
                        f"{cell.backend.name!r} under {cell.server.name!r} as when the run began"
                    )
            else:
                app_db = pgbouncer.front(stack, cell.backend, cell.params, db, os.path.join(cell_dir, "pgbouncer.log"))
                args = (
                    cell.backend,
                    cell.params,
                    app_db.app_url,
                    postgres.free_port(),
                    os.path.join(cell_dir, "server.log"),
                )
                server = stack.enter_context(
                    server_module.TargetServer(target, *args, accounting_dir=cell_dir, server=cell.server)
                    if target
                    else Server(*args, accounting_dir=cell_dir, server=cell.server)
                )
            stream = target.stream(cell.variant) if target else None
            server.verify(stream or cell.variant)
            # what answered: the backend, its engine and driver, its pool limit (a target's own, or substituted)
            runinfo.write_json(os.path.join(cell_dir, HEALTH_FILE), server.health)
            paths = {} if not target else {"stream_path": stream.path, "probe_path": target.probe}
            if target:  # what the summary, the plots and the capacity judge read of the cell
                routes = server.routes(stream.path, target.probe)
                runinfo.write_json(
                    os.path.join(cell_dir, summary.ROUTES_FILE),
                    {**dict(zip(("stream", "probe"), routes, strict=True)), **paths},
                )
            sampler = (
                None
                if not cell.params.instrument
                else stack.enter_context(
                    Sampler(
                        os.path.join(cell_dir, "timeline.csv"),
                        db.admin_url,
                        db.app_user,
                        db.app_db,
                        server.metrics_base,
                        pooler_url="" if host else app_db.pooler_console,
                        # the pool's timeline comes from the accounting log, exactly: /metrics
                        # once a second during the load; every sample with no log (HOST=)
                        metrics_every=1 if host else METRICS_EVERY,
                    )
                )
            )
            start = time.time()
            shape = (
                None
                if search_s is None
                else [*capacity.shape_options(cell.params), "--steps-file", os.path.join(cell_dir, capacity.STEPS_FILE)]
            )
            locust = procs.spawn(
                locust_command(cell, server.url, cell_dir, shape, master=master, **paths),
                os.path.join(cell_dir, "locust.log"),
            )
            harness.phase("load")
            stack.enter_context(
                cpu.CpuSampler(
                    os.path.join(cell_dir, cpu.FILE),
                    {
                        # the load's CPU only where all of Locust runs: not with workers elsewhere (empty, not the master's)
                        **({"loadgen": locust.pid} if master is None else {}),
                        **({"server": server.proc.pid} if not host else {}),
                        **({"postgres": cluster.proc.pid} if cluster is not None else {}),
                    },
                )
            )
            injector = faults.Injector(cell, cell_dir, cluster, server)
            # the run, then probes settling and streams ending (each up to the grace period)
            planned = search_s or cell.params.duration_s + CELL_OVERHEAD_S
            limit = planned + 2 * cell.params.grace_s + 60 + (WORKERS_WAIT_S if master else 0)
            while locust.poll() is None:
                elapsed = time.time() - start
                progress.update(task, completed=done_before + min(elapsed, planned))
                if elapsed > limit:
                    raise CellError(f"Locust still running {limit:.0f}s after start; stopped it")
                injector.poll()
                time.sleep(0.1)
            # distributed: the workers are the master's children, and write their logs as they end
            if not procs.wait_group_exit(locust.pid, timeout=cell.params.grace_s + 10):
                raise CellError("Locust's worker processes did not end after its master")
            load_ended = time.time()
            window, grace_end = test_window(cell_dir, fallback=(start, load_ended))
            injector.finish(window[0])
            pool_capacity = _pool_capacity(cell, server.health.get("pool_limit"))
            requests = summary.read_requests(cell_dir)  # once: for the audit and the summary
            if search_s is not None:
                measure = functools.partial(
                    capacity.measure,
                    cell_dir,
                    cell,
                    pool_capacity,
                    requests,
                    postgres_log=os.path.join(run_dir, "postgres.log"),
                    app_user=db.app_user,
                )
            else:
                measure = functools.partial(
                    summary.summarize,
                    cell_dir,
                    variant=cell.variant,
                    window=window,
                    grace_end=grace_end,
                    pool_capacity=pool_capacity,
                    postgres_log=os.path.join(run_dir, "postgres.log"),
                    app_user=db.app_user,
                    requests=requests,
                )
            if locust.returncode != 0:
                raise CellError(
                    f"Locust exited with {locust.returncode}:\n{procs.tail(os.path.join(cell_dir, 'locust.log'))}"
                )
            procs.forget(locust)
            locust = None
            harness.phase("leak check")
            if sampler is None:  # instrument=false: nothing to check against
                leaks = {"leaked_conns": "", "settle_s": ""}
            else:
                sampler.metrics_every = 1  # the leak check reads the server's gauges at every sample
                leaks = leak_check(sampler, pool_capacity or 0, cell.params.settle_s, since=load_ended)
            if not target:  # a target has no audit table: lost_writes stays empty, not 0
                audit.export(cell_dir, db.admin_url, requests, f"/stream/{cell.variant}/")
        row.update(measure())
        row.update(leaks)
        row["status"] = "ok"
        if sampler is not None and sampler.errors:
            row["error"] = f"{sampler.errors} timeline samples incomplete ({_one_line(sampler.error)})"
        if search_s is not None:
            capacity.write_verdicts(os.path.join(cell_dir, "capacity.csv"), [row])
    except (CellError, psycopg2.Error, OSError, subprocess.SubprocessError) as exc:
        row["status"] = "failed"
        row["error"] = _one_line(exc)
        with open(os.path.join(cell_dir, "error.txt"), "w") as f:
            f.write(str(exc) + "\n")
    except BaseException:
        if measure is not None:
            row.update(measure())
        raise
    finally:
        procs.stop(locust, signal.SIGTERM, timeout=5)
    return row


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


def _lacks_pgbouncer(cell, host):
    """The cell needs a PgBouncer the harness would start, and there is none: it is skipped."""
    return not host and pgbouncer.missing_for(cell.backend)


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


def _report_cell(console, label, row):
    if row["status"] != "ok":
        colour = "yellow" if row["status"] == "skipped" else "red"
        console.print(f"{label}: [{colour}]{row['status']}[/] {row.get('error', '')}")
        return
    row = {k: ("-" if v == "" else v) for k, v in row.items()}
    if "max_streams_ok" in row:
        console.print(capacity.cell_text(label, row))
        return
    console.print(
        f"{label}: ok; conn hold p50 {row['conn_hold_p50_ms']} ms, probe p99 {row['probe_p99_ms']} ms, "
        f"{row['probe_failures']}/{row['probe_requests']} probes failed, "
        f"peak in use {row['peak_pool_in_use']}, peak waiting {row['peak_pool_waiting']}, "
        f"PG backends {row['peak_db_backends']}/{row['db_limit']}, "
        f"lost writes {row['lost_writes']}/{row['writes_expected']}, leaked conns {row['leaked_conns']}"
        + _fault_text(row)
    )


def _fault_text(row):
    if row.get("fault", "-") == "-":
        return ""
    recovered = "never" if row["recovery_s"] == "-" else f"in {row['recovery_s']} s"
    return (
        f"; {row['fault']} at {row['fault_s']} s: {row['failures_after_fault']} failed after it, recovered {recovered}"
    )


def _progress(console):
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("elapsed"),
        TimeElapsedColumn(),
        TextColumn("remaining"),
        TimeRemainingColumn(),
        console=console,
    )


def print_headline(rows, console):
    """Each variant against hold of its backend and scenario (medians over repeats)."""
    table = Table(
        title="each variant against hold (medians over repeats; in brackets the ratio to hold, ÷N: N times less)"
    )
    table.add_column("cell", no_wrap=True)
    for _, title in compare.HEADLINE:
        table.add_column(title, justify="right")
    for cell, values in compare.headline(rows):
        table.add_row(
            compare.label(cell, values),
            *(
                side.text() + (f" ({compare.format_ratio(r)})" if r is not None else "")
                for side, r in (values[m] for m, _ in compare.HEADLINE)
            ),
        )
    console.print(table)


def print_table(rows, console):
    table = Table(title="summary (every column: summary.csv)")
    columns = TABLE_COLUMNS + (FAULT_COLUMNS if any(r.get("fault") for r in rows) else [])
    for _, title in columns:
        if title == "cell":  # never cut: it says which row is which
            table.add_column(title, no_wrap=True, min_width=max(len(r["cell"]) for r in rows))
        else:
            table.add_column(title, justify="right", overflow="fold")
    for row in rows:
        table.add_row(*(str(row.get(key, "")) for key, _ in columns))
    console.print(table)
