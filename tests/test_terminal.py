"""What a run prints at its end (harness/pages/terminal.py)."""

import io

import pytest
from rich.console import Console

from harness.pages import terminal

pytestmark = pytest.mark.fast  # starts no server: make test-fast

ROW = {"cell": "own/export/own-slow-read", "status": "ok", "conn_hold_p50_ms": 9000.0, "streams_pinned": 7}


@pytest.mark.parametrize(
    "row, shown",
    [
        ({**ROW, "target": "mysite", "stream_total_p50_ms": 10012.5}, True),
        ({**ROW, "target": "", "release_all_streams": "True"}, True),
        ({**ROW, "target": "", "release_all_streams": "False"}, False),
    ],
)
def test_a_targets_table_shows_the_pinned_streams_and_their_length(row, shown):
    keys = [key for key, _ in terminal.table_columns([row])]
    assert ("streams_pinned" in keys and "stream_total_p50_ms" in keys) == shown
    out = io.StringIO()
    terminal.print_table([row], Console(file=out, width=400))
    assert ("pinned" in out.getvalue()) == shown
    if shown and row.get("stream_total_p50_ms"):
        assert "10012.5" in out.getvalue()
