"""Ctrl-C or SIGTERM stops everything a command started, removes the throwaway cluster and
keeps what a run recorded."""

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request

import psutil
import pytest

from harness import ROOT, procs, summary


def start(*args):
    return subprocess.Popen([sys.executable, "-m", "harness", *args], cwd=ROOT, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)


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


def wait_for(predicate, timeout):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def assert_all_gone(processes, timeout=5.0):
    gone, alive = psutil.wait_procs(processes, timeout=timeout)
    assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []


def bench_temp_dirs():
    import tempfile

    return {d for d in os.listdir(tempfile.gettempdir()) if d.startswith("bench-pg-")}


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_mid_cell_leaves_no_process_and_keeps_the_run(tmp_path, sig):
    out = tmp_path / "run"
    temp_before = bench_temp_dirs()
    proc = start("bench", "--matrix", "smoke", "--out", str(out), "--set", "duration_s=30")
    # mid-cell: Locust is running under the first cell
    wait_for(lambda: running(proc, "locust"), 60)
    assert running(proc, "gunicorn")
    children = descendants(proc)
    proc.send_signal(sig)
    assert proc.wait(15) == 130
    assert_all_gone(children)
    assert bench_temp_dirs() == temp_before
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "incomplete" and info["ended_utc"]
    rows = summary.read(out / "summary.csv")
    assert len(rows) == 4 and {r["status"] for r in rows} == {"incomplete"}


def test_serve_prints_urls_and_ctrl_c_stops_both(tmp_path):
    from harness.postgres import free_port

    port = free_port()
    proc = start("serve", "--port", str(port))
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C stops both" in line:
            break
    text = "".join(lines)
    assert f"app:      http://127.0.0.1:{port}/" in text
    assert "database: postgres://bench@127.0.0.1:" in text
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as response:
        assert json.loads(response.read())["pool_limit"] == 4
    assert running(proc, "postgres")
    children = descendants(proc)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(15) == 130
    assert_all_gone(children)
    assert not procs.group_members(proc.pid)
