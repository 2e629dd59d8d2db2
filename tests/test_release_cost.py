"""`python -m harness.studies.release_cost` end to end with a few requests on its own throwaway
PostgreSQL: what each backend opens, checks out and leaves open when a streaming response
holds its connection, gives it back, or reads in batches; bad input; Ctrl-C."""

import itertools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import psutil
import pytest

from harness import ROOT
from harness.results import cellfiles
from harness.studies import release_cost
from tests.conftest import SPEC

REQUESTS = 20
BACKENDS = ["stock", "stock-persistent", "native-pool", "geventpool"]
POOL_MAX = SPEC.params("slow-server").pool_max  # what matrix.toml's pools are given
# the least queries (each a checkout) batches() makes for one body: one per full batch
BATCH_QUERIES = release_cost.ROWS // release_cost.BATCH


def release_cost_cmd(*args, timeout=600, env=None):
    return subprocess.run(
        [sys.executable, "-m", "harness.studies.release_cost", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    out = tmp_path_factory.mktemp("release-cost") / "run"
    result = release_cost_cmd("--requests", str(REQUESTS), "--backends", ",".join(BACKENDS), "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {}
    for r in cellfiles.read(out / "release_cost.csv"):
        for column in ("requests", "new_connections", "checkouts", "left_open"):
            r[column] = int(r[column])
        for column in ("us_per_request_p50", "us_per_request_p90"):
            r[column] = float(r[column])
        rows[r["backend"], r["keep_persistent"] == "True", r["view"]] = r
    return out, result, rows


def test_every_configuration_is_measured_and_recorded(measured):
    out, result, rows = measured
    assert sorted(rows) == sorted(itertools.product(BACKENDS, (False, True), release_cost.VIEWS))
    for row in rows.values():
        assert row["requests"] == REQUESTS
        assert 0 < row["us_per_request_p50"] <= row["us_per_request_p90"]
        assert row["checkouts"] >= 1 and row["new_connections"] >= 1
    # the markdown table on stdout: its header and a line per configuration
    table = [line for line in result.stdout.splitlines() if line.startswith("|")]
    assert table[0] == "| " + " | ".join(release_cost.COLUMNS) + " |"
    assert len(table) == 2 + len(rows)
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete"
    assert re.fullmatch(r"[0-9a-f]{40}", info["git"]["sha"]) and info["kind"] == "release-cost"
    assert info["machine"]["cpu_count"] == os.cpu_count()
    assert info["environments"]["bench"]["versions"]["psycopg2-binary"]
    assert info["environments"]["pg3"]["versions"]["psycopg"]
    for env in info["environments"].values():
        assert env["versions"]["Django"] and env["versions"]["django-db-geventpool"]


def test_stock_opens_a_connection_per_checkout_and_leaves_none_open(measured):
    _, _, rows = measured
    for keep in (False, True):
        for view in ("hold", "release"):
            row = rows["stock", keep, view]
            assert row["new_connections"] == row["checkouts"] == REQUESTS, row
        batches = rows["stock", keep, "batches"]
        # a connection per batch: every query of every body
        assert batches["new_connections"] == batches["checkouts"] >= BATCH_QUERIES * REQUESTS, batches
        assert batches["checkouts"] % REQUESTS == 0, batches  # the same queries for every body
    assert all(r["left_open"] == 0 for (backend, *_), r in rows.items() if backend == "stock")
    # a connection per query costs time: the batched body is slower than one query's
    for keep in (False, True):
        assert rows["stock", keep, "batches"]["us_per_request_p50"] > rows["stock", keep, "hold"]["us_per_request_p50"]


def test_a_persistent_connection_is_closed_by_the_release_unless_kept(measured):
    _, _, rows = measured

    def row(keep, view):
        return rows["stock-persistent", keep, view]

    for keep in (False, True):  # nothing released: the one connection serves every request
        assert row(keep, "hold")["new_connections"] == 1 and row(keep, "hold")["left_open"] == 1
    # released: closed when each body starts (and after each batch), opened again by the next query
    assert row(False, "release")["new_connections"] == REQUESTS
    assert row(False, "batches")["new_connections"] >= BATCH_QUERIES * REQUESTS
    assert row(False, "release")["left_open"] == row(False, "batches")["left_open"] == 0
    # STREAM_RELEASE_KEEP_PERSISTENT: the thread's own connection is kept through every batch
    assert row(True, "batches")["new_connections"] < row(False, "batches")["new_connections"]
    for view in ("release", "batches"):
        assert row(True, view)["new_connections"] <= 1 and row(True, view)["left_open"] == 1
    assert row(True, "batches")["us_per_request_p50"] < row(False, "batches")["us_per_request_p50"]


@pytest.mark.parametrize("backend", ["native-pool", "geventpool"])
def test_a_pool_checks_out_per_query_but_connects_at_most_its_size(measured, backend):
    _, _, rows = measured
    for keep in (False, True):
        for view in release_cost.VIEWS:
            row = rows[backend, keep, view]
            assert 1 <= row["new_connections"] <= POOL_MAX, row
            assert 1 <= row["left_open"] <= POOL_MAX, row  # the pool keeps its idle connections
            least = REQUESTS * (BATCH_QUERIES if view == "batches" else 1)
            assert row["checkouts"] >= least, row
            assert row["checkouts"] > row["new_connections"], row


def test_too_few_requests_are_refused_before_anything_starts(tmp_path):
    for value in ("5", "many"):
        result = release_cost_cmd("--requests", value, "--out", str(tmp_path / "run"), timeout=60)
        assert result.returncode == 2, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "--requests" in result.stderr
        assert not (tmp_path / "run").exists()
    result = release_cost_cmd("--requests", "20", "--backends", "nope", "--out", str(tmp_path / "run"), timeout=60)
    assert result.returncode == 2 and "--backends" in result.stderr and not (tmp_path / "run").exists()


def test_ctrl_c_stops_the_worker_and_the_cluster(tmp_path):
    # its own temporary directory (PostgreSQL's, as another user when root): what is left is its own
    # directly under /tmp: under pytest-xdist TMPDIR is nested deep enough that PostgreSQL's
    # Unix socket path would pass its 107-byte limit
    tmp = tempfile.mkdtemp(prefix="rc-", dir="/tmp")
    os.chmod(tmp, 0o1777)
    out = tmp_path / "run"
    with open(tmp_path / "output.log", "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "harness.studies.release_cost", "--requests", "100000", "--backends", "stock"]
            + ["--out", str(out)],
            cwd=ROOT,
            env={**os.environ, "TMPDIR": tmp},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 60
        while not (out / "worker-stock.log").exists() or not any("--worker" in _cmdline(p) for p in _descendants(proc)):
            assert proc.poll() is None, (tmp_path / "output.log").read_text()
            assert time.monotonic() < deadline, "the worker did not start"
            time.sleep(0.1)
        started = _descendants(proc)
        proc.send_signal(signal.SIGINT)
        assert proc.wait(60) == 130
        _, alive = psutil.wait_procs(started, timeout=5)
        assert [p for p in alive if p.status() != psutil.STATUS_ZOMBIE] == []
        assert os.listdir(tmp) == []  # the cluster's directory removed
        assert json.loads((out / "run.json").read_text())["status"] == "incomplete"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


def _descendants(proc):
    try:
        return psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def _cmdline(process):
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # ended meanwhile
        return ""
