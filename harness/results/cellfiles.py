"""The files of a run's cells, read back: any CSV, Locust's requests, the app's accounting
events, a target cell's routes. summary.py computes a cell's columns from them; the plots, the
tables, the capacity search and the comparisons read them too."""

import csv
import glob
import os

from harness.results import runinfo
from stream_release import event_log

AUDIT_FILE = "audit.csv"  # written by harness/results/audit.py


def read(path):
    """The rows of a CSV file as dicts; none if the file is not there."""
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def read_requests(cell_dir):
    """Every request of a cell: requests.csv, or one requests-worker<n>.csv per Locust worker
    process when Locust ran distributed."""
    paths = sorted(
        glob.glob(os.path.join(cell_dir, "requests.csv")) + glob.glob(os.path.join(cell_dir, "requests-*.csv"))
    )
    return [{**row, "response_time_ms": float(row["response_time_ms"])} for path in paths for row in read(path)]


def read_accounting(cell_dir, killed=None):
    """Every accounting event of the cell in time order. `killed`: (worker pid, unix s) of a
    worker killed then (worker-kill): what it had checked out or was waiting for ended with
    it, so it gets a `return` and an `acquire_error` ("worker killed") at that moment."""
    events = [
        {**row, "unix_s": float(row["unix_s"]), "worker": os.path.basename(path)}
        for path in glob.glob(os.path.join(cell_dir, "accounting-*.csv"))
        for row in event_log.read(path)
    ]
    events.sort(key=lambda e: e["unix_s"])
    if killed:
        events = _end_with_worker(events, f"accounting-{killed[0]}.csv", killed[1])
    return events


def _end_with_worker(events, worker, at):
    """Close the checkouts and waits of `worker` still open at `at`, as of `at`."""
    checked_out, waiting = {}, {}  # backend pid -> checkout time; acquire id -> acquire event
    for e in events:
        if e["worker"] != worker or e["unix_s"] > at:
            continue
        if e["event"] == "acquire":
            waiting[e["acquire_id"]] = e
        elif e["event"] in ("checkout", "acquire_error"):
            waiting.pop(e["acquire_id"], None)
            if e["event"] == "checkout":
                checked_out[e["backend_pid"] or e["acquire_id"]] = (e["unix_s"], e["route"])
        elif e["event"] == "handover" and e["backend_pid"] in checked_out:
            checked_out[e["backend_pid"]] = (e["unix_s"], e["route"])
        elif e["event"] == "return":
            key = e["backend_pid"] if e["backend_pid"] in checked_out else next(iter(checked_out), None)
            checked_out.pop(key, None)
    ended = [
        {
            "event": "return",
            "unix_s": at,
            "route": route,
            "wait_ms": "",
            "hold_ms": f"{(at - t) * 1000:.3f}",
            "backend_pid": pid,
            "acquire_id": "",
            "detail": "worker killed",
            "worker": worker,
        }
        for pid, (t, route) in checked_out.items()
    ]
    ended += [
        {
            "event": "acquire_error",
            "unix_s": at,
            "route": e["route"],
            "wait_ms": f"{(at - e['unix_s']) * 1000:.3f}",
            "hold_ms": "",
            "backend_pid": "",
            "acquire_id": e["acquire_id"],
            "detail": "worker killed",
            "worker": worker,
        }
        for e in waiting.values()
    ]
    kept = [e for e in events if not (e["worker"] == worker and e["unix_s"] > at)]
    return sorted(kept + ended, key=lambda e: e["unix_s"])


ROUTES_FILE = "routes.json"  # a target's cell: its stream's and probe's routes and paths (harness/runs/bench.py)


def routes(cell_dir) -> tuple:
    """(stream route, probe route): what the accounting labels the cell's stream's and probe's
    checkouts with; benchapp's URL names unless the cell says otherwise."""
    found = runinfo.read_json(os.path.join(cell_dir, ROUTES_FILE))
    return found.get("stream", "stream"), found.get("probe", "probe")


def probe_path(cell_dir) -> str:
    """The path the cell's probe requested (and Locust names its requests by)."""
    return runinfo.read_json(os.path.join(cell_dir, ROUTES_FILE)).get("probe_path", "/probe/")


def stream_path(cell_dir) -> str | None:
    """A target's stream path (Locust's name for its requests); None for benchapp's cells."""
    return runinfo.read_json(os.path.join(cell_dir, ROUTES_FILE)).get("stream_path")
