"""The release table drawn from a run (tests/data/run)."""

import re
from pathlib import Path

import pytest

from harness import UsageError
from harness.pages import tables
from harness.results import cellfiles, findings, summary

pytestmark = pytest.mark.fast  # starts no server: make test-fast

RUN = Path(__file__).parent / "data" / "run"
ROOT_RUNS = Path(__file__).parent.parent / "docs" / "runs" / "overhead"


@pytest.fixture(scope="module")
def table():
    return tables.release_table(RUN)


def test_it_names_the_run_it_comes_from(table):
    assert "From run `20260101T000000Z-0123456789ab` (matrix `backends`, commit `0123456789ab`" in table


def test_verdicts_come_from_hold_time_against_the_stream(table):
    lines = {line.split(" | ")[0]: line for line in table.splitlines() if line.startswith("| `")}
    assert "**held for the stream**<br>4010.0 / 4000.0 ms" in lines["| `stock`"]
    assert "**released**<br>3.0 / 4000.0 ms" in lines["| `stock`"]
    assert "**held, not returned in the cell**" in lines["| `stock-persistent`"]
    assert "**partly (1500 of 4000 ms)**" in lines["| `stock-persistent`"]
    assert "skipped" in lines["| `pgbouncer`"]


def test_a_body_holding_a_connection_after_the_views_release_is_not_called_released():
    """Under the switch (or a backend giving its connection back per query), cursor-hold's
    view releases and its body checks another out for the stream: a short median over checkouts,
    one long hold, and the detector's pinned count."""
    row = {"status": "ok", "conn_hold_p50_ms": "2.9", "stream_design_ms": "12000.0", "streams_completed": "8"}
    assert findings.verdict(row) == findings.RELEASED  # a run from before the two columns
    assert findings.verdict({**row, "conn_hold_max_ms": "10263.3", "streams_pinned": "8"}) == findings.HELD_BY_BODY
    assert findings.verdict({**row, "conn_hold_max_ms": "10263.3", "streams_pinned": "0"}) == findings.RELEASED
    assert findings.verdict({**row, "conn_hold_max_ms": "80.0", "streams_pinned": "3"}) == findings.RELEASED


def test_burst_rows_show_overshoot_and_errors(table):
    # pool_wait_p99_ms is empty: the run predates that column
    assert "| `geventpool` | `hold` | 200 | 4 | 47 | 50 | 43 | 153 | 0 |  | 0 | 153 | 8 | 5.0 |" in table


def test_a_run_of_a_kind_without_a_page_is_refused_in_one_line():
    run = Path(__file__).parent.parent / "docs" / "runs" / "peer"
    with pytest.raises(UsageError, match="is a peer run: its results are in peer.csv"):
        tables.table(run)


def test_a_directory_without_a_summary_is_refused(tmp_path):
    with pytest.raises(UsageError, match="has no summary.csv"):
        tables.release_table(tmp_path)


def test_lost_writes_show_when_the_run_counted_them(tmp_path):
    import shutil

    shutil.copy(RUN / "run.json", tmp_path / "run.json")
    rows = cellfiles.read(RUN / "summary.csv")
    for row in rows:
        lost = row["variant"] == "hold"
        row.update(lost_writes=5 if lost else 0, writes_expected=5)
    summary.write(tmp_path / "summary.csv", rows)
    lines = {
        line.split(" | ")[0]: line for line in tables.release_table(tmp_path).splitlines() if line.startswith("| `")
    }
    assert "**5 of 5 writes lost**" in lines["| `stock`"]
    assert ", 0 of 5 writes lost" in lines["| `stock`"]
    assert "lost writes" not in tables.release_table(RUN)  # a run from before the column


def test_a_capacity_run_gets_its_verdicts_one_row_per_cell_and_repeat():
    from harness import ROOT

    run = ROOT / "docs" / "runs" / "capacity-5000-repeat3"
    rows = cellfiles.read(run / "capacity.csv")
    text = tables.table(run)
    lines = [line for line in text.splitlines() if line.startswith("| geventpool-bounded/")]
    assert len(lines) == len(rows) > 1
    for line, row in zip(lines, rows, strict=True):
        assert f"| {row['repeat']} | {row['max_streams_ok']} |" in line and row["broken_detail"] in line


def test_an_overhead_run_gets_each_repeats_pair_and_the_paired_comparison():
    from harness import ROOT

    run = ROOT / "docs" / "runs" / "overhead" / "at-e2921f8"
    text = tables.table(run)
    assert text.startswith("# What the measuring costs")
    pairs = [line for line in text.splitlines() if line.startswith("| ") and line[2].isdigit()]
    # server cores, load generator cores, each cell's server cores per load-generator core
    assert pairs[0] == "| 1 | first | 0.392 | 0.372 | +5.4 % | 0.158 | 0.163 | +8.7 % | 37.7 | 30.3 | 20.0 | 20.01 |"
    assert [line.split(" | ")[4] for line in pairs] == ["+5.4 %", "+6.5 %", "+15.6 %"]
    assert [line.split(" | ")[7] for line in pairs] == ["+8.7 %", "+7.1 %", "+4.7 %"]
    assert "**Against the load generator:** the instrumentation costs +6.9 %" in text
    assert "its cores and the server's correlate at r = 0.98" in text
    # three pairs cannot give 95 %: the interval says the confidence it has
    assert "75.0 % confidence interval +5.4 to +15.6 %" in text
    assert "instrumented first, median +6.5 % (3 repeats)." in text
    assert "Wilcoxon signed-rank p = 0.75: not significantly different" in text


def test_an_overhead_pair_in_either_order_counts_by_position(tmp_path):
    import csv
    import shutil

    from harness import ROOT

    source = ROOT / "docs" / "runs" / "overhead" / "at-e2921f8"
    shutil.copy(source / "run.json", tmp_path / "run.json")
    rows = cellfiles.read(source / "summary.csv")
    rows[2], rows[3] = rows[3], rows[2]  # repeat 2: the uninstrumented cell first
    for row in rows:
        row["loadgen_cores"] = ""  # Locust's workers on other machines: no control
    with open(tmp_path / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    text = tables.table(tmp_path)
    assert "| 2 | second | 0.44 | 0.413 | +6.5 % | 44.3 |" in text
    assert "load generator cores" not in text and "**Against the load generator" not in text
    assert "instrumented first, median +10.5 % (2 repeats); instrumented second, median +6.5 % (1 repeat)." in text


def test_a_control_that_moved_is_flagged():
    """docs/runs/overhead/abba-10: the load generator used less CPU in the instrumented cells
    (interval -8.5 to -0.6 %), so the cost against it is flagged; repeat-20's control stayed."""
    from harness import ROOT

    runs = ROOT / "docs" / "runs" / "overhead"
    flag = "Here its interval excludes 0: the control moved too"
    moved = tables.table(runs / "abba-10")
    assert "instrumented minus not, -4.1 %" in moved and flag in moved
    stayed = tables.table(runs / "repeat-20")
    assert "instrumented minus not, +2.1 %" in stayed and flag not in stayed
    assert "the instrumentation costs +5.4 % (Hodges-Lehmann estimate over 20 repeats)" in stayed


def _overhead_copy(tmp_path, change):
    import csv
    import shutil

    from harness import ROOT

    source = ROOT / "docs" / "runs" / "overhead" / "at-e2921f8"
    shutil.copy(source / "run.json", tmp_path / "run.json")
    rows = cellfiles.read(source / "summary.csv")
    change(rows)
    with open(tmp_path / "summary.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return tables.table(tmp_path)


def test_a_repeat_without_a_figure_is_left_out_and_said(tmp_path):
    def change(rows):
        rows[2]["server_cores"] = ""  # repeat 2, instrumented: no CPU samples
        rows[5]["status"] = "failed"  # repeat 3, uninstrumented
        rows[0]["loadgen_cores"] = "0.0"  # no control then

    text = _overhead_copy(tmp_path, change)
    assert "over 1 repeat);" in text and "- **Left out:** repeats 2, 3, where a cell failed" in text
    assert "**Against the load generator" not in text


def test_two_instrumented_cells_in_one_repeat_are_refused(tmp_path):
    def change(rows):
        rows[1]["instrument"] = "True"

    with pytest.raises(
        UsageError, match="repeat 1 has two cells of geventpool-bounded/release/gevent with instrument=True"
    ):
        _overhead_copy(tmp_path, change)


def test_an_overhead_run_with_the_servers_kernel_time_splits_the_cost(tmp_path):
    """Here all the cost is in the kernel: each instrumented cell's system cores are its twin's
    plus the whole difference of their server cores."""

    def change(rows):
        by_repeat = {}
        for row in rows:
            by_repeat.setdefault(row["repeat"], {})[row["instrument"]] = row
        for pair in by_repeat.values():
            on, off = pair["True"], pair["False"]
            off["server_system_cores"] = "0.05"
            on["server_system_cores"] = str(0.05 + float(on["server_cores"]) - float(off["server_cores"]))

    text = _overhead_copy(tmp_path, change)
    assert "**Server CPU:** the instrumentation costs +8.5 %" in text
    assert "**Of it, in the kernel:** system calls and page faults, instrumented minus not, +8.5 %" in text
    assert re.search(r"\*\*Of it, in user space:\*\* the rest, [+-]0\.0 %", text)  # float rounding either way
    assert "in the kernel" not in tables.table(ROOT_RUNS / "at-e2921f8")  # a run from before it was sampled


DOCS = Path(__file__).parent.parent / "docs"
# each findings page and the committed run it is drawn from
PAGES = {
    "backends.md": "backends",
    "servers.md": "servers",
    "safety.md": "safety",
    "capacity.md": "capacity-backends",
    "servers-capacity.md": "servers-capacity",
    "overhead.md": "overhead/side-by-side",
    "switch.md": "switch-3",
    "query-cost.md": "query-cost",
}


@pytest.mark.parametrize("page", PAGES)
def test_a_findings_page_is_what_its_committed_run_gives(page):
    """No page can drift from the run it names: `make table RUN=docs/runs/<run>` gives it."""
    run = DOCS / "runs" / PAGES[page]
    text = (DOCS / page).read_text()
    assert f"From run `{run.name}`" in text
    assert tables.table(run) == text, f"regenerate it: make table RUN={run.relative_to(DOCS.parent)} TABLE=docs/{page}"
