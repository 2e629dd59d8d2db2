"""Faults injected mid-cell, and what they did.

A scenario's `fault` happens `fault_at_s` after the Locust test starts:

- `pg-restart`: the harness restarts the throwaway PostgreSQL (a fast shutdown, then the same
  cluster on the same port: postgres.Cluster.restart);
- `worker-kill`: the harness sends SIGKILL to the gunicorn worker (its arbiter starts another);
- `client-abort`: every slow client streaming then disconnects mid-stream
  (locustfiles/slow_stream.py --abort-at-s) and starts a new stream.

What was done, and when, goes to fault.json in the cell's directory. From the requests the
summary then counts the failures from the fault on, and `recovery_s`: seconds from the fault
until the first probe answered after which no probe failed (empty: no such probe before the
load ended, i.e. not recovered).
"""

import collections
import json
import os
import time

import psutil

from harness import CellError, UsageError
from harness.measure.load import test_start

FILE = "fault.json"


def refuse_unsupported(cells, own_cluster: bool, own_server: bool):
    """A fault needs the part it breaks to be the harness's own: UsageError otherwise."""
    for cell in cells:
        fault = cell.params.fault
        if fault == "pg-restart" and not own_cluster:
            raise UsageError(
                f"fault=pg-restart in {cell.name} restarts the throwaway PostgreSQL, and "
                "DATABASE_URL names another server: unset DATABASE_URL or run another scenario"
            )
        if fault == "worker-kill" and not own_server:
            raise UsageError(
                f"fault=worker-kill in {cell.name} kills a worker of the app the harness starts, "
                "and HOST names another app: drop HOST or run another scenario"
            )


class Injector:
    """Polled while the cell's load runs: once the test has run `fault_at_s`, injects the
    harness's part of the fault (pg-restart, worker-kill) and writes fault.json; finish()
    records the fault the clients make themselves (client-abort)."""

    def __init__(self, cell, cell_dir, cluster=None, server=None):
        self.params, self.cell_dir = cell.params, cell_dir
        self.cluster, self.server = cluster, server
        self.done = self.params.fault in ("none", "client-abort")  # the client aborts by itself

    def poll(self):
        if self.done:
            return
        test_start_unix = test_start(self.cell_dir)
        if test_start_unix is None or time.time() < test_start_unix + self.params.fault_at_s:
            return
        self.done = True
        record = {"fault": self.params.fault, "test_start_unix": test_start_unix, "unix_s": time.time()}
        if self.params.fault == "pg-restart":
            self.cluster.restart()
            record["detail"] = f"PostgreSQL down and up again in {time.time() - record['unix_s']:.2f} s"
        elif self.params.fault == "worker-kill":
            record["worker_pid"] = kill_worker(self.server.proc.pid)
            record["detail"] = f"SIGKILL to gunicorn worker {record['worker_pid']}"
        write(self.cell_dir, record)

    def finish(self, test_start_unix):
        """After the load: the client's fault happened at the test's start plus fault_at_s
        (the Locust users' timer starts with the test)."""
        if self.params.fault == "client-abort":
            write(
                self.cell_dir,
                {
                    "fault": "client-abort",
                    "test_start_unix": test_start_unix,
                    "unix_s": test_start_unix + self.params.fault_at_s,
                    "detail": "every stream in progress disconnected",
                },
            )


def kill_worker(arbiter_pid: int) -> int:
    """SIGKILL to the oldest worker of the gunicorn arbiter `arbiter_pid`; its pid."""
    try:
        workers = psutil.Process(arbiter_pid).children()
        victim = min(workers, key=lambda p: p.create_time())
        victim.kill()
    except (psutil.Error, ValueError) as exc:
        raise CellError(f"worker-kill: no gunicorn worker to kill ({exc!r})") from None
    return victim.pid


def write(cell_dir, record):
    with open(os.path.join(cell_dir, FILE), "w") as f:
        json.dump(record, f, indent=1)


def read(cell_dir) -> dict | None:
    try:
        with open(os.path.join(cell_dir, FILE)) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def _end(row) -> float:
    return float(row["start_unix_s"]) + row["response_time_ms"] / 1000


def after_fault(requests, fault_unix, stream_name, probe_name="/probe/") -> dict:
    """failures_after_fault (failed probes and streams ending at or after the fault),
    recovery_s, and the most frequent failure message with its count."""
    counted = [
        r
        for r in requests
        if r["start_unix_s"]
        and _end(r) >= fault_unix
        and (
            (r["request_type"] == "GET" and r["name"] == probe_name)
            or (r["request_type"] == "STREAM" and r["name"] == stream_name)
        )
    ]
    failed = [r for r in counted if r["failure"]]
    probes = [r for r in counted if r["request_type"] == "GET"]
    last_failure = max((_end(r) for r in probes if r["failure"]), default=fault_unix)
    answered = [_end(r) for r in probes if not r["failure"] and _end(r) > last_failure]
    messages = collections.Counter(r["failure"] for r in failed)
    top = messages.most_common(1)
    return {
        "failures_after_fault": len(failed),
        "recovery_s": round(min(answered) - fault_unix, 3) if answered else "",
        "fault_failure": f"{top[0][1]}x {top[0][0][:160]}" if top else "",
    }
