"""`python -m harness compare` on fixture runs with known ratios (tests/data/compare): three
repeats a side, a failed and an incomplete cell, cells on one side only, a parameter that
differs, and a single repeat (where only a change far beyond noise is marked)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from harness import ROOT, UsageError
from harness.results import compare, runinfo

pytestmark = pytest.mark.fast  # starts no server: make test-fast

DATA = Path(__file__).parent / "data" / "compare"
METRICS = ["probe_p99_ms", "conn_hold_p50_ms", "streams_completed"]


@pytest.fixture(scope="module")
def result():
    _, base, base_info = compare.load(DATA / "base")
    _, new, new_info = compare.load(DATA / "new" / "summary.csv")  # a file works as well as a directory
    rows, only_base, only_new = compare.compare(base, new, METRICS)
    return {(r.cell, r.metric): r for r in rows}, only_base, only_new, compare.parameter_changes(base_info, new_info)


def test_ratios_are_of_the_medians_and_marks_need_apart_spreads(result):
    rows, *_ = result
    worse = rows[("g/release/s", "probe_p99_ms")]  # 10, 11, 12 -> 22, 23, 24
    assert (worse.base.median, worse.new.median, round(worse.ratio, 4)) == (11, 23, round(23 / 11, 4))
    assert worse.mark == compare.WORSE
    better = rows[("g/release/s", "conn_hold_p50_ms")]  # 3, 4, 5 -> 1, 1.5, 2
    assert better.ratio == 0.375 and better.mark == compare.BETTER
    # overlapping spreads: 5000..5010 against 5001..5008
    assert rows[("g/hold/s", "probe_p99_ms")].mark == compare.SAME
    # apart but within the threshold: 15, 15, 16 against 15, 15, 15 overlap anyway
    assert rows[("g/hold/s", "streams_completed")].mark == compare.SAME
    assert rows[("g/release/s", "streams_completed")].mark == compare.SAME  # equal


def test_a_difference_within_the_threshold_is_not_significant_even_when_spreads_are_apart():
    base = compare.Side(["ok"] * 3, [100, 100, 100])
    assert compare.mark("probe_p99_ms", base, compare.Side(["ok"] * 3, [104, 104, 104])) == compare.SAME
    assert compare.mark("probe_p99_ms", base, compare.Side(["ok"] * 3, [106, 106, 106])) == compare.WORSE


def test_a_repeat_that_failed_makes_the_cell_failing_and_shows():
    base = compare.Side(["ok"] * 3, [10, 11, 12])
    partly = compare.Side(["ok", "failed", "incomplete"], [30])
    assert compare.mark("probe_p99_ms", base, partly) == compare.NEWLY_FAILING
    assert compare.mark("probe_p99_ms", partly, base) == compare.FIXED
    assert partly.text() == "30 [1/3 ok]"
    skipped = compare.Side(["skipped"], [])
    assert compare.mark("probe_p99_ms", base, skipped) == compare.NOT_COMPARABLE  # PgBouncer missing: not run


def test_headline_is_each_variant_against_hold_of_its_backend_and_scenario():
    _, rows, _ = compare.load(DATA / "new")
    table = dict(compare.headline(rows, ["probe_p99_ms"]))
    hold, hold_ratio = table["g/hold/s"]["probe_p99_ms"]
    release, ratio = table["g/release/s"]["probe_p99_ms"]
    assert (hold.median, hold_ratio) == (5003, None)
    assert (release.median, ratio) == (23, 23 / 5003)
    assert compare.format_ratio(ratio) == "÷218"
    assert table["g/close-old/s"]["probe_p99_ms"][1] is None  # failed: no ratio


def test_a_cell_that_leaked_in_any_repeat_is_marked_in_the_headline(tmp_path):
    from rich.console import Console

    from harness.pages import html_report, terminal

    rows = [
        {"cell": "g/hold/s", "repeat": 1, "status": "ok", "leaked_conns": "0"},
        {"cell": "g/release/s", "repeat": 1, "status": "ok", "leaked_conns": "0"},
        {"cell": "g/release/s", "repeat": 2, "status": "ok", "leaked_conns": "2"},
    ]
    labels = [compare.label(cell, values) for cell, values in compare.headline(rows)]
    assert labels == ["g/hold/s", f"g/release/s {compare.LEAK_MARK}"]
    console = Console(record=True, width=250)
    terminal.print_headline(rows, console)
    assert f"g/release/s {compare.LEAK_MARK}" in console.export_text()
    assert f"<code>g/release/s</code> <span class=bad>{compare.LEAK_MARK}</span>" in html_report._headline(rows)


def test_more_is_better_where_more_is_better():
    base = compare.Side(["ok"] * 3, [10, 11, 12])
    more = compare.Side(["ok"] * 3, [20, 21, 22])
    assert compare.mark("streams_completed", base, more) == compare.BETTER
    assert compare.mark("probe_failures", base, more) == compare.WORSE


def test_status_changes_are_marked_per_cell(result):
    rows, *_ = result
    assert rows[("g/close-old/s", "probe_p99_ms")].mark == compare.NEWLY_FAILING
    assert rows[("g/force-close/s", "probe_p99_ms")].mark == compare.FIXED
    lines = compare.table(list(rows.values()))
    failing = [line for line in lines if line[0] == "g/close-old/s"]
    assert failing == [["g/close-old/s", "status", "ok", "failed/incomplete", "", compare.NEWLY_FAILING]]


def test_cells_on_one_side_are_listed_not_dropped(result):
    _, only_base, only_new, _ = result
    assert only_base == ["g/guarded-close/s"]
    assert only_new == ["g/cursor-hold/s"]


def test_parameters_that_differ_are_named(result):
    *_, changes = result
    assert changes["g/hold/s"] == ["pool_max 4 → 8"]


def test_a_single_repeat_says_so_and_marks_only_changes_far_beyond_noise():
    """asv's way: with no repeats to test, a change by a factor of 2 or more is still marked
    (here probe p99 4x and the hold 3x, both worse); a smaller one says there are too few
    repeats to tell, never "not significant"."""
    _, base, _ = compare.load(DATA / "single-base")
    _, new, _ = compare.load(DATA / "single-new")
    rows, _, _ = compare.compare(base, new, METRICS)
    assert {r.metric: r.mark for r in rows} == {
        "probe_p99_ms": compare.WORSE,
        "conn_hold_p50_ms": compare.WORSE,
        "streams_completed": compare.TOO_FEW,
    }
    assert {r.metric: round(r.ratio, 3) for r in rows} == {
        "probe_p99_ms": 4.0,
        "conn_hold_p50_ms": 3.0,
        "streams_completed": 0.625,
    }


def harness(*args):
    return subprocess.run(
        [sys.executable, "-m", "harness", "compare", *map(str, args)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_markdown_table_for_a_pull_request():
    out = harness(DATA / "base", DATA / "new", "--format", "md", "--metric", "probe_p99_ms")
    assert out.returncode == 0, out.stderr
    assert "| cell | metric | base | new | ratio | mark |" in out.stdout
    assert "| `g/release/s` | `probe_p99_ms` | 11 (10–12, n=3) | 23 (22–24, n=3) | 2.09× | **worse** |" in out.stdout
    assert "- only in new:  g/cursor-hold/s" in out.stdout


@pytest.mark.parametrize(
    "rule, fails",
    [
        ("probe_p99_ms>2", True),  # 2.09x, significant
        ("probe_p99_ms>2.5", False),
        ("conn_hold_p50_ms>1.1", False),  # it got better
        ("streams_completed<0.9", False),
    ],
)
def test_fail_on_exits_1_on_a_regression_beyond_the_ratio(rule, fails):
    # g/close-old/s newly fails in the fixtures, which fails any --fail-on by itself
    out = harness(DATA / "base", DATA / "new", "--metric", "stream_failures", "--fail-on", rule)
    assert "FAIL g/close-old/s: newly failing" in out.stderr
    assert "FAIL g/guarded-close/s: missing from the new run" in out.stderr
    assert ("FAIL g/release/s: probe_p99_ms" in out.stderr) == fails
    assert f"| {rule.split('>')[0].split('<')[0]} " in out.stdout.replace("│", "|")  # a rule's metric is compared
    assert out.returncode == 1


def test_fail_on_with_repeats_needs_a_significant_regression(result):
    rows, *_ = result
    kept = [r for r in rows.values() if r.cell in ("g/hold/s", "g/release/s")]
    rules = compare.parse_fail_on(["probe_p99_ms>1.001"])
    # hold's 1.00x is not significant; release's 2.09x is
    assert compare.failures(kept, rules) == [
        "g/release/s: probe_p99_ms 11 (10–12, n=3) → 23 (22–24, n=3), ratio 2.09× > 1.001"
    ]
    assert compare.failures(kept, compare.parse_fail_on(["probe_p99_ms>2.5"])) == []
    assert compare.failures(kept, []) == []


def test_fail_on_with_a_single_repeat_goes_by_the_ratio_and_says_so():
    out = harness(DATA / "single-base", DATA / "single-new", "--fail-on", "probe_p99_ms>1.5")
    assert out.returncode == 1
    assert "FAIL g/release/s: probe_p99_ms 10 → 40, ratio 4.00× > 1.5 (single repeat)" in out.stderr
    assert harness(DATA / "single-base", DATA / "single-new", "--fail-on", "probe_p99_ms>5").returncode == 0


@pytest.mark.parametrize(
    "args, message",
    [
        (["--fail-on", "probe_p99_ms=1.2"], "--fail-on 'probe_p99_ms=1.2' must look like METRIC>RATIO"),
        (["--fail-on", "probes>1.2"], "'probes' is not compared"),
        (["--metric", "nope"], "--metric nope is not compared"),
        (["--fail-on", "streams_completed>1.2"], "more streams_completed is better, so a regression is a ratio < 1"),
    ],
)
def test_bad_arguments_are_one_line_and_exit_2(args, message):
    out = harness(DATA / "base", DATA / "new", *args)
    assert out.returncode == 2
    assert message in out.stderr and out.stderr.count("\n") == 1


def test_a_path_that_is_no_run_is_refused(tmp_path):
    with pytest.raises(UsageError, match="neither a run directory with a summary.csv nor a summary.csv"):
        compare.load(tmp_path)
    with pytest.raises(UsageError, match="compare needs two runs"):
        compare.run([DATA / "base"])


def test_fail_on_passes_when_nothing_regressed():
    assert harness(DATA / "base", DATA / "base", "--fail-on", "probe_p99_ms>1.01").returncode == 0


def test_an_older_run_is_read_with_its_missing_columns_empty_and_says_so(tmp_path):
    """A run of format 1 (from before run.json recorded it) compares with a current one; what
    it lacks is unknown, not zero."""
    old = ROOT / "docs" / "runs" / "20261121T194241Z-994b08a60cd9"
    assert runinfo.run_format(json.loads((old / "run.json").read_text())) == 1
    result = harness(old, ROOT / "docs" / "runs" / "backends", "--metric", "conn_hold_p50_ms")
    assert result.returncode == 0, result.stderr
    # one line for it (the other run, older than the columns added since, may have one of its own)
    said = [line for line in result.stderr.splitlines() if line.startswith(f"{old}: run format 1")]
    assert len(said) == 1 and "compared as empty" in said[0]
    _, rows, _ = compare.load(old)
    assert all(row["db_backends_from"] == "" for row in rows)  # a column added since


def test_a_newer_run_is_refused_in_one_line(tmp_path):
    newer = tmp_path / "newer"
    shutil.copytree(DATA / "single-base", newer)
    info = json.loads((newer / "run.json").read_text()) if (newer / "run.json").exists() else {}
    (newer / "run.json").write_text(json.dumps({**info, "format": runinfo.FORMAT + 1}))
    result = harness(newer, DATA / "single-new")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and f"run format {runinfo.FORMAT + 1}" in result.stderr
