"""`python -m harness detector-cost` end to end with a few requests: the table is there, the
pinned streams did warn (in the handler with the middleware), and bad input is refused."""

import subprocess
import sys

from harness import ROOT
from harness.results import cellfiles


def detector_cost(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "harness", "detector-cost", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_it_measures_each_kind_with_and_without_the_middleware(tmp_path):
    out = tmp_path / "run"
    result = detector_cost("--requests", "10", "--repeats", "3", "--out", str(out))
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["request"]: r for r in cellfiles.read(out / "detector_cost.csv")}
    assert sorted(rows) == ["probe", "stream-hold", "stream-release"]
    for row in rows.values():
        assert float(row["without_us_p50"]) > 0
        for cost in ("cost_us", "middleware_alone_us"):
            assert float(row[f"{cost}_min"]) <= float(row[f"{cost}_p50"]) <= float(row[f"{cost}_max"])
    log = (out / "server.log").read_text()
    # 20 warm-up and 3 x 10 measured requests of stream-hold through the middleware, one warning each
    assert log.count("benchapp.views.stream started streaming its body with database connection 'default'") == 50
    # and the middleware alone on a held connection: 3 x 100 (no view resolved: the label is bounded)
    assert log.count("<unresolved> started streaming its body with database connection 'default'") == 300
    assert "complete" in (out / "run.json").read_text()


def test_too_few_requests_are_refused_before_anything_starts(tmp_path):
    result = detector_cost("--requests", "1", "--out", str(tmp_path / "run"))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: REQUESTS=1 is too small: use at least 10"
    assert not (tmp_path / "run").exists()
