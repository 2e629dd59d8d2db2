"""geventpool-bounded against plain django-db-geventpool: 500 greenlets arriving at once, in a
gevent-patched process (tests/support/burst.py), on the session's real PostgreSQL (max_connections 50)."""

import json
import os
import re
import subprocess
import sys

from harness import ROOT


def burst(database, engine, options, greenlets=500, hold_s=0.05):
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "BENCH_DATABASE_URL": database.app_url,
        "BENCH_DB_ENGINE": engine,
        "BENCH_DB_OPTIONS": json.dumps(options),
    }
    result = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "support" / "burst.py"), str(greenlets), str(hold_s)],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout)


def test_plain_geventpool_overshoots_its_limit_under_a_burst(database):
    out = burst(database, "django_db_geventpool.backends.postgresql_psycopg2", {"MAX_CONNS": 4})
    # counted in the accounting, and by the connections themselves in pg_stat_activity
    assert out["peak_in_use"] > 4 * 2 and out["peak_backends"] > 4 * 2 and out["backend_pids"] > 4 * 2


def test_bounded_pool_never_exceeds_its_limit_and_serves_everyone(database):
    out = burst(database, "benchapp.db.geventpool_bounded", {"MAX_CONNS": 4, "ACQUIRE_TIMEOUT": 60})
    assert out["errors"] == []
    assert out["ok"] == 500
    assert out["peak_in_use"] == 4
    assert 1 <= out["peak_backends"] <= 4 and out["backend_pids"] <= 4
    assert out["peak_waiting"] > 400  # they did all arrive together


def test_bounded_pool_times_out_with_an_error_naming_pool_limit_and_wait(database):
    out = burst(
        database, "benchapp.db.geventpool_bounded", {"MAX_CONNS": 4, "ACQUIRE_TIMEOUT": 0.3}, greenlets=100, hold_s=0.2
    )
    assert out["peak_backends"] <= 4 and out["backend_pids"] <= 4 and out["peak_in_use"] == 4
    assert 0 < len(out["errors"]) < 100 and out["ok"] == 100 - len(out["errors"])
    pattern = (
        r"OperationalError: connection pool of database 'default' is at its limit of "
        r"MAX_CONNS=4 connections: none came free within (\d+\.\d)s \(ACQUIRE_TIMEOUT=0\.3s\)"
    )
    matches = [re.fullmatch(pattern, error) for error in out["errors"]]
    assert all(matches), out["errors"][:3]
    # the wait it names is the timeout's, late by at most what a loaded machine adds
    assert all(0.3 <= float(m.group(1)) < 2.0 for m in matches), out["errors"][:3]
