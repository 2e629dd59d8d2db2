"""Shared by the project's Locust users: the parameters (command line, BENCH_* environment
variables and the web UI form, defaults from matrix.toml) and an exact per-request log."""

import csv
import json
import logging
import os
import sys
import time
import tomllib
from pathlib import Path

import gevent
from locust import events
from locust.exception import RPCError
from locust.rpc import Message
from locust.runners import MasterRunner, WorkerRunner


def _matrix_file() -> Path:
    """matrix.toml, or the file --matrix-file (or BENCH_MATRIX_FILE) names: read before Locust
    parses its options, since its variants are --variant's choices and its defaults theirs."""
    argv = sys.argv
    for i, arg in enumerate(argv):
        if arg == "--matrix-file" and i + 1 < len(argv):
            return Path(argv[i + 1])
        if arg.startswith("--matrix-file="):
            return Path(arg.split("=", 1)[1])
    return Path(os.environ.get("BENCH_MATRIX_FILE") or Path(__file__).resolve().parent.parent / "matrix.toml")


MATRIX_FILE = _matrix_file()
MATRIX = tomllib.loads(MATRIX_FILE.read_text())
DEFAULTS = MATRIX["defaults"]
VARIANTS = list(MATRIX["variants"])

# (option, type, help); the default of each is matrix.toml's [defaults] value.
STREAM_OPTIONS = (
    ("chunks", int, "chunks per streamed body"),
    ("chunk_bytes", int, "bytes per chunk"),
    ("delay_ms", int, "server-side wait before each chunk after the first, ms"),
    ("read_rate_bps", int, "client read rate, bytes/s (0: as fast as data arrives)"),
    ("recv_buffer_bytes", int, "client socket receive buffer (SO_RCVBUF), bytes (0: the kernel's)"),
    ("stream_timeout_s", float, "a stream with no byte for this long fails, s"),
    ("probe_rate", float, "probe requests per second, sent open-loop"),
    ("probe_timeout_s", float, "a probe unanswered this long fails, s"),
)


@events.init_command_line_parser.add_listener
def add_options(parser):
    parser.add_argument(
        "--matrix-file",
        default=str(MATRIX_FILE),
        env_var="BENCH_MATRIX_FILE",
        include_in_web_ui=False,
        help="the matrix file whose variants --variant chooses from and whose [defaults] these options take "
        "(default: the project's matrix.toml)",
    )
    parser.add_argument(
        "--variant",
        choices=VARIANTS,
        default=VARIANTS[0],
        env_var="BENCH_VARIANT",
        help=f"variant of /stream/<variant>/ (default {VARIANTS[0]})",  # written out: the web UI shows help raw
    )
    for name, kind, text in STREAM_OPTIONS:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=kind,
            default=DEFAULTS[name],
            env_var="BENCH_" + name.upper(),
            help=f"{text} (default {DEFAULTS[name]})",
        )
    parser.add_argument(
        "--stream-path",
        default="",
        env_var="BENCH_STREAM_PATH",
        help="stream this path of your own app as it is (make bench TARGET=...) instead of /stream/<variant>/ "
        "(default: none)",
    )
    parser.add_argument(
        "--probe-path",
        default="/probe/",
        env_var="BENCH_PROBE_PATH",
        help="the probe's path: a view that uses the database (default /probe/)",
    )
    parser.add_argument(
        "--abort-at-s",
        type=float,
        default=0,
        env_var="BENCH_ABORT_AT_S",
        help="the client-abort fault: every stream in progress this many seconds after the test starts "
        "disconnects mid-stream (default 0: never)",
    )
    parser.add_argument(
        "--request-log",
        default="",
        env_var="BENCH_REQUEST_LOG",
        include_in_web_ui=False,
        help="write every request (start, type, name, ms, bytes, failure) to this CSV",
    )
    parser.add_argument(
        "--distributed-run-time-s",
        type=float,
        default=0,
        env_var="BENCH_DISTRIBUTED_RUN_TIME_S",
        include_in_web_ui=False,
        help="distributed headless runs: stop the test after this many seconds the way -t does for a "
        "single process (the workers' users stop within --stop-timeout, their last stats arrive), then quit",
    )
    parser.add_argument(
        "--quit-after-test",
        action="store_true",
        default=False,
        env_var="BENCH_QUIT_AFTER_TEST",
        include_in_web_ui=False,
        help="distributed: a worker quits once its test has stopped and its last requests are sent, "
        "instead of waiting for another test (the harness runs one test per master)",
    )
    parser.add_argument(
        "--window-file",
        default="",
        env_var="BENCH_WINDOW_FILE",
        include_in_web_ui=False,
        help="write when the test started, began stopping and its last probes settled (unix s) to this JSON file",
    )


class RequestLog:
    """Every request Locust records, one CSV row each: exact counts and percentiles. `status`
    is the HTTP status, `request_id` the X-Request-Id a stream sent (its audit row's key)."""

    HEADER = [
        "start_unix_s",
        "request_type",
        "name",
        "response_time_ms",
        "response_length",
        "failure",
        "status",
        "request_id",
    ]

    def __init__(self, path):
        self.file = open(path, "w", newline="", encoding="utf-8")
        self.writer = csv.writer(self.file)
        self.writer.writerow(self.HEADER)

    def on_request(self, **request):
        self.writer.writerow(self.row(**request))

    @staticmethod
    def row(  # noqa: PLR0913  (Locust's request event passes these by name)
        request_type,
        name,
        response_time,
        response_length,
        exception=None,
        start_time=None,
        context=None,
        response=None,
        **_,
    ) -> list:
        failure = "" if exception is None else f"{type(exception).__name__}: {exception}"[:300]
        context = context or {}
        status = context.get("status", getattr(response, "status_code", None))
        return [
            f"{start_time:.6f}" if start_time else "",
            request_type,
            name,
            f"{response_time:.3f}",
            response_length or 0,
            failure,
            status or "",
            context.get("request_id", ""),
        ]

    def flush(self, **_):
        self.file.flush()


ROWS = "bench_request_rows"  # a worker's message to the master: its requests since the last one
SHIP_EVERY_S = 1.0


class ShippedLog:
    """A worker's requests, sent to the master in a message a second and at the test's stop,
    which the master writes to one file per worker (requests-worker<n>.csv): a worker on
    another machine has nowhere to write that the harness can read. The last rows go out
    before the worker tells the master it stopped, and the master handles one worker's
    messages in order, so every row is written before the master ends the test."""

    def __init__(self, runner: WorkerRunner):
        self.runner, self.rows = runner, []
        gevent.spawn(self._ship_every_second)

    def on_request(self, **request):
        self.rows.append(RequestLog.row(**request))

    def flush(self, **_):
        rows, self.rows = self.rows, []
        if rows:
            self.runner.send_message(ROWS, rows)

    def stopped(self, environment, **_):
        """The test stopped: the last rows go out now, then, with --quit-after-test (which the
        master sends with each spawn), the worker quits. Left to Locust, a stopped worker sleeps
        --stop-timeout before it reads the master's quit, and a worker on another machine would
        then meet the next cell's master, report ready and quit in its test."""
        self.flush()
        if getattr(environment.parsed_options, "quit_after_test", False):
            gevent.spawn_later(0.5, self._quit)  # after Locust's own client_stopped

    def _quit(self):
        self.runner._send_stats()  # as on the master's quit: the last statistics
        self.runner.greenlet.kill(block=False)

    def _ship_every_second(self):
        while True:
            gevent.sleep(SHIP_EVERY_S)
            self.flush()


class WorkerLogs:
    """On the master: each worker's shipped requests in a file of its own, numbered in the
    order the workers' first rows arrive."""

    def __init__(self, path):
        self.base, self.logs = os.path.splitext(path)[0], {}

    def on_rows(self, msg, **_):
        log = self.logs.get(msg.node_id)
        if log is None:
            log = self.logs[msg.node_id] = RequestLog(f"{self.base}-worker{len(self.logs) + 1}.csv")
        log.writer.writerows(msg.data)
        log.flush()


class Window:
    """When the test started, when it began stopping, and when the last probes were settled
    (the end of the grace period, with the streams still connected): the harness counts the
    server's events inside the window, and requests still waiting at the grace period's end
    as hung."""

    current = None

    def __init__(self, path):
        self.path, self.times = path, {}
        Window.current = self

    def started(self, **_):
        self.times = {"test_start_unix": time.time()}
        self.write()  # the harness times its faults from it

    def stopping(self, **_):
        self.times["test_stop_unix"] = time.time()
        self.write()

    def settled(self):
        self.times["grace_end_unix"] = time.time()
        self.write()

    def write(self):
        with open(self.path, "w") as f:
            json.dump(self.times, f)


SETTLED = "bench_probes_settled"  # a worker's message to the master


@events.test_start.add_listener
def stop_distributed_run(environment, **_):
    """Locust's -t on a master quits the workers at once, cutting their --stop-timeout short and
    losing their last statistics; this stops them first, as -t does in one process."""
    run_time = getattr(environment.parsed_options, "distributed_run_time_s", 0)
    runner = environment.runner
    if not run_time or not isinstance(runner, MasterRunner):
        return

    gevent.spawn_later(run_time, stop_then_quit, runner)


def stop_then_quit(runner: MasterRunner):
    """End a distributed headless test as -t ends one in a single process: every worker's users
    stop within --stop-timeout and their last statistics reach the master, then all quit."""
    workers = [client.id for client in runner.clients.all]
    runner.stop()  # tells the workers to stop and waits for their users (up to --stop-timeout)
    # a stopped worker leaves the master's list until it is ready again, so quit() would not
    # reach it: tell each to quit first
    for worker in workers:
        runner.server.send_to_client(Message("quit", None, worker))
    runner.quit()


def settle_probes(environment):
    """Called by the probe user once its last probes are answered or timed out; in a worker
    process, the master (which keeps the window) is told."""
    if Window.current is not None:
        Window.current.settled()
    elif isinstance(environment.runner, WorkerRunner):
        environment.runner.send_message(SETTLED)


def _report_now(runner):
    """A worker's stats to the master now (Locust's own reporter's call), unless the master is
    gone: then there is no one to count them, as for Locust's periodic report."""
    try:
        runner._send_stats()
    except RPCError as exc:
        logging.getLogger(__name__).warning("stats not sent to the master at stop: %s", exc)


@events.init.add_listener
def open_request_log(environment, runner=None, **_):
    """Requests are logged where they are made, in this process; in a distributed run each
    worker ships its own to the master, which writes one file per worker
    (requests-worker<n>.csv). The window is kept where the test is started and stopped: here,
    or on the master."""
    runner = runner or environment.runner
    path = getattr(environment.parsed_options, "request_log", "")
    if isinstance(runner, WorkerRunner):
        environment.parsed_options.json_file = None  # the master writes Locust's totals
        # --request-log is the master's (sent with each spawn): a worker always ships
        log = ShippedLog(runner)
        # A worker reports its stats every 3 s and once more when the master quits, which then
        # waits 0.5 s for that report: on a loaded machine it came too late for the master's
        # totals (locust_final.json one stream short of the request logs). One more report when
        # the users have stopped, before the worker says so, leaves nothing for that last one.
        environment.events.test_stop.add_listener(lambda **_: _report_now(runner))
    elif isinstance(runner, MasterRunner):
        log = None
        if path:
            runner.register_message(ROWS, WorkerLogs(path).on_rows)
    else:
        log = RequestLog(path) if path else None
    if log is not None:
        environment.events.request.add_listener(log.on_request)
        environment.events.test_stop.add_listener(getattr(log, "stopped", log.flush))
        environment.events.quitting.add_listener(log.flush)
    path = getattr(environment.parsed_options, "window_file", "")
    if path and not isinstance(runner, WorkerRunner):
        window = Window(path)
        environment.events.test_start.add_listener(window.started)
        environment.events.test_stopping.add_listener(window.stopping)
        if isinstance(runner, MasterRunner):
            runner.register_message(SETTLED, lambda **_: window.settled())
