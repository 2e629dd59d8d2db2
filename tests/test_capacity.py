"""make capacity: the step levels, the judging of each step from hand-made records, and one
real search (PostgreSQL, gunicorn, Locust's LoadTestShape) where holding breaks at the pool's
size and releasing does not."""

import json
import subprocess
import sys
from dataclasses import replace
from types import SimpleNamespace

import pytest

from harness import ROOT
from harness.results import cellfiles
from harness.runs import capacity
from tests.conftest import SPEC

BASE = SPEC.params("quick-stream")


def params(**changes):
    return replace(BASE, **changes)


def test_levels_multiply_by_the_growth_with_at_least_one_more_and_end_at_the_maximum():
    assert capacity.levels(params(capacity_start=1, capacity_growth=2, capacity_max=20)) == [1, 2, 4, 8, 16, 20]
    assert capacity.levels(params(capacity_start=1, capacity_growth=1.1, capacity_max=4)) == [1, 2, 3, 4]
    assert capacity.levels(params(capacity_start=625, capacity_growth=2, capacity_max=5000)) == [625, 1250, 2500, 5000]
    assert capacity.levels(params(capacity_start=8, capacity_max=8)) == [8]


def step(n, streams, start):
    return {"step": n, "streams": streams, "start_unix": start, "full_unix": start + 1, "end_unix": start + 11}


def probe(at, ms, failure=""):
    return {
        "request_type": "GET",
        "name": "/probe/",
        "start_unix_s": str(at),
        "response_time_ms": ms,
        "failure": failure,
    }


def stream(start, seconds, failure="", kind="STREAM"):
    return {
        "request_type": kind,
        "name": "/stream/release/",
        "start_unix_s": str(start),
        "response_time_ms": seconds * 1000,
        "failure": failure,
    }


def judge(steps, requests, timeline=(), cpu=(), pool_capacity=4, workers=1, accounting=(), **p):
    record = capacity.CellRecord(list(requests), list(timeline), list(cpu), list(accounting))
    return capacity.judge_steps(steps, record, params(locust_workers=workers, **p), pool_capacity)


def held(streams, start):
    """`streams` streams open through the whole of a step starting at `start`."""
    return [stream(start, 11) for _ in range(streams)]


def test_a_step_is_judged_on_its_own_probes_failures_and_peaks():
    steps = [step(1, 2, 100), step(2, 4, 111), step(3, 8, 122)]
    requests = [
        *held(2, 100),
        *held(4, 111),
        *held(8, 122),
        probe(100.5, 900),  # in step 1's ramp: not its level's
        *(probe(101 + i / 10, 5) for i in range(90)),
        *(probe(112 + i / 10, 5) for i in range(95)),
        *(probe(118 + i / 10, 80) for i in range(5)),  # p99 80 ms
        *(probe(123 + i / 10, 5) for i in range(50)),
        stream(125, 3, failure="HTTPParseError"),  # ends in step 3
    ]
    timeline = [
        {"unix_s": "105", "pool_in_use": "2", "pool_waiting": "0", "db_backends": "2"},
        {"unix_s": "115", "pool_in_use": "4", "pool_waiting": "3", "db_backends": "4"},
        {"unix_s": "125", "pool_in_use": "5", "pool_waiting": "0", "db_backends": "5"},
    ]
    pauses = [{"event": "gc", "unix_s": t, "hold_ms": ms} for t, ms in ((105, "12.5"), (106, "40.0"), (130, "300.1"))]
    rows = judge(steps, requests, timeline, accounting=pauses, slo_probe_p99_ms=50, slo_failures=0)
    assert [r["server_gc_pause_max_ms"] for r in rows] == [40.0, "", 300.1]
    assert [r["probes"] for r in rows] == [90, 100, 50]
    assert [r["probe_p99_ms"] for r in rows] == [5, 80, 5]
    assert [r["stream_failures"] for r in rows] == [0, 0, 1]
    assert [r["peak_pool_in_use"] for r in rows] == [2, 4, 5]
    assert rows[0]["broken"] == ""
    assert rows[1]["broken"] == "probe p99 80 ms > 50 ms"
    assert rows[2]["broken"].split("; ") == ["1 failed requests > 0", "5 PostgreSQL connections > pool limit 4"]
    v = capacity.verdict(rows, params(capacity_max=8), stopped_early=False)
    assert (v["max_streams_ok"], v["broken_objective"], v["broken_at_streams"]) == (2, "probe_p99", 4)


def test_a_load_generator_that_cannot_keep_its_streams_open_or_is_busy_is_its_own_objective():
    steps = [step(1, 10, 100), step(2, 20, 111)]
    requests = [
        *held(10, 100),
        *held(12, 111),
        *(probe(101 + i / 10, 5) for i in range(100)),
        *(probe(112 + i / 10, 5) for i in range(100)),
    ]
    cpu = [
        {"unix_s": 101.0, "loadgen_cpu_s": "0", "server_cpu_s": "0"},
        {"unix_s": 111.0, "loadgen_cpu_s": "2", "server_cpu_s": "1"},
        {"unix_s": 112.0, "loadgen_cpu_s": "2.1", "server_cpu_s": "1.1"},
        {"unix_s": 122.0, "loadgen_cpu_s": "2.5", "server_cpu_s": "2"},
    ]
    rows = judge(steps, requests, cpu=cpu)
    assert rows[0]["streams_open"] == 10 and rows[1]["streams_open"] == 12
    assert rows[0]["loadgen_cores"] == 0.2 and rows[0]["server_cores"] == 0.1
    assert rows[0]["loadgen_core_pct_per_1k_streams"] == 2000.0  # 0.2 cores for 10 streams
    assert rows[0]["broken"] == ""
    assert rows[1]["broken"] == "load generator short: 12 of 20 streams open"
    busy = judge(steps[:1], requests, cpu=[{**c, "loadgen_cpu_s": str(float(c["loadgen_cpu_s"]) * 5)} for c in cpu])
    assert busy[0]["broken"] == "load generator busy: 1.00 cores for 1 Locust process(es)"
    assert (
        judge(
            steps[:1],
            requests,
            cpu=[{**c, "loadgen_cpu_s": str(float(c["loadgen_cpu_s"]) * 5)} for c in cpu],
            workers=2,
        )[0]["broken"]
        == ""
    )
    v = capacity.verdict(rows, params(capacity_max=20), stopped_early=False)
    assert (v["max_streams_ok"], v["broken_objective"]) == (10, "load_generator")


def test_unfinished_and_aborted_streams_are_not_failures_and_unfinished_steps_are_not_judged():
    steps = [step(1, 2, 100), {"step": 2, "streams": 4, "start_unix": 111}]
    requests = [
        *held(2, 100),
        stream(101, 9, "StreamUnfinished: no first byte", kind="UNFINISHED"),
        stream(101, 8, kind="ABORTED"),
        *(probe(101 + i / 10, 5) for i in range(100)),
    ]
    rows = judge(steps, requests)
    assert len(rows) == 1 and rows[0]["broken"] == ""
    v = capacity.verdict(rows, params(capacity_max=4), stopped_early=True)
    assert (v["max_streams_ok"], v["broken_objective"]) == (2, "none")
    assert "ended before" in v["broken_detail"]
    everything = capacity.verdict(rows, params(capacity_max=2), stopped_early=False)
    assert everything["broken_detail"] == "every step held, up to capacity_max=2"


def test_a_first_step_that_breaks_leaves_no_streams_ok():
    rows = judge([step(1, 4, 100)], [*held(4, 100), probe(102, 3000, "timeout")])
    v = capacity.verdict(rows, params(capacity_max=8), stopped_early=False)
    assert v["max_streams_ok"] == 0 and v["broken_at_streams"] == 4


@pytest.fixture(scope="module")
def search(tmp_path_factory):
    """geventpool with pool_max=2: hold and release, short streams, steps of 1, 2, 4, 8, 16."""
    out = tmp_path_factory.mktemp("capacity") / "run"
    matrix_file = out.with_name("matrix.toml")
    matrix_file.write_text(
        (ROOT / "matrix.toml").read_text() + '\n[matrices.two]\nbackends = ["geventpool"]\n'
        'variants = ["hold", "release"]\nscenarios = ["smoke-stream"]\n'
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "capacity",
            "--matrix-file",
            str(matrix_file),
            "--matrix",
            "two",
            "--out",
            str(out),
            "--set",
            "pool_max=2",
            "--set",
            "capacity_max=16",
            "--set",
            "capacity_step_s=2",
            "--set",
            "chunks=6",
            "--set",
            "delay_ms=400",
            "--set",
            "probe_rate=20",
            "--set",
            "slo_probe_p99_ms=1000",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["variant"]: r for r in cellfiles.read(out / "capacity.csv")}
    return SimpleNamespace(out=out, rows=rows, stderr=result.stderr, stdout=result.stdout)


def test_holding_breaks_once_the_streams_take_the_pool_and_releasing_holds_every_step(search):
    hold, release = search.rows["hold"], search.rows["release"]
    assert hold["status"] == release["status"] == "ok"
    # two held streams take pool_max=2: the probe then waits for a connection
    assert int(hold["max_streams_ok"]) == 1 and hold["broken_at_streams"] == "2", hold
    assert hold["broken_objective"] in ("probe_p99", "failed_requests")
    assert release["max_streams_ok"] == "16" and release["broken_objective"] == "none", release
    assert int(release["leaked_conns"]) == int(hold["leaked_conns"]) == 0
    steps = cellfiles.read(search.out / "geventpool" / "release" / "smoke-stream" / "r1" / "steps.csv")
    assert [int(s["streams"]) for s in steps] == [1, 2, 4, 8, 16]
    for s in steps:  # the shape held every level: the streams were open, the pool never over its size
        assert float(s["streams_open"]) >= 0.9 * int(s["streams"]), s
        assert int(s["peak_pool_in_use"]) <= 2 and s["broken"] == ""
        assert float(s["server_cores"]) >= 0 and float(s["loadgen_cores"]) >= 0  # measured, not empty
    # a short step can fall inside one tick of the CPU clock (10 ms): the cell's steps together cannot
    for group in ("server_cores", "loadgen_cores"):
        assert sum(float(s[group]) for s in steps) > 0, group
    # the shape stopped hold one step after the first break it saw live, not at capacity_max. It
    # sees only the probes Locust has received: one still waiting for the pool at the end of the
    # break's step counts in the next, so the live break can come a step after the exact one
    hold_steps = json.loads((search.out / "geventpool" / "hold" / "smoke-stream" / "r1" / "steps.json").read_text())
    live_broken = [
        i for i, s in enumerate(hold_steps) if (s["live_probe_p99_ms"] or 0) > 1000 or s["live_failures"] > 0
    ]
    assert live_broken and live_broken[0] in (1, 2), hold_steps
    assert [s["streams"] for s in hold_steps] == [1, 2, 4, 8][: live_broken[0] + 2], hold_steps


def test_a_search_writes_its_verdicts_and_plots(search):
    for variant in ("hold", "release"):
        cell = search.out / "geventpool" / variant / "smoke-stream" / "r1"
        assert (cell / "capacity.png").stat().st_size > 10_000
        assert cellfiles.read(cell / "capacity.csv")[0]["max_streams_ok"] == search.rows[variant]["max_streams_ok"]
    assert (search.out / "capacity.png").stat().st_size > 10_000
    assert json.loads((search.out / "run.json").read_text())["kind"] == "capacity"
    assert "max streams ok" in search.stdout


def test_make_report_judges_a_capacity_run_again_from_its_raw_files(search):
    path = search.out / "capacity.csv"
    before = cellfiles.read(path)
    capacity.write_verdicts(path, [{**before[0], "max_streams_ok": 999, "broken_detail": "spoilt"}, *before[1:]])
    result = subprocess.run(
        [sys.executable, "-m", "harness", "report", str(search.out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert cellfiles.read(path) == before
    assert str(path) in result.stdout
