"""The timeline of a cell: PostgreSQL's view (pg_stat_activity) and the server's own
accounting (/metrics), sampled together every `interval` seconds into timeline.csv.

PostgreSQL is asked over a superuser connection, which keeps a reserved slot
(superuser_reserved_connections) even when the app has used up max_connections. A broken
connection (PostgreSQL restarted) is opened again at the next sample; the samples missed
meanwhile have empty PostgreSQL columns and count in `errors`.
"""

import csv
import threading
import time

import psycopg2

from harness.stack.metrics import read_metrics

COLUMNS = [
    "t_s",
    "unix_s",
    "pool_in_use",
    "pool_waiting",
    "pool_checkouts_total",
    "db_backends",
    "db_active",
    "db_idle",
    "db_idle_in_transaction",
    "db_other",
    # PgBouncer's SHOW POOLS for the app's database and role, when it goes through one: clients
    # linked to a server connection, clients waiting for one, server connections linked to a
    # client, and how long the oldest waiting client has waited (ms)
    "bouncer_cl_active",
    "bouncer_cl_waiting",
    "bouncer_sv_active",
    "bouncer_maxwait_ms",
]

ACTIVITY_SQL = """
SELECT count(*),
       count(*) FILTER (WHERE state = 'active'),
       count(*) FILTER (WHERE state = 'idle'),
       count(*) FILTER (WHERE state LIKE 'idle in transaction%%'),
       count(*) FILTER (WHERE state IS NULL OR state NOT IN
                        ('active', 'idle', 'idle in transaction', 'idle in transaction (aborted)'))
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND usename = %s AND datname = %s
  AND pid <> pg_backend_pid()
"""


def show_pools(conn, app_user, app_db) -> dict:
    """PgBouncer's SHOW POOLS row of the app's database and role, as timeline columns."""
    with conn.cursor() as cur:
        cur.execute("SHOW POOLS")
        names = [c.name for c in cur.description]
        for values in cur.fetchall():
            row = dict(zip(names, values, strict=True))
            if (row["database"], row["user"]) == (app_db, app_user):
                return {
                    "bouncer_cl_active": row["cl_active"],
                    "bouncer_cl_waiting": row["cl_waiting"],
                    "bouncer_sv_active": row["sv_active"],
                    "bouncer_maxwait_ms": round(row["maxwait"] * 1000 + row["maxwait_us"] / 1000, 1),
                }
    return {"bouncer_cl_active": 0, "bouncer_cl_waiting": 0, "bouncer_sv_active": 0, "bouncer_maxwait_ms": 0}


class Sampler(threading.Thread):
    """`db`: the database whose app sessions are counted (a postgres.Database, or anything with
    its admin_url, app_user and app_db); `server_url`: where the app serves /metrics (None: not
    sampled), read at every `metrics_every`-th sample; `pooler_url`: PgBouncer's admin console,
    when the app goes through one."""

    def __init__(self, path, db, server_url, interval=0.1, pooler_url="", metrics_every=1):
        super().__init__(name="sampler", daemon=True)
        self.path, self.admin_url, self.server_url = path, db.admin_url, server_url
        self.app_user, self.app_db, self.interval = db.app_user, db.app_db, interval
        self.pooler_url = pooler_url
        # /metrics at every `metrics_every`-th sample only: each read is a request the server
        # serves, and the exact pool timeline comes from the accounting log anyway
        self.metrics_every = metrics_every
        self.stop_event = threading.Event()
        self.samples = 0
        self.errors = 0
        self.error = None
        self.latest = None  # the newest sample, {column: value}
        self.conn = None
        self.pooler = None

    def connect(self):
        self.conn = psycopg2.connect(self.admin_url, connect_timeout=5)
        self.conn.autocommit = True
        return self

    def __enter__(self):
        self.connect().start()
        return self

    def __exit__(self, *exc):
        self.stop_event.set()
        self.join(10)
        for conn in (self.conn, self.pooler):
            if conn is not None:
                conn.close()

    def run(self):
        with open(self.path, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(COLUMNS)
            t0 = time.monotonic()
            tick = 0
            while not self.stop_event.is_set():
                writer.writerow(self.sample(time.monotonic() - t0))
                tick += 1
                # Absolute schedule: a slow sample delays the next one, never shifts them all.
                self.stop_event.wait(max(0.0, t0 + tick * self.interval - time.monotonic()))
            f.flush()

    def sample(self, t):
        row = {"t_s": f"{t:.3f}", "unix_s": f"{time.time():.3f}"}
        try:
            if self.conn is None or self.conn.closed:
                self.connect()
            with self.conn.cursor() as cur:
                cur.execute(ACTIVITY_SQL, (self.app_user, self.app_db))
                total, active, idle, idle_tx, other = cur.fetchone()
            row.update(
                db_backends=total, db_active=active, db_idle=idle, db_idle_in_transaction=idle_tx, db_other=other
            )
        except psycopg2.Error as exc:
            self._failed(exc)
            if self.conn is not None and not self.conn.closed:
                self.conn.close()  # opened again next time
        if self.pooler_url:
            try:
                if self.pooler is None or self.pooler.closed:
                    self.pooler = psycopg2.connect(self.pooler_url, connect_timeout=5)
                    self.pooler.autocommit = True  # the console takes no transactions
                row.update(show_pools(self.pooler, self.app_user, self.app_db))
            except psycopg2.Error as exc:
                self._failed(exc)
                if self.pooler is not None and not self.pooler.closed:
                    self.pooler.close()
        if self.server_url and self.samples % self.metrics_every == 0:
            try:
                row.update({k: int(v) for k, v in read_metrics(self.server_url).items()})
            except OSError as exc:
                self._failed(exc)
        self.samples += 1
        self.latest = row
        return [row.get(c, "") for c in COLUMNS]

    def _failed(self, exc):
        self.errors += 1
        self.error = f"{type(exc).__name__}: {exc}"
