"""The release table drawn from a run (tests/data/run)."""

from pathlib import Path

import pytest

from harness import UsageError, summary, tables

RUN = Path(__file__).parent / "data" / "run"


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


def test_burst_rows_show_overshoot_and_errors(table):
    assert "| `geventpool` | `hold` | 200 | 4 | 47 | 50 | 43 | 153 | 0 | 0 | 153 | 8 | 5.0 |" in table


def test_a_directory_without_a_summary_is_refused(tmp_path):
    with pytest.raises(UsageError, match="has no summary.csv"):
        tables.release_table(tmp_path)


def test_lost_writes_show_when_the_run_counted_them(tmp_path):
    import shutil

    from harness import summary

    shutil.copy(RUN / "run.json", tmp_path / "run.json")
    rows = summary.read(RUN / "summary.csv")
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
    rows = summary.read(run / "capacity.csv")
    text = tables.table(run)
    lines = [line for line in text.splitlines() if line.startswith("| geventpool-bounded/")]
    assert len(lines) == len(rows) > 1
    for line, row in zip(lines, rows, strict=True):
        assert f"| {row['repeat']} | {row['max_streams_ok']} |" in line and row["broken_detail"] in line
