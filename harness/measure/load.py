"""Locust for one cell: the project's users, headless, for the cell's duration."""

import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from harness import ROOT, UsageError
from harness.spec.matrix import MATRIX_FILE, Cell, Params

WINDOW_FILE = "test_window.json"
LOCUSTFILES = [ROOT / "locustfiles" / "slow_stream.py", ROOT / "locustfiles" / "probe.py"]
STEP_SHAPE = ROOT / "locustfiles" / "step_shape.py"


def load_options(p: Params, users=True) -> list:
    """The users, their spawn rate and the project's options for parameters `p`: for a cell,
    and as the defaults of make ui's form. users=False: a load shape sets the users."""
    users = p.streams + 1 if users else None  # the stream clients and one ProbeUser (fixed_count = 1)
    return [
        *(["-u", users, "-r", users / p.spawn_s if p.spawn_s else users] if users else []),
        "--chunks",
        p.chunks,
        "--chunk-bytes",
        p.chunk_bytes,
        "--delay-ms",
        p.delay_ms,
        "--read-rate-bps",
        p.read_rate_bps,
        "--recv-buffer-bytes",
        p.recv_buffer_bytes,
        "--stream-timeout-s",
        p.stream_timeout_s,
        "--probe-rate",
        p.probe_rate,
        "--probe-timeout-s",
        p.probe_timeout_s,
        *(["--abort-at-s", p.fault_at_s] if p.fault == "client-abort" else []),
    ]


MASTER_PORT = 5557  # Locust's own default
WORKERS_WAIT_S = 120  # how long a master waits for workers on other machines before its cell fails


@dataclass(frozen=True)
class Master:
    """Locust's master for workers on other machines (make bench MASTER_BIND=): it listens on
    host:port, waits up to WORKERS_WAIT_S for locust_workers of them, and starts none itself.
    On each load machine, `python -m harness worker --master host:port` serves every cell."""

    host: str
    port: int = MASTER_PORT

    @classmethod
    def parse(cls, text: str, name="MASTER_BIND") -> "Master":
        host, _, port = text.partition(":")
        try:
            master = cls(host, int(port) if port else MASTER_PORT)
            socket.getaddrinfo(master.host, None, socket.AF_INET, flags=socket.AI_NUMERICHOST)
            if not 1 <= master.port <= 65535:
                raise ValueError
        except (ValueError, OSError):
            raise UsageError(
                f"{name}={text} is not ADDRESS[:PORT]: give the IPv4 address of the master "
                f"that the load machines reach, e.g. {name}=10.0.0.2:{MASTER_PORT}"
            ) from None
        return master

    def check_free(self):
        """Before the run: the master can listen there."""
        with socket.socket() as s:
            try:
                s.bind((self.host, self.port))
            except OSError as exc:
                raise UsageError(
                    f"MASTER_BIND={self.host}:{self.port}: cannot listen there ({exc.strerror}): "
                    "give an address of this machine and a free port"
                ) from None

    def options(self, workers: int) -> list:
        return [
            "--master",
            "--master-bind-host",
            self.host,
            "--master-bind-port",
            self.port,
            "--expect-workers",
            workers,
            "--expect-workers-max-wait",
            WORKERS_WAIT_S,
        ]

    def worker_command(self) -> str:
        return f"python -m harness worker --master {self.host}:{self.port}"


def locust_command(
    cell: Cell, host: str, cell_dir, shape_options=None, stream_path=None, probe_path=None, master: Master | None = None
) -> list:
    """`shape_options`: run the capacity search's step shape (locustfiles/step_shape.py) with
    these options instead of a fixed number of users for duration_s. `stream_path`, `probe_path`:
    a target's own URLs (make bench TARGET=...). `master`: the workers are on other machines."""
    p = cell.params
    shaped = shape_options is not None
    distributed = master is not None or p.locust_workers > 1
    return [
        sys.executable,
        "-m",
        "locust",
        "-f",
        ",".join(str(f) for f in LOCUSTFILES + ([STEP_SHAPE] if shaped else [])),
        "--headless",
        "--host",
        host,
        *load_options(p, users=not shaped),
        *(shape_options or []),
        # distributed (Locust's --processes, or workers elsewhere): the master stops the workers gracefully itself
        *(["--distributed-run-time-s", p.duration_s] if distributed and not shaped else []),
        *(["-t", f"{p.duration_s}s"] if not distributed and not shaped else []),
        *(
            master.options(p.locust_workers)
            if master
            else ["--processes", p.locust_workers, *_master_on_loopback()]
            if distributed
            else []
        ),
        "--csv",
        f"{cell_dir}/locust",
        "--json-file",
        f"{cell_dir}/locust_final",
        "--only-summary",
        "--exit-code-on-error",
        "0",
        *(["--quit-after-test"] if distributed else []),
        # Streams keep their load on while the last probes are answered or time out.
        "--stop-timeout",
        str(p.grace_s),
        *(["--variant", cell.variant] if not stream_path else []),
        *(["--matrix-file", cell.matrix_file] if Path(cell.matrix_file).resolve() != MATRIX_FILE.resolve() else []),
        "--request-log",
        f"{cell_dir}/requests.csv",
        "--window-file",
        f"{cell_dir}/{WINDOW_FILE}",
        *(["--stream-path", stream_path] if stream_path else []),
        *(["--probe-path", probe_path] if probe_path else []),
    ]


def _master_on_loopback():
    """Locust's master listens for its workers on 127.0.0.1 and a free port (its default is
    every interface, port 5557)."""
    from harness.stack.postgres import free_port

    port = free_port()
    return [
        "--master-bind-host",
        "127.0.0.1",
        "--master-bind-port",
        port,
        "--master-host",
        "127.0.0.1",
        "--master-port",
        port,
    ]


def run_worker(master: Master) -> int:
    """`python -m harness worker`: Locust's worker for a master on another machine, started again
    after each cell's master tells it to quit, until one finds no master (Locust's worker gives up
    after 60 tries 5 s apart, and exits with 255): the run is over. Its options come from the
    master with each cell. Three exits in a row within seconds of their start end it too: a
    worker that cannot start."""
    print(f"worker for the master at {master.host}:{master.port}; Ctrl-C stops it", file=sys.stderr, flush=True)
    quick = 0
    while True:
        started = time.monotonic()
        code = subprocess.call(
            [
                sys.executable,
                "-m",
                "locust",
                "-f",
                ",".join(str(f) for f in LOCUSTFILES),
                "--worker",
                "--master-host",
                master.host,
                "--master-port",
                str(master.port),
            ]
        )
        if code == NO_MASTER:
            print("worker: no master answers now: the run is over", file=sys.stderr, flush=True)
            return 0
        quick = quick + 1 if time.monotonic() - started < 5 else 0
        if quick == 3:
            print(f"worker: Locust's worker exited with {code} three times at start: see above", file=sys.stderr)
            return 1


NO_MASTER = 255  # Locust's worker's exit status when it gave up connecting


def _window_times(cell_dir) -> dict:
    """What the Locust test has written of its window so far ({} before it starts)."""
    try:
        with open(os.path.join(cell_dir, WINDOW_FILE)) as f:
            return json.load(f)
    except (OSError, ValueError):  # not yet there, or being written
        return {}


def test_start(cell_dir):
    """When the Locust test started (unix s), once it has; None before."""
    return _window_times(cell_dir).get("test_start_unix")


def test_window(cell_dir, fallback):
    """((start, stop), grace_end) in unix seconds from the Locust test, or `fallback` for
    what it did not say. grace_end: when the last probes were settled."""
    times = _window_times(cell_dir)
    if "test_start_unix" not in times or "test_stop_unix" not in times:
        return fallback, fallback[1]
    window = (times["test_start_unix"], times["test_stop_unix"])
    return window, times.get("grace_end_unix", window[1])
