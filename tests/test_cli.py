"""Bad input: one line naming the parameter and the fix, exit code 2, nothing started or
written, before anything starts."""

import os
import subprocess
import sys
import time

import pytest

from harness import ROOT
from harness.spec import matrix


def harness(*args, env=None):
    full_env = {**os.environ, **(env or {})}
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "harness", *args], cwd=ROOT, env=full_env, capture_output=True, text=True, timeout=60
    )
    return result, time.monotonic() - started


@pytest.mark.parametrize(
    "args, env, message",
    [
        (
            ["bench", "--matrix", "nope"],
            {},
            f"MATRIX=nope is unknown: use one of {', '.join(list(matrix.load().matrices)[:6])}",
        ),
        (["bench", "--set", "streams=0"], {}, "streams=0 in scenario slow-server is too small"),
        (["bench", "--set", "streems=4"], {}, "unknown parameter 'streems'"),
        (["bench", "--set", "duration_s"], {}, "--set 'duration_s' must look like key=value"),
        (["bench", "--set", "duration_s=ten"], {}, "'ten' is not a number"),
        (["bench", "--set", "probe_rate=-1"], {}, "probe_rate=-1 in scenario slow-server is too small"),
        (
            ["bench", "--set", "atomic_requests=1"],
            {},
            "atomic_requests=1 in scenario slow-server must be true or false",
        ),
        (["bench", "--set", "chunks=true"], {}, "chunks=True in scenario slow-server must be a whole number of chunks"),
        (["bench", "--set", "pool_max=100"], {}, "exceeds db_max_connections=50"),
        (["bench", "--repeat", "0"], {}, "REPEAT=0 must be at least 1"),
        (["bench"], {"BENCH_PG_BIN": "/nonexistent"}, "BENCH_PG_BIN=/nonexistent has no initdb or postgres"),
        (
            ["bench"],
            {"BENCH_DATABASE_URL": "postgres://bench@127.0.0.1:1/bench"},
            "BENCH_DATABASE_URL=postgres://bench@127.0.0.1:1/bench is unreachable",
        ),
        (
            ["serve", "--backend", "pgbouncr"],
            {},
            "BACKEND=pgbouncr is unknown: use one of stock, stock-persistent, geventpool",
        ),
        (["serve", "--scenario", "fast"], {}, "SCENARIO=fast is unknown"),
        (["serve", "--bind", "0.0.0.0"], {}, "BIND=0.0.0.0 would listen on every interface"),
        (["serve", "--bind", "192.0.2.1"], {}, "BIND=192.0.2.1 is not an IPv4 address of this machine"),
        (["bench", "--master-bind", "nope:x"], {}, "MASTER_BIND=nope:x is not ADDRESS[:PORT]"),
        (["bench", "--master-bind", "127.0.0.1"], {}, "needs HOST= too: workers on other machines reach the app"),
        (["worker", "--master", "10.0.0.2:99999"], {}, "--master=10.0.0.2:99999 is not ADDRESS[:PORT]"),
        (["ui", "--backend", "nope"], {}, "BACKEND=nope is unknown"),
        (["bench", "--host", "http://127.0.0.1:1"], {}, "HOST=http://127.0.0.1:1 needs DATABASE_URL= too"),
        (["bench", "--server", "nope"], {}, "SERVER=nope is unknown: use one of gevent"),
        (
            ["capacity", "--server", "uvicorn"],
            {},
            "SERVER=uvicorn: backend geventpool does not work under server uvicorn",
        ),
        (
            ["bench", "--host", "http://127.0.0.1:1", "--database-url", "postgres://x@127.0.0.1:1/x"],
            {},
            "HOST=http://127.0.0.1:1 is unreachable",
        ),
        (
            ["bench", "--database-url", "postgres://bench:s3cret@127.0.0.1:1/bench"],
            {},
            "--database-url=postgres://bench:***@127.0.0.1:1/bench has a password, which every user of this machine can "
            "read in the process list: export BENCH_DATABASE_URL instead",
        ),
        (
            ["bench", "--database-url", "postgres://bench@127.0.0.1:1/bench?password=s3cret"],
            {},
            "has a password, which every user of this machine can read in the process list",
        ),
        (["bench", "--set", "locust_workers=0"], {}, "locust_workers=0 in scenario slow-server is too small"),
        (["ui", "--web-port", "0"], {}, "WEB_PORT=0 is in use or invalid"),
        (
            ["bench", "--set", "worker_connections=10"],
            {},
            "streams=16 in scenario slow-server and up to 35 probes in flight are more than the server accepts "
            "(worker_connections=10 x workers=1): raise worker_connections or lower streams",
        ),
        (["bench", "--set", "duration_s=-5"], {}, "duration_s=-5 in scenario slow-server is too small: use at least 1"),
        (["bench", "--set", "spawn_s=-1"], {}, "spawn_s=-1 in scenario slow-server is too small"),
        (
            ["bench", "--set", "fault=disk-full"],
            {},
            "fault='disk-full' in scenario slow-server is unknown: use one of none, pg-restart, worker-kill, client-abort",
        ),
        (
            ["bench", "--set", "fault=worker-kill", "--set", "fault_at_s=12"],
            {},
            "fault_at_s=12 in scenario slow-server is not inside duration_s=12: inject the worker-kill after the start "
            "and before the end, or run longer",
        ),
        (
            ["bench", "--set", "fault=client-abort", "--set", "fault_at_s=0"],
            {},
            "fault_at_s=0 in scenario slow-server is not inside duration_s=12",
        ),
        (["bench", "--matrix-file", "/nonexistent/m.toml"], {}, "MATRIX_FILE=/nonexistent/m.toml not found"),
        (
            ["capacity", "--matrix", "smoke-faults"],
            {},
            "make capacity injects no faults, and cell geventpool/hold/pg-restart has fault=pg-restart",
        ),
        (
            ["capacity", "--matrix", "smoke", "--set", "capacity_start=64", "--set", "capacity_max=32"],
            {},
            "capacity_start=64 in geventpool/hold/smoke-stream is above capacity_max=32",
        ),
        (
            ["capacity", "--matrix", "smoke", "--set", "capacity_max=2000"],
            {},
            "capacity_max=2000 in geventpool/hold/smoke-stream and up to 45 probes in flight are more than the server "
            "accepts (worker_connections=1000 x workers=1): raise worker_connections or lower capacity_max",
        ),
        (
            ["capacity", "--set", "capacity_growth=1"],
            {},
            "capacity_growth=1 in scenario slow-server is too small: use at least 1.01",
        ),
        (
            ["peer", "--set", "read_rate_bps=4096"],
            {},
            "read_rate_bps=4096 in scenario peer-slow-read: slowhttptest reads at most 576",
        ),
        (["peer", "--scenario", "nope"], {}, "SCENARIO=nope is unknown"),
        (["bench", "--matrix-file", "Makefile"], {}, "MATRIX_FILE=Makefile is not valid TOML"),
        (
            ["bench", "--matrix-file", "pyproject.toml"],
            {},
            "MATRIX_FILE=pyproject.toml needs a non-empty [defaults] table",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_nothing_starts(tmp_path, args, env, message):
    out = tmp_path / "run"
    before = set(os.listdir(ROOT / "results"))
    result, took = harness(*args, *(["--out", str(out)] if args[0] in ("bench", "capacity", "peer") else []), env=env)
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ")
    assert message in result.stderr
    assert not out.exists()
    assert set(os.listdir(ROOT / "results")) == before
    assert took < 20


def test_an_out_that_cannot_be_created_is_refused(tmp_path):
    result, _ = harness("bench", "--out", "/proc/no-such-dir/run")
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "OUT=/proc/no-such-dir/run cannot be created (No such file or directory)" in result.stderr


def test_existing_out_is_never_touched(tmp_path):
    out = tmp_path / "earlier"
    out.mkdir()
    (out / "summary.csv").write_text("precious\n")
    result, _ = harness("bench", "--out", str(out))
    assert result.returncode == 2
    assert f"OUT={out} already exists" in result.stderr
    assert (out / "summary.csv").read_text() == "precious\n"


def test_a_port_in_use_is_refused_for_serve():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        result, _ = harness("serve", "--port", str(port))
    assert result.returncode == 2
    assert f"PORT={port} is in use" in result.stderr


@pytest.mark.parametrize(
    "matrix_name, message",
    [
        (
            "smoke-faults",
            "fault=pg-restart in geventpool/hold/pg-restart restarts the throwaway PostgreSQL, and "
            "DATABASE_URL names another server: unset DATABASE_URL or run another scenario",
        ),
    ],
)
def test_a_fault_the_harness_cannot_inject_is_refused(tmp_path, database, matrix_name, message):
    result, _ = harness(
        "bench", "--matrix", matrix_name, "--out", str(tmp_path / "run"), env={"BENCH_DATABASE_URL": database.admin_url}
    )
    assert result.returncode == 2
    # the inherited BENCH_DATABASE_URL announced in one line, then the one-line error
    announced, error = result.stderr.splitlines()
    assert announced.startswith(f"database: BENCH_DATABASE_URL={database.admin_url} (PostgreSQL ")
    assert error.startswith("error: ") and message in error
    assert not (tmp_path / "run").exists()


def test_every_command_of_the_parser_has_one_function_and_only_those():
    from harness import cli

    sub = next(a for a in cli._parser()._actions if type(a).__name__ == "_SubParsersAction")
    assert set(sub.choices) == set(cli.COMMANDS)
    assert all(callable(f) and f.__name__.startswith("cmd_") for f in cli.COMMANDS.values())
