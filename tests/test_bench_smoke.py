"""End to end: `python -m harness bench --matrix smoke` on real PostgreSQL, gunicorn and Locust,
then what its summary.csv says about holding versus releasing."""

import csv
import json
import subprocess
import sys

import pytest

from harness import ROOT
from harness.results import cellfiles
from tests.conftest import SPEC
from tests.test_distributed import counts_by_request

RELEASING = ["close-old", "force-close", "release"]


def bench(matrix, out, *args):
    result = subprocess.run(
        [sys.executable, "-m", "harness", "bench", "--matrix", matrix, "--out", str(out), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["variant"]: row for row in cellfiles.read(out / "summary.csv")}
    return out, rows, result


def files_outside_the_run():
    """Every file of the checkout but the environments and caches, and the home directory's
    entries, with their modification times."""
    import os

    skip = {".git", ".venv", ".venv-pg3", "__pycache__", ".pytest_cache", ".ruff_cache"}
    found = {}
    for top, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in skip and not d.startswith(".venv-")]  # environments built on demand
        for name in files:
            if name.startswith(".venv-"):  # a server environment's build lock (harness/stack/envs.py)
                continue
            path = os.path.join(top, name)
            found[path] = os.stat(path).st_mtime_ns
    home = os.path.expanduser("~")
    found.update({os.path.join(home, n): os.stat(os.path.join(home, n)).st_mtime_ns for n in os.listdir(home)})
    return found


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    before = files_outside_the_run()
    result = bench("smoke", tmp_path_factory.mktemp("bench") / "smoke")
    result[2].written_outside = sorted(set(files_outside_the_run().items()) - set(before.items()))
    return result


def test_a_run_writes_only_into_its_run_directory_and_the_temporary_directory(run):
    assert run[2].written_outside == []


@pytest.fixture(scope="module")
def safety(tmp_path_factory):
    """Also Locust distributed: two worker processes (make bench WORKERS=2)."""
    return bench("smoke-safety", tmp_path_factory.mktemp("bench") / "smoke-safety", "--set", "locust_workers=2")


def number(row, column):
    return float(row[column])


def test_every_cell_ran(run):
    out, rows, _ = run
    assert sorted(rows) == sorted(SPEC.matrices["smoke"]["variants"])
    for row in rows.values():
        assert row["status"] == "ok", row
        assert int(row["streams_completed"]) > 0
        assert int(row["stream_failures"]) == 0
        assert int(row["probe_requests"]) > 0
        # every stream answered 200 left its audit row (no ATOMIC_REQUESTS here)
        assert int(row["writes_expected"]) >= int(row["streams_completed"]) > 0
        assert int(row["lost_writes"]) == 0
        # once the clients have gone, every connection is back: none in use, the idle pool only
        assert row["leaked_conns"] == "0" and float(row["settle_s"]) < 5


def test_hold_pins_a_connection_for_the_whole_stream(run):
    _, rows, _ = run
    design = number(rows["hold"], "stream_design_ms")
    assert 0.9 * design <= number(rows["hold"], "conn_hold_p50_ms") <= 1.5 * design
    assert int(rows["hold"]["peak_pool_waiting"]) > 0


@pytest.mark.parametrize("variant", RELEASING)
def test_releasing_variants_hold_a_small_fraction_and_probes_do_not_wait(run, variant):
    _, rows, _ = run
    design = number(rows[variant], "stream_design_ms")
    assert number(rows[variant], "conn_hold_p50_ms") < 0.1 * design
    # Probes wait behind held connections only under hold: its p99 is of the order of a
    # stream, theirs of a query.
    assert number(rows["hold"], "probe_p99_ms") > 0.5 * design
    assert number(rows[variant], "probe_p99_ms") < 0.2 * number(rows["hold"], "probe_p99_ms")
    assert number(rows[variant], "pool_wait_p99_ms") < 0.1 * number(rows["hold"], "pool_wait_p99_ms")


def test_under_atomic_requests_close_old_loses_every_write_and_the_helper_none(safety):
    out, rows, _ = safety
    naive, helper = rows["close-old"], rows["release"]
    assert naive["status"] == helper["status"] == "ok"
    assert int(naive["lost_writes"]) == int(naive["writes_expected"]) >= int(naive["streams_completed"]) > 0
    assert int(helper["lost_writes"]) == 0 and int(helper["writes_expected"]) > 0
    # and the helper still gives the connection back: ATOMIC_REQUESTS' block ends before the body
    assert number(helper, "conn_hold_p50_ms") < 0.1 * number(helper, "stream_design_ms")
    # the rows the harness found in PostgreSQL are this cell's: each one a stream of the
    # release variant that requests.csv logged with its id and a 200
    cell = out / "geventpool" / "release" / "atomic" / "r1"
    answered = {(r["request_id"], r["status"]) for r in cellfiles.read_requests(cell) if r["request_id"]}
    found = cellfiles.read(cell / "audit.csv")
    assert found and all((row["request_id"], "200") in answered and row["variant"] == "release" for row in found)


def test_totals_agree_with_locusts_own_final_stats(run):
    out, rows, _ = run
    for variant in rows:
        cell = out / "geventpool" / variant / "smoke-stream" / "r1"
        final = json.loads((cell / "locust_final.json").read_text())
        with open(cell / "requests.csv") as f:
            logged = list(csv.DictReader(f))
        assert len(logged) == sum(entry["num_requests"] for entry in final)
        probes = [e for e in final if e["name"] == "/probe/"][0]
        assert int(rows[variant]["probe_requests"]) == probes["num_requests"]
        assert int(rows[variant]["probe_failures"]) == probes["num_failures"]
        streams = [e for e in final if e["method"] == "STREAM"][0]
        assert int(rows[variant]["streams_completed"]) == streams["num_requests"] - streams["num_failures"]


def test_peak_backends_seen_by_postgresql_never_exceed_what_the_server_checked_out(run):
    out, rows, _ = run
    for row in rows.values():
        # sampled at 10 Hz from pg_stat_activity, so it can only miss a peak, not invent one;
        # the pool keeps up to pool_max idle connections besides those in use
        assert 0 < int(row["peak_db_backends"]) <= max(int(row["peak_pool_in_use"]), int(row["pool_max"]))
        assert int(row["timeline_samples"]) >= 8 * int(row["duration_s"])
        assert abs(float(row["measured_s"]) - int(row["duration_s"])) < 1.5


def test_run_json_identifies_code_machine_and_parameters(run):
    out, _, _ = run
    info = json.loads((out / "run.json").read_text())
    assert info["status"] == "complete"
    assert set(info["git"]) == {"sha", "dirty"}
    assert info["machine"]["cpu_count"] >= 1 and info["machine"]["python"].startswith("3.")
    assert info["packages"]["django-db-geventpool"] == "4.0.8"
    assert info["database"]["version"] and info["database"]["max_connections"] == 50
    assert [c["cell"] for c in info["cells"]] == [
        f"geventpool/{v}/smoke-stream" for v in SPEC.matrices["smoke"]["variants"]
    ]
    assert info["cells"][0]["params"]["pool_max"] == 4
    assert info["started_utc"] < info["ended_utc"]


def test_no_process_of_the_run_is_left(run):
    import psutil

    out, _, _ = run
    leftovers = [p for p in psutil.process_iter(["cmdline"]) if str(out) in " ".join(p.info["cmdline"] or [])]
    assert leftovers == []


def test_the_run_ends_with_the_headline_table_its_plots_and_report(run):
    out, _, result = run
    assert "each variant against hold" in result.stdout
    assert "report:  " in result.stderr and (out / "report.html").exists()
    info = json.loads((out / "run.json").read_text())
    assert f"{info['started_utc']}, {info['ended_utc']}" in (out / "report.html").read_text()  # not None
    assert {p.name for p in out.glob("*.png")} == {
        "timeline-geventpool-smoke-stream.png",
        "probe-latency.png",
        "conn-hold.png",
    }


def test_distributed_totals_are_the_sum_over_the_workers_exactly(safety):
    out, rows, _ = safety
    for variant, row in rows.items():
        cell = out / "geventpool" / variant / "atomic" / "r1"
        logs = sorted(cell.glob("requests-worker*.csv"))
        assert len(logs) == 2 and not (cell / "requests.csv").exists()
        per_worker = [cellfiles.read(path) for path in logs]
        logged = [r for rows_ in per_worker for r in rows_]
        probes = [r for r in logged if r["request_type"] == "GET" and r["name"] == "/probe/"]
        assert (
            int(row["probe_requests"])
            == len(probes)
            == sum(1 for rows_ in per_worker for r in rows_ if r["name"] == "/probe/")
        )
        assert int(row["streams_completed"]) == sum(
            1 for r in logged if r["request_type"] == "STREAM" and not r["failure"]
        )
        assert all(per_worker), "both workers made requests"
        logged, locust = counts_by_request(cell)  # the last reports too: each worker quits once stopped
        assert logged == locust
    info = json.loads((out / "run.json").read_text())
    assert info["cells"][0]["params"]["locust_workers"] == 2


def test_the_detector_warns_in_the_server_log_for_holding_streams_only(run):
    """django-stream-release's middleware, as benchapp's settings install it."""
    out, rows, _ = run
    warning = "started streaming its body with database connection 'default'"
    logs = {v: (out / "geventpool" / v / "smoke-stream" / "r1" / "server.log").read_text() for v in rows}
    held = logs["hold"].count(warning)
    # one warning per stream that started sending with its connection checked out
    assert held >= int(rows["hold"]["streams_completed"]) > 0
    assert "benchapp.views.stream" in logs["hold"] and "'default' (checked out " in logs["hold"]
    for variant in RELEASING:
        assert warning not in logs[variant], variant
