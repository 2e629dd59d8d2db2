"""A matrix with side_by_side = true (the overhead matrix) runs the cells of each repeat at the
same time, each with its own app, Locust and throwaway PostgreSQL (harness/runs/schedules.py)."""

import json

import psutil
import pytest

from harness import UsageError
from harness.measure import cpu
from harness.results import cellfiles
from harness.runs import bench, schedules
from harness.spec import matrix
from harness.stack import pglog, postgres
from tests.test_interrupt import assert_all_gone, bench_temp_dirs, descendants, running, start, wait_for

SHORT = {"streams": 8, "spawn_s": 1, "duration_s": 8, "probe_rate": 10}


@pytest.fixture(scope="module")
def side_by_side_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sbs") / "run"
    run_dir, rows = bench.run(bench.Request("overhead", overrides=SHORT, repeat=2, out=str(out)))
    return out, rows


def test_the_overhead_matrix_runs_each_repeat_side_by_side_and_the_rest_one_by_one():
    spec = matrix.load()
    cells = spec.cells("overhead", repeat=3)
    assert schedules.of(spec, "overhead").batches(cells) == [[0, 1], [2, 3], [4, 5]]
    assert [cells[i].repeat for i in (2, 3)] == [2, 2]
    default = spec.cells("default")
    assert schedules.of(spec, "default").batches(default) == [[i] for i in range(len(default))]


def test_a_side_by_side_that_is_not_true_or_false_is_refused_naming_it(tmp_path):
    path = tmp_path / "matrix.toml"
    path.write_text((matrix.MATRIX_FILE).read_text().replace("side_by_side = true", 'side_by_side = "yes"'))
    with pytest.raises(UsageError, match=r"\[matrices.overhead\] side_by_side = 'yes': use true"):
        matrix.load(path)


def test_side_by_side_refuses_an_app_or_a_database_it_cannot_give_each_lane():
    with pytest.raises(UsageError, match="HOST=http://x:1 is one app"):
        schedules.SideBySide().check("overhead", "http://x:1", None)
    with pytest.raises(UsageError, match="BENCH_DATABASE_URL names one database: unset it"):
        schedules.SideBySide().check("overhead", None, object())


def test_the_cells_of_a_repeat_load_the_machine_at_the_same_time(side_by_side_run):
    out, rows = side_by_side_run
    assert [r["status"] for r in rows] == ["ok"] * 4
    for repeat in (1, 2):
        windows = []
        for row in (r for r in rows if int(r["repeat"]) == repeat):
            cell_dir = out / row["cell"] / f"r{repeat}"
            samples = cellfiles.read(cell_dir / cpu.FILE)
            times = [float(s["unix_s"]) for s in samples]
            windows.append((min(times), max(times)))
        (a0, a1), (b0, b1) = windows
        assert abs(a0 - b0) < 3, windows  # started at one barrier
        assert min(a1, b1) - max(a0, b0) > 5, windows  # and loaded together for most of the 8 s


def test_each_lane_has_its_own_cluster_and_its_log_only_its_sessions(side_by_side_run):
    out, rows = side_by_side_run
    info = json.loads((out / "run.json").read_text())
    assert info["schedule"] == "side by side"
    logs = [c["postgres_log"] for c in info["cells"]]
    assert logs == ["postgres.log", "postgres-2.log"] * 2
    for name in set(logs):
        assert pglog.sessions(str(out / name), postgres.APP_ROLE), name
    for row in rows:
        # a lane's sessions are its cells' only: the other lane's four pooled connections are not in them
        assert int(row["peak_db_backends"]) <= int(row["pool_max"]) + 1, row


def test_the_overhead_table_says_the_cells_ran_together(side_by_side_run):
    from harness.pages import tables

    out, _ = side_by_side_run
    text = tables.table(out)
    assert "| 1 | together |" in text and "| 2 | together |" in text
    assert "side by side (`side_by_side = true`" in text
    assert "By position" not in text


def test_ctrl_c_while_two_lanes_load_stops_both_and_keeps_the_run(tmp_path):
    out = tmp_path / "run"
    temp_before = bench_temp_dirs()
    sets = [arg for k, v in {**SHORT, "duration_s": 60}.items() for arg in ("--set", f"{k}={v}")]
    with open(tmp_path / "harness.log", "w") as log:
        proc = start("bench", "--matrix", "overhead", "--out", str(out), *sets, log=log)
    wait_for(lambda: len(_locusts(proc)) == 2, 120)
    assert running(proc, "gunicorn")
    children = descendants(proc)
    proc.send_signal(2)
    assert proc.wait(30) == 130, (tmp_path / "harness.log").read_text()[-2000:]
    assert_all_gone(children)
    assert bench_temp_dirs() == temp_before
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "incomplete" and info["ended_utc"]
    assert {r["status"] for r in cellfiles.read(out / "summary.csv")} == {"incomplete"}


def _locusts(proc):
    """The Locust processes the harness started itself (one per lane)."""
    found = []
    for child in psutil.Process(proc.pid).children():
        try:
            if "locust" in " ".join(child.cmdline()):
                found.append(child)
        except psutil.Error:  # ended meanwhile
            continue
    return found
