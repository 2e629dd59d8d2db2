"""`make bench HOST=... DATABASE_URL=...`: a run against an app and a PostgreSQL something
else started (here: the test, with the session's cluster and its own gunicorn). The harness
starts neither, samples what it can reach and says in run.json what it did not control."""

import json
import subprocess
import sys

import psutil

from harness import ROOT
from harness.results import cellfiles
from harness.stack import postgres
from harness.stack.server import Server
from tests.conftest import SPEC


def _mentions(process, text):
    try:
        return text in " ".join(process.cmdline()) or any(text in v for v in process.environ().values())
    except psutil.Error:  # gone meanwhile, or not ours to read
        return False


def test_a_run_against_an_app_it_did_not_start(database, tmp_path):
    params = SPEC.params("atomic", {"seed_rows": 2000})  # this app runs with ATOMIC_REQUESTS
    out = tmp_path / "external"
    with Server(
        SPEC.backends["geventpool"], params, database.app_url, postgres.free_port(), tmp_path / "server.log"
    ) as app:
        before = {p.pid for p in psutil.process_iter()}
        env = {"BENCH_ADMIN_DATABASE_URL": database.admin_url, "PATH": "/usr/bin:/bin"}
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "harness",
                "bench",
                "--matrix",
                "smoke-safety",
                "--out",
                str(out),
                "--host",
                app.url,
                "--database-url",
                database.app_url,
                "--set",
                "duration_s=4",
                "--set",
                "probe_timeout_s=1",
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=300,
            env=env,
        )
        assert result.returncode == 0, result.stderr[-3000:]
        assert app.proc.poll() is None  # the harness left the app alone
        # and left no process of its own: whatever the run started names its directory in its
        # command line (Locust) or its environment (gunicorn's accounting, PostgreSQL's data);
        # other tests' processes (pytest-xdist) do not
        left = [q for q in psutil.process_iter() if q.pid not in before and _mentions(q, str(out))]
        assert not left, [q.cmdline() for q in left]

    info = json.loads((out / "run.json").read_text())
    assert info["app"] == {"controlled": False, "url": app.url, "healthz": info["app"]["healthz"]}
    assert info["app"]["healthz"]["backend"] == "geventpool"
    assert info["database"]["source"] == "BENCH_DATABASE_URL"
    assert len(info["not_controlled"]) == 2 and "no server-side accounting log" in info["not_controlled"][1]
    assert not (out / "postgres.log").exists()  # no cluster was started
    assert not list(out.rglob("server.log")) and not list(out.rglob("pgbouncer.log"))  # no app, no PgBouncer

    rows = {r["variant"]: r for r in cellfiles.read(out / "summary.csv")}
    for row in rows.values():
        assert row["status"] == "ok" and int(row["timeline_samples"]) > 0 and int(row["streams_completed"]) > 0
        assert row["peak_pool_in_use"] == "" and row["conn_hold_p50_ms"] == ""  # not reachable: empty, not 0
    # the audit rows are read from the app's database all the same
    assert int(rows["close-old"]["lost_writes"]) == int(rows["close-old"]["writes_expected"]) > 0
    assert int(rows["release"]["lost_writes"]) == 0
