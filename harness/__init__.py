"""The benchmark harness: reads matrix.toml, starts PostgreSQL and the server, runs Locust,
samples, and writes a run directory under results/."""

import os
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# The phase a command is in, e.g. "warm-up": run.json says where an interrupted run stopped.
PHASE = {"name": None}
# Set when a command is interrupted while cells run side by side (harness/bench.py): Ctrl-C reaches
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
