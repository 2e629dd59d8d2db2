"""make peer: slowhttptest's slow-read mode and our slow client hold the same connections
against one real server, and the CPU each used is measured."""

import os
import subprocess
import sys

import pytest

from harness import ROOT, UsageError
from harness.results import cellfiles
from harness.studies import peer
from tests.conftest import SPEC


def test_a_read_rate_slowhttptest_cannot_keep_or_a_body_shorter_than_the_run_is_refused():
    p = SPEC.params("peer-slow-read")
    peer.check(p, "here")
    with pytest.raises(UsageError, match="read_rate_bps=1000 in here: slowhttptest reads at most 576 bytes"):
        peer.check(SPEC.params("peer-slow-read", {"read_rate_bps": 1000}), "here")
    with pytest.raises(UsageError, match="lasts 32 s, less than the run: raise chunks or chunk_bytes"):
        peer.check(SPEC.params("peer-slow-read", {"chunks": 1}), "here")


@pytest.mark.skipif(peer.find() is None, reason=peer.INSTALL_HINT)  # .ci/run installs it
def test_both_clients_hold_every_connection_and_their_cpu_is_measured(tmp_path):
    out = tmp_path / "peer"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "peer",
            "--out",
            str(out),
            "--set",
            "streams=100",
            "--set",
            "spawn_s=2",
            "--set",
            "duration_s=8",
            "--set",
            "worker_connections=200",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["client"]: r for r in cellfiles.read(out / "peer.csv")}
    assert set(rows) == {"slowhttptest", "locust"}
    for row in rows.values():
        assert 95 <= float(row["streams_open"]) <= 100, row  # every connection held through the measured part
        assert row["streams_closed"] == "0", row
        assert row["client_cores"] != "" and float(row["server_cores"]) >= 0, row  # sampled
    # ours (Locust, its stats, a greenlet per stream) is measurable even at 100 connections;
    # slowhttptest's one read a second per connection may stay under the CPU clock's 10 ms ticks
    ours, theirs = float(rows["locust"]["client_cores"]), float(rows["slowhttptest"]["client_cores"])
    assert ours > 0
    if theirs > 0:
        assert float(rows["locust"]["client_cpu_ratio_to_slowhttptest"]) == pytest.approx(ours / theirs, abs=0.01)
    else:
        assert rows["locust"]["client_cpu_ratio_to_slowhttptest"] == ""
    flat = result.stderr.replace("\n", "")
    assert "│ locust" in flat and os.path.relpath(out / "peer.csv", ROOT) in flat  # the table, and where it went
