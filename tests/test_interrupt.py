"""Ctrl-C or SIGTERM stops everything a command started, removes the throwaway cluster and
keeps what a run recorded."""

import json
import os
import signal
import subprocess
import sys
import urllib.request

import psutil
import pytest

from harness import ROOT
from harness.results import cellfiles
from harness.stack import procs
from tests.conftest import SPEC
from tests.support.waiting import wait_for


def start(*args, env=None, log=None):
    """The harness in its own session; its output to `log` (a file: a pipe nobody reads
    could fill up and stall the cleanup under test) or to a pipe."""
    return subprocess.Popen(
        [sys.executable, "-m", "harness", *args],
        cwd=ROOT,
        text=True,
        env={**os.environ, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=log or subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def descendants(proc):
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def running(proc, word):
    """Whether a live descendant of proc has `word` in its command line."""
    for child in descendants(proc):
        try:
            if word in " ".join(child.cmdline()):
                return True
        except psutil.Error:  # ended meanwhile
            continue
    return False


def assert_all_gone(processes, timeout=5.0):
    gone, alive = psutil.wait_procs(processes, timeout=timeout)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []


def bench_temp_dirs():
    import tempfile

    return {
        d
        for d in os.listdir(tempfile.gettempdir())
        if d.startswith(("bench-pg-", "bench-pgbouncer-", "bench-metrics-"))
    }


def listeners(processes):
    """The addresses the processes listen on."""
    out = set()
    for p in processes:
        try:
            out |= {c.laddr.ip for c in p.net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}
        except psutil.Error:
            continue
    return out


# (phase, signal, what it leaves): each phase of a run, the processes it has started by then
PHASES = [
    ("cluster start", signal.SIGINT, "postgres"),
    ("seeding", signal.SIGTERM, "postgres"),
    ("server start", signal.SIGTERM, "gunicorn"),
    ("warm-up", signal.SIGINT, "gunicorn"),
    ("leak check", signal.SIGTERM, "gunicorn"),
    ("report", signal.SIGINT, None),
]


@pytest.fixture(scope="module")
def one_cell_matrix(tmp_path_factory):
    """matrix.toml and a matrix of one short cell (--matrix-file)."""
    path = tmp_path_factory.mktemp("matrix") / "matrix.toml"
    path.write_text(
        (ROOT / "matrix.toml").read_text() + '\n[matrices.one]\nbackends = ["geventpool"]\n'
        'variants = ["release"]\nscenarios = ["atomic"]\n'
    )
    return path


@pytest.mark.parametrize("phase, sig, started", PHASES, ids=[p[0].replace(" ", "-") for p in PHASES])
def test_a_signal_in_each_phase_leaves_no_process_and_keeps_the_run(tmp_path, one_cell_matrix, phase, sig, started):
    """BENCH_HOLD_PHASE holds the run inside the phase (harness.phase), with that phase's
    processes started; the signal comes then."""
    out, log_path = tmp_path / "run", tmp_path / "harness.log"
    temp_before = bench_temp_dirs()
    with open(log_path, "w") as log:
        proc = start(
            "bench",
            "--matrix-file",
            str(one_cell_matrix),
            "--matrix",
            "one",
            "--out",
            str(out),
            "--set",
            "duration_s=2",
            "--set",
            "probe_timeout_s=1",
            env={"BENCH_HOLD_PHASE": phase},
            log=log,
        )
    wait_for(lambda: f"holding in phase {phase}" in log_path.read_text(), 120)
    if started:
        assert running(proc, started)
    children = descendants(proc)
    proc.send_signal(sig)
    assert proc.wait(20) == 130, log_path.read_text()[-2000:]
    assert_all_gone(children)
    assert bench_temp_dirs() == temp_before
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "incomplete" and info["ended_utc"]
    assert info["interrupted_in"].startswith(phase)
    [row] = cellfiles.read(out / "summary.csv")
    if phase == "report":  # the cell finished: its results stand; no half-written report or plot
        assert row["status"] == "ok"
        assert not (out / "report.html").exists()
        assert list(out.glob("*.png")) and not list(out.rglob("*.tmp"))
    else:
        assert row["status"] == "incomplete"
        assert info["interrupted_in"] == phase + " of cell 1/1 geventpool/release/atomic"
    assert f"interrupted in {phase}" in log_path.read_text()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_cell_leaves_no_process_and_keeps_the_run(tmp_path, sig):
    out = tmp_path / "run"
    temp_before = bench_temp_dirs()
    with open(tmp_path / "harness.log", "w") as log:
        proc = start("bench", "--matrix", "smoke", "--out", str(out), "--set", "duration_s=30", log=log)
    # mid-cell: Locust is running under the first cell
    wait_for(lambda: running(proc, "locust"), 60)
    assert running(proc, "gunicorn")
    children = descendants(proc)
    # every listener of the run (PostgreSQL, gunicorn) is on loopback
    assert listeners(children) == {"127.0.0.1"}
    proc.send_signal(sig)
    assert proc.wait(15) == 130
    assert_all_gone(children)
    assert bench_temp_dirs() == temp_before
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "incomplete" and info["ended_utc"]
    rows = cellfiles.read(out / "summary.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"incomplete"}


@pytest.mark.parametrize("backend, sig", [("geventpool", signal.SIGINT), ("pgbouncer", signal.SIGTERM)])
def test_serve_prints_urls_and_a_signal_stops_everything(tmp_path, backend, sig):
    from harness.stack import pgbouncer
    from harness.stack.postgres import free_port

    if pgbouncer.missing_for(SPEC.backends[backend]):
        pytest.skip(pgbouncer.INSTALL_HINT)  # .ci/run installs it, so CI runs this
    port = free_port()
    proc = start("serve", "--port", str(port), "--backend", backend)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C stops both" in line:
            break
    text = "".join(lines)
    assert f"app:      http://127.0.0.1:{port}/" in text
    assert "database: postgres://bench@127.0.0.1:" in text
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert json.loads(response.read())["pool_limit"] == (4 if backend == "geventpool" else None)
    assert running(proc, "postgres")
    if backend == "pgbouncer":
        assert running(proc, "pgbouncer")
    children = descendants(proc)
    assert listeners(children) == {"127.0.0.1"}
    proc.send_signal(sig)
    assert proc.wait(15) == 130
    assert_all_gone(children)
    assert not procs.group_members(proc.pid)


def test_a_killed_run_leaves_nothing_either_its_guardian_stops_everything(tmp_path):
    """SIGKILL cannot be handled: harness/stack/guard.py, which outlives the run, kills what it started."""
    temp_before = bench_temp_dirs()
    with open(tmp_path / "harness.log", "w") as log:
        proc = start("bench", "--matrix", "smoke", "--out", str(tmp_path / "run"), "--set", "duration_s=30", log=log)
    wait_for(lambda: running(proc, "locust"), 60)
    children = [c for c in descendants(proc) if "harness.stack.guard" not in " ".join(c.cmdline())]
    assert running(proc, "gunicorn") and running(proc, "postgres")
    proc.kill()
    assert proc.wait(5) == -signal.SIGKILL
    assert_all_gone(children)
    wait_for(lambda: bench_temp_dirs() == temp_before, 5)
