"""One summary.csv row per cell, computed from the cell's raw files:

- requests.csv (Locust, every request; requests-worker<n>.csv per worker when
  distributed): stream and probe counts and latencies;
- accounting-*.csv (the server, every checkout and return): pool peaks, waits, hold times;
- timeline.csv (the sampler, pg_stat_activity): PostgreSQL backends;
- audit.csv (harness/results/audit.py, from PostgreSQL): the audit rows of the streams answered 200;
- fault.json (harness/measure/faults.py): the fault injected, if any, and when.

Only server events and samples inside the measured window (Locust's test start to the
moment it began stopping) count; every request Locust recorded counts. A wait for a connection
still going at the window's end counts with its length so far (a lower bound, flagged by
pool_waiting_at_end); streams still going when Locust stopped are counted apart
(streams_cut_at_stop, streams_waiting_at_stop), neither completed nor failed. Percentiles are
exact, nearest-rank, over every sample: a failed probe counts at the time it failed.
Empty means "no such event", never zero.
"""

import csv
import math
import os
from dataclasses import dataclass

from harness.measure import cpu, faults
from harness.results import runinfo
from harness.results.cellfiles import AUDIT_FILE, probe_path, read, read_accounting, read_requests, routes, stream_path
from harness.stack import pglog

# which cell a row is, in every run's results file (summary.csv, capacity.csv)
IDENTITY = ["run_id", "cell", "backend", "variant", "scenario", "repeat", "status"]
COLUMNS = [
    *IDENTITY,
    "streams",
    "pool_max",
    "duration_s",
    "streams_completed",
    "stream_failures",
    "stream_ttfb_p50_ms",
    "stream_ttfb_p99_ms",
    "stream_total_p50_ms",
    "probe_requests",
    "probe_failures",
    "probe_p50_ms",
    "probe_p95_ms",
    "probe_p99_ms",
    "probe_max_ms",
    "peak_pool_in_use",
    "peak_pool_waiting",
    "pool_wait_p99_ms",
    "conn_hold_p50_ms",
    "peak_db_backends",
    "db_errors",
    "db_limit",
    "overshoot",
    "pool_timeouts",
    "too_many_clients",
    "hung_requests",
    "conn_opened",
    # more, after the required ones
    "stream_design_ms",
    "streams_cut_at_stop",
    "streams_waiting_at_stop",
    "stream_wait_at_stop_max_ms",
    "stream_ttfb_max_ms",
    "stream_body_p50_ms",
    "conn_hold_max_ms",
    "probe_wait_p99_ms",
    "pool_waiting_at_end",
    "measured_s",
    "timeline_samples",
    "error",
    # streams answered 200 whose view's audit row is not in PostgreSQL, of writes_expected
    "lost_writes",
    "writes_expected",
    # the leak check after the load (harness/runs/bench.py leak_check): connections not back
    # settle_s after the last client left, and how long they took
    "leaked_conns",
    "settle_s",
    # the fault (harness/measure/faults.py), seconds after the load started; failed probes and
    # streams from then on; seconds until probes answered again for good; the commonest failure
    "fault",
    "fault_s",
    "failures_after_fault",
    "recovery_s",
    "fault_failure",
    "streams_aborted",
    # probes answered without failure per second of the measured time; the cores (CPU seconds per
    # second) the load generator, the server and PostgreSQL used then (harness/measure/cpu.py)
    "probe_ok_per_s",
    "loadgen_cores",
    "server_cores",
    "postgres_cores",
    "instrument",
    # streams of the load whose body started sending with a connection checked out outside an
    # atomic block (django-stream-release's detector; every one the server ended, late ones too)
    "streams_pinned",
    # make bench SET=release_all_streams=true: django-stream-release's switch released every stream
    # it could; streams_pinned then counts those it could not (a cursor still read, an atomic block)
    "release_all_streams",
    # make bench TARGET=...: the project's name and the stream's path (empty for benchapp)
    "target",
    "stream_path",
    # how the app was served (matrix.toml's [servers]); empty in runs from before there were servers: gevent
    "server",
    # the most resident memory the server's processes (arbiter and workers) held together at a
    # 1-s sample of the measured time, MiB; pages they share counted in each (harness/measure/cpu.py)
    "server_rss_peak_mib",
    # the median time from a stream's request to its status line and headers, streams answered
    # (Locust's own entry), ms: a server may send them at once or only with the first body bytes
    "stream_headers_p50_ms",
    # where peak_db_backends comes from: "postgres log" (the throwaway cluster's, exact) or
    # "sampled" (pg_stat_activity at 10 Hz: an external server); the sampler's peak beside it
    "db_backends_from",
    "peak_db_backends_sampled",
    # PgBouncer's SHOW POOLS, sampled with the timeline (backend pgbouncer; empty otherwise): the
    # most clients waiting for a server connection, the most server connections linked to
    # clients, and the longest wait of a waiting client seen (ms)
    "peak_bouncer_waiting",
    "peak_bouncer_server_active",
    "bouncer_maxwait_max_ms",
    # client-abort: the connections streams held when their clients left, and the longest time
    # from then until one came back (its return, or its stream's body's end), ms; empty if one
    # never did, or if no client left (streams still waiting for their headers stay)
    "abort_conns_held",
    "abort_conns_back_max_ms",
    # the part of server_cores in the kernel (system calls, page faults: the system CPU time of
    # its processes); empty in runs from before it was sampled (harness/measure/cpu.py)
    "server_system_cores",
]


def percentile(values, q):
    """Nearest-rank percentile: the smallest value with at least q% of values at or below."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _peak(values, digits=0):
    """The highest of sampled values ("" without any): a whole number unless `digits` say."""
    if not values:
        return ""
    return round(max(values), digits) if digits else int(max(values))


def _ms(value):
    return "" if value is None else round(value, 1)


def stream_holds(events, start, end, route="stream"):
    """How long each streaming request held its connection while it served (ms), joined per
    stream through the detector's `pinned_stream` events and the connections' backend pids:

    - a stream whose body started with a connection checked out: the hold over its body (from
      the checkout, or the request's start for a connection kept from an earlier one, to the
      body's end or the connection's return);
    - any other checkout of the route: checkout to return;

    each when it began in [start, end], however late it ended: a stream as long as the window
    gives its connection back after it, and leaving it out would leave the worst view blank.

    A pinned stream's connection also has a `return` (at close, when the garbage collector took
    a persistent one, or mid-body): the same hold, not another, so it is left out. A persistent
    connection never returned in the cell still counts, by its stream's body."""
    holds = {}  # index in events -> hold ms
    due = {}  # (worker, backend pid) -> a pinned stream's connection whose return is still to come
    last_return = {}  # (worker, backend pid) -> index of its latest return counted
    for i, e in enumerate(events):
        kind = e["event"]
        if kind == "handover" and e["detail"] == route:
            kind = "return"  # a kept connection passed to the next request: the stream's hold ends here
        elif e["route"] != route or kind not in ("pinned_stream", "return"):
            continue
        key = (e["worker"], e["backend_pid"])
        if kind == "pinned_stream":
            if e["detail"].endswith(" given back"):  # its return came before: that one is this hold
                holds.pop(last_return.pop(key, None), None)
            else:
                due[key] = True
            if _began_in(e, start, end):
                holds[i] = float(e["hold_ms"])
        elif due.pop(key, False):
            continue  # the return of a pinned stream's connection (or of several, kept across them)
        else:
            last_return[key] = i
            if _began_in(e, start, end):
                holds[i] = float(e["hold_ms"])
    return list(holds.values())


def _began_in(event, start, end) -> bool:
    """The hold the event ends began in [start, end]."""
    return start <= event["unix_s"] - float(event["hold_ms"]) / 1000 <= end


def pool_series(events):
    """[(unix s, connections in use, requests waiting)] after every acquire, checkout, error and
    return: the server's pool replayed exactly (pool_peaks, the timeline plots)."""
    in_use = waiting = 0
    series = []
    for e in events:
        kind = e["event"]
        if kind == "acquire":
            waiting += 1
        elif kind == "checkout":
            waiting -= 1
            in_use += 1
        elif kind == "acquire_error":
            waiting -= 1
        elif kind == "return":
            in_use -= 1
        else:
            continue
        series.append((e["unix_s"], in_use, waiting))
    return series


def pool_peaks(events, start, end):
    """Exact peaks of connections in use and of waiters within [start, end], by replaying
    every acquire, checkout, error and return in time order; what was in use or waiting when
    the window opened counts too."""
    peak_in_use = peak_waiting = 0
    for t, in_use, waiting in pool_series(events):
        if t > end:
            break
        if t < start:
            peak_in_use, peak_waiting = in_use, waiting  # the state the window opens with
        else:
            peak_in_use, peak_waiting = max(peak_in_use, in_use), max(peak_waiting, waiting)
    return peak_in_use, peak_waiting


def acquire_waits(events, start, end, until=None):
    """[(route, wait_ms, still_waiting)] for every wait for a connection that began inside
    [start, end]: finished waits at their length; waits still going at `until` (default: end)
    at their length so far, flagged, since leaving them out would hide the longest waits."""
    until = end if until is None else until
    begun, finished = {}, {}
    for e in events:
        key = (e["worker"], e["acquire_id"])
        if e["event"] == "acquire":
            begun[key] = (e["unix_s"], e["route"])
        elif e["event"] in ("checkout", "acquire_error"):
            finished[key] = (e["unix_s"], float(e["wait_ms"]))
    waits = []
    for key, (t0, route) in begun.items():
        if not start <= t0 <= end:
            continue
        if key in finished and finished[key][0] <= until:
            waits.append((route, finished[key][1], False))
        else:
            waits.append((route, (until - t0) * 1000, True))
    return waits


def back_after_abort(events, abort_unix, route="stream"):
    """The connections the stream's route held when the clients aborted: how many, and the
    longest time from the abort until each came back (ms): its return, or for a persistent
    connection the end of its stream's body (its `pinned_stream` event), whichever came first;
    None for one that never did within the log."""

    def back(e):  # the end of the route's hold of a connection
        return e["event"] in ("return", "pinned_stream") or (e["event"] == "handover" and e["detail"] == route)

    held = {}  # (worker, backend pid) -> checked out and not back before the abort
    for e in events:
        if e["unix_s"] > abort_unix:
            break
        key = (e["worker"], e["backend_pid"])
        if back(e):
            held.pop(key, None)
        if e["event"] in ("checkout", "handover") and e["route"] == route:
            held[key] = True
    delays = {}
    for e in events:
        key = (e["worker"], e["backend_pid"])
        if e["unix_s"] > abort_unix and key in held and key not in delays and back(e):
            delays[key] = (e["unix_s"] - abort_unix) * 1000
    if not held:
        return 0, None
    return len(held), None if len(delays) < len(held) else max(delays.values())


def answered_ids(requests, stream_name) -> set[str]:
    """X-Request-Ids of the streams that got a 200: each had its view write an audit row."""
    return {
        r["request_id"]
        for r in requests
        if r["name"] == stream_name and r.get("status") == "200" and r.get("request_id")
    }


TOO_MANY_CLIENTS = ("too many clients", "remaining connection slots are reserved", "no more connections allowed")
# What a waiter gets when its pool's checkout timeout runs out: psycopg_pool's PoolTimeout (Django's
# native pool; geventpool-bounded's is named the same), SQLAlchemy's TimeoutError (dj_db_conn_pool)
POOL_TIMEOUTS = ("PoolTimeout: ", "TimeoutError: QueuePool limit of size")


@dataclass(frozen=True)
class CellContext:
    """What a cell's raw files are measured against: its test window (start, end); when its
    load generator had finished (`grace_end`: the probes settled); the pool's capacity
    (pool_max x workers); PostgreSQL's log and the app's role in it."""

    window: tuple[float, float]
    grace_end: float | None = None
    pool_capacity: int | None = None
    postgres_log: str | None = None
    app_user: str = "bench"


def summarize(cell_dir, variant, context: CellContext, requests=None):
    """The measured columns of one cell (everything but identity and status), by group: the
    streams, the probes, the pool (from the accounting log), the database, the CPU, the writes
    and the fault. A target's cell says its stream's and probe's paths and routes in its
    routes.json. `requests`: Locust's, when already read."""
    window, grace_end = context.window, context.grace_end
    start, end = window
    stream_name = stream_path(cell_dir) or f"/stream/{variant}/"
    probe_name = probe_path(cell_dir)
    stream_route, probe_route = routes(cell_dir)
    requests = read_requests(cell_dir) if requests is None else requests
    fault = faults.read(cell_dir)
    events = read_accounting(
        cell_dir, killed=(fault["worker_pid"], fault["unix_s"]) if fault and "worker_pid" in fault else None
    )
    streams = _stream_columns(requests, stream_name)
    database = _database_columns(cell_dir, window, context.postgres_log, context.app_user, context.pool_capacity)
    return {
        **streams,
        **_probe_columns(requests, probe_name, window),
        **_pool_columns(events, window, grace_end, stream_route, probe_route),
        **database,
        **_cpu_columns(cell_dir, window),
        **_write_columns(cell_dir, requests, stream_name),
        # only when a client did leave (one still waiting for its headers cannot: daphne's buffered bodies)
        **(
            _abort_columns(events, fault["unix_s"], stream_route)
            if fault and fault["fault"] == "client-abort" and streams["streams_aborted"]
            else {}
        ),
        **(
            {
                "fault": fault["fault"],
                "fault_s": round(fault["unix_s"] - start, 2),
                **faults.after_fault(requests, fault["unix_s"], stream_name, probe_name),
            }
            if fault
            else {}
        ),
    }


def _stream_columns(requests, stream_name) -> dict:
    """The streams as the load generator saw them: done, failed, when their headers, first byte
    and last byte came, and those the load's end cut or found waiting."""
    ttfb = [r["response_time_ms"] for r in requests if r["request_type"] == "TTFB" and r["name"] == stream_name]
    # Locust's own entry of a stream: its status line and headers, before any of the body
    headers = [
        r["response_time_ms"]
        for r in requests
        if r["request_type"] == "GET" and r["name"] == stream_name and not r["failure"]
    ]
    streams = [r for r in requests if r["request_type"] == "STREAM" and r["name"] == stream_name]
    ok_streams = [r["response_time_ms"] for r in streams if not r["failure"]]
    # per whole stream, from its first byte to its last: near 0 when the server sent the body at once
    first_byte = {
        r["request_id"]: r["response_time_ms"]
        for r in requests
        if r["request_type"] == "TTFB" and r["name"] == stream_name and r["request_id"]
    }
    bodies = [
        r["response_time_ms"] - first_byte[r["request_id"]]
        for r in streams
        if not r["failure"] and r["request_id"] in first_byte
    ]
    unfinished = [r for r in requests if r["request_type"] == "UNFINISHED" and r["name"] == stream_name]
    never_started = [r for r in unfinished if r["response_length"] in ("", "0")]
    return {
        "streams_completed": len(ok_streams),
        "stream_failures": len(streams) - len(ok_streams),
        "stream_ttfb_p50_ms": _ms(percentile(ttfb, 50)),
        "stream_ttfb_p99_ms": _ms(percentile(ttfb, 99)),
        "stream_total_p50_ms": _ms(percentile(ok_streams, 50)),
        "stream_body_p50_ms": _ms(percentile(bodies, 50)),
        "stream_headers_p50_ms": _ms(percentile(headers, 50)),
        "streams_cut_at_stop": len(unfinished) - len(never_started),
        "streams_waiting_at_stop": len(never_started),
        "stream_wait_at_stop_max_ms": _ms(max((r["response_time_ms"] for r in never_started), default=None)),
        "stream_ttfb_max_ms": _ms(max(ttfb, default=None)),
        "streams_aborted": sum(1 for r in requests if r["request_type"] == "ABORTED" and r["name"] == stream_name),
    }


def _probe_columns(requests, probe_name, window) -> dict:
    start, end = window
    probes = [r for r in requests if r["request_type"] == "GET" and r["name"] == probe_name]
    probe_ms = [r["response_time_ms"] for r in probes]
    return {
        "probe_requests": len(probes),
        "probe_ok_per_s": round(sum(1 for r in probes if not r["failure"]) / (end - start), 2) if end > start else "",
        "probe_failures": sum(1 for r in probes if r["failure"]),
        "probe_p50_ms": _ms(percentile(probe_ms, 50)),
        "probe_p95_ms": _ms(percentile(probe_ms, 95)),
        "probe_p99_ms": _ms(percentile(probe_ms, 99)),
        "probe_max_ms": _ms(max(probe_ms, default=None)),
        "measured_s": round(end - start, 2),
    }


def _pool_columns(events, window, grace_end, stream_route, probe_route) -> dict:
    """From the app's accounting log: the pool's peaks and waits, the streams' holds, the
    errors of acquiring a connection (counted over the cell and its grace period, as the
    requests are), and the streams the detector saw pinned."""
    start, end = window
    all_waits = acquire_waits(events, start, end)
    holds = stream_holds(events, start, end, stream_route)
    peak_in_use, peak_waiting = pool_peaks(events, start, end) if events else (None, None)
    in_cell = [e for e in events if start <= e["unix_s"] <= (grace_end or end)]
    errors = [e for e in in_cell if e["event"] == "acquire_error"]
    hung = [still for _, _, still in acquire_waits(events, start, end, until=grace_end)] if grace_end else []
    return {
        "peak_pool_in_use": "" if peak_in_use is None else peak_in_use,
        "peak_pool_waiting": "" if peak_waiting is None else peak_waiting,
        "pool_wait_p99_ms": _ms(percentile([ms for _, ms, _ in all_waits], 99)),
        "probe_wait_p99_ms": _ms(percentile([ms for route, ms, _ in all_waits if route == probe_route], 99)),
        "pool_waiting_at_end": sum(1 for _, _, still in all_waits if still),
        "conn_hold_p50_ms": _ms(percentile(holds, 50)),
        "conn_hold_max_ms": _ms(max(holds, default=None)),
        "db_errors": sum(1 for e in in_cell if e["event"] == "db_error"),
        "pool_timeouts": sum(1 for e in errors if e["detail"].startswith(POOL_TIMEOUTS)),
        "too_many_clients": sum(1 for e in errors if any(t in e["detail"] for t in TOO_MANY_CLIENTS)),
        "hung_requests": sum(hung) if grace_end else "",
        # every stream of the load, however late it ended (the warm-up's came before the start)
        "streams_pinned": sum(
            1 for e in events if e["event"] == "pinned_stream" and e["route"] == stream_route and e["unix_s"] >= start
        )
        if events
        else "",
    }


def _database_columns(cell_dir, window, postgres_log, app_user, pool_capacity) -> dict:
    """PostgreSQL's side: its backends at their peak (from its log's sessions, else the
    sampler's timeline), the connections opened, PgBouncer's queue."""
    start, end = window
    timeline = [t for t in read(os.path.join(cell_dir, "timeline.csv")) if start <= float(t["unix_s"]) <= end]
    backends = [int(t["db_backends"]) for t in timeline if t["db_backends"] != ""]
    bouncer = {
        c: [float(t[c]) for t in timeline if t.get(c) not in (None, "")]
        for c in ("bouncer_cl_waiting", "bouncer_sv_active", "bouncer_maxwait_ms")
    }
    sampled_peak = max(backends, default=None)
    sessions = pglog.sessions(postgres_log, app_user)
    peak_backends = sampled_peak if sessions is None else pglog.peak(sessions, start, end)
    opened = None if sessions is None else pglog.opened(sessions, start, end)
    return {
        "peak_db_backends": "" if peak_backends is None else peak_backends,
        "peak_db_backends_sampled": "" if sampled_peak is None else sampled_peak,
        "peak_bouncer_waiting": _peak(bouncer["bouncer_cl_waiting"]),
        "peak_bouncer_server_active": _peak(bouncer["bouncer_sv_active"]),
        "bouncer_maxwait_max_ms": _peak(bouncer["bouncer_maxwait_ms"], 1),
        "db_backends_from": "" if peak_backends is None else "postgres log" if sessions is not None else "sampled",
        "overshoot": "" if peak_backends is None or pool_capacity is None else max(0, peak_backends - pool_capacity),
        "conn_opened": "" if opened is None else opened,
        "timeline_samples": len(timeline),
    }


def _cpu_columns(cell_dir, window) -> dict:
    start, end = window
    cpu_rows = cpu.read(cell_dir)
    system = cpu.cores(cpu_rows, "server", start, end, column="system_s")
    rss = cpu.peak_rss_mib(cpu_rows, "server", start, end)
    return {
        **{
            f"{name}_cores": "" if c is None else round(c, 3)
            for name in ("loadgen", "server", "postgres")
            for c in [cpu.cores(cpu_rows, name, start, end)]
        },
        "server_system_cores": "" if system is None else round(system, 3),
        "server_rss_peak_mib": "" if rss is None else round(rss),
    }


def _write_columns(cell_dir, requests, stream_name) -> dict:
    """The view's audit rows: streams answered 200 whose row is not in PostgreSQL."""
    if not os.path.exists(os.path.join(cell_dir, AUDIT_FILE)):
        return {"lost_writes": "", "writes_expected": ""}
    expected = answered_ids(requests, stream_name)
    lost = len(expected - {r["request_id"] for r in read(os.path.join(cell_dir, AUDIT_FILE))})
    return {"lost_writes": lost, "writes_expected": len(expected)}


def _abort_columns(events, abort_unix, route):
    held, back_ms = back_after_abort(events, abort_unix, route) if events else ("", None)
    return {"abort_conns_held": held, "abort_conns_back_max_ms": _ms(back_ms)}


def write(path, rows):
    """Write all rows so far; written to a temporary file first, so a reader never sees half."""
    with runinfo.replacing(path) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow({c: row.get(c, "") for c in COLUMNS})
