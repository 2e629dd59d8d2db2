"""The benchmark harness: reads matrix.toml, starts PostgreSQL and the server, runs Locust,
samples, and writes a run directory under results/."""

import os
import signal
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The phase a command is in, e.g. "warm-up": run.json says where an interrupted run stopped.
PHASE = {"name": None}
# Set when a command is interrupted while cells run side by side (harness/runs/bench.py): Ctrl-C reaches
# the main thread only, and each lane's waits stop at check_stop() as if interrupted themselves.
STOP = threading.Event()


def check_stop():
    if STOP.is_set():
        raise KeyboardInterrupt


def phase(name):
    """Enter phase `name` (its processes are started by now). With BENCH_HOLD_PHASE=name the
    command stops there for up to 60 s and says so on stderr: the interrupt tests signal it
    then, in each phase in turn."""
    PHASE["name"] = name
    if os.environ.get("BENCH_HOLD_PHASE") == name:
        print(f"holding in phase {name} (BENCH_HOLD_PHASE)", file=sys.stderr, flush=True)
        time.sleep(60)


class UsageError(Exception):
    """Bad input, found before anything starts: one line naming the parameter and the fix."""


class CellError(Exception):
    """A cell could not run (a server did not start, a check failed)."""


_stopping = []


def _interrupt(signum, frame):
    """The first Ctrl-C or SIGTERM unwinds like KeyboardInterrupt; later ones are noted but
    do not cut the cleanup short (that is what would leave processes behind)."""
    if _stopping:
        print("stopping: waiting for the started processes to end", file=sys.stderr, flush=True)
        return
    _stopping.append(signum)
    raise KeyboardInterrupt(f"signal {signum}")


def run_command(body) -> int:
    """Run a command's `body` as every command runs: SIGTERM and SIGHUP unwind like Ctrl-C, so
    that every context manager stops what it started; bad input (UsageError) exits 2 and a
    failed cell (CellError) 1, each with one line on stderr; an interrupt exits 130."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    try:
        return body()
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except CellError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
