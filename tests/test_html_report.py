"""report.html and the plots of a run, from fixture files: a cell with raw files
(tests/data/cell) next to a failed one."""

import re
import shutil

import pytest

from harness.pages import html_report
from harness.results import summary
from tests.test_summary import CELL

pytestmark = pytest.mark.fast  # starts no server: make test-fast


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("run")
    cell_dir = run_dir / "geventpool" / "hold" / "slow-server" / "r1"
    shutil.copytree(CELL, cell_dir)
    (cell_dir / "test_window.json").write_text('{"test_start_unix": 1000.0, "test_stop_unix": 1008.0}')
    row = summary.summarize(cell_dir, "hold", summary.CellContext((1000.0, 1008.0), grace_end=1009.0))
    base = dict(
        run_id="r",
        backend="geventpool",
        scenario="slow-server",
        repeat=1,
        streams=4,
        pool_max=4,
        duration_s=8,
        stream_design_ms=2000.0,
    )
    rows = [
        {**base, **row, "cell": "geventpool/hold/slow-server", "variant": "hold", "status": "ok"},
        {
            **base,
            "cell": "geventpool/release/slow-server",
            "variant": "release",
            "status": "failed",
            "error": "gunicorn exited with 3",
        },
        {
            **base,
            **row,
            "cell": "geventpool/close-old/slow-server",
            "variant": "close-old",
            "status": "ok",
            "conn_hold_p50_ms": 5.0,
            "lost_writes": 3,
        },
    ]
    summary.write(run_dir / "summary.csv", rows)
    (run_dir / "run.json").write_text('{"run_id": "r", "status": "complete", "matrix": "smoke"}')
    return run_dir, html_report.write(run_dir)


def test_plots_are_written_into_the_run_directory(run):
    run_dir, _ = run
    assert sorted(p.name for p in run_dir.glob("*.png")) == [
        "conn-hold.png",
        "probe-latency.png",
        "timeline-geventpool-slow-server.png",
    ]
    assert all(p.read_bytes().startswith(b"\x89PNG") for p in run_dir.glob("*.png"))


def test_the_report_is_self_contained(run):
    _, path = run
    text = open(path).read()
    assert text.count("<img") == 3 and text.count("src='data:image/png;base64,") == 3
    assert not re.search(r"(src|href)=['\"]?(https?:)?//", text)  # nothing fetched from a network


def test_it_has_the_headline_the_summary_and_links_to_raw_files_that_exist(run):
    run_dir, path = run
    text = open(path).read()
    assert "<h2>Each variant against <code>hold</code></h2>" in text
    assert "<code>geventpool/hold/slow-server</code>" in text
    assert "gunicorn exited with 3" in text and "<tr class='bad'>" in text  # the failed cell, flagged
    links = re.findall(r"href='([^']+)'", text)
    assert "geventpool/hold/slow-server/r1/requests.csv" in links
    assert "geventpool/hold/slow-server/r1/audit.csv" in links
    assert all((run_dir / link).exists() for link in links)


def test_the_headline_gives_ratios_to_hold_and_flags_lost_writes(run):
    _, path = run
    text = open(path).read()
    row = text[text.index("<code>geventpool/close-old/slow-server</code>") :]
    row = row[: row.index("</tr>")]
    assert "<span>5</span> <span class='muted'>(÷800 vs hold)</span>" in row
    assert "<span class=bad>3</span>" in row
