"""PgBouncer's own view of its pools, sampled beside pg_stat_activity (harness/measure/sampler.py): a
real PgBouncer in transaction mode with one server connection, one client holding it in a
transaction, and another waiting for it."""

import threading
import time

import psycopg2
import pytest

from harness.measure.sampler import Sampler
from harness.results import cellfiles
from harness.stack import pgbouncer, postgres


@pytest.fixture
def bouncer(tmp_path):
    if pgbouncer.find() is None:
        pytest.skip(pgbouncer.INSTALL_HINT)  # .ci/run installs it, so CI runs this
    with (
        postgres.Cluster(20, tmp_path / "pg.log") as db,
        pgbouncer.PgBouncer(db, pool_size=1, max_clients=20, log_path=tmp_path / "pgbouncer.log") as via,
    ):
        yield db, via


def test_the_sampler_sees_a_client_wait_for_pgbouncers_only_server_connection(bouncer, tmp_path):
    db, via = bouncer
    assert via.pooler_console.endswith("/pgbouncer")
    path = tmp_path / "timeline.csv"
    holder = psycopg2.connect(via.app_url)
    waited = {}
    connected = threading.Event()

    def wait_for_it():
        with psycopg2.connect(via.app_url) as conn, conn.cursor() as cur:
            connected.set()
            started = time.monotonic()
            cur.execute("SELECT 1")  # PgBouncer queues it until the holder's transaction ends
            waited["s"] = time.monotonic() - started
        conn.close()

    with Sampler(str(path), db, None, interval=0.05, pooler_url=via.pooler_console) as sampler:
        with holder.cursor() as cur:
            cur.execute("SELECT 1")  # holder's transaction (psycopg2 opens one) keeps the server connection
        waiter = threading.Thread(target=wait_for_it)
        waiter.start()
        assert connected.wait(10)
        time.sleep(1.0)  # the waiter queued behind the holder for at least this long
        holder.commit()
        waiter.join(10)
        time.sleep(0.2)
    holder.close()
    assert sampler.errors == 0, sampler.error
    assert waited["s"] > 0.8
    rows = cellfiles.read(path)
    waiting = [r for r in rows if r["bouncer_cl_waiting"] == "1"]
    assert len(waiting) >= 5, rows
    assert all(r["bouncer_sv_active"] == "1" for r in waiting)
    assert max(float(r["bouncer_maxwait_ms"]) for r in waiting) > 500
    assert rows[-1]["bouncer_cl_waiting"] == "0"
    # PostgreSQL saw one session of the app's role: PgBouncer's one server connection
    assert max(int(r["db_backends"]) for r in rows) == 1
