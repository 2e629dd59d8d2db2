"""A PgBouncer in front of the cell's database, in transaction mode, on 127.0.0.1 and a free
port, with a server pool of pool_max connections. Like PostgreSQL it will not run as root, so
it runs as BENCH_PG_USER then. Where it is not installed, backends that need it are skipped."""

import os
import shutil
import socket
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit

from harness import CellError
from harness.stack import procs
from harness.stack.postgres import Database, free_port, run_as

INSTALL_HINT = (
    "PgBouncer is not installed: install it (Debian/Ubuntu: sudo apt-get install "
    "pgbouncer) or set BENCH_PGBOUNCER to its executable"
)


def missing_for(backend) -> bool:
    """The backend goes through PgBouncer, and there is none here: its cells are skipped (with
    INSTALL_HINT), its serve or peer refused."""
    return backend.via == "pgbouncer" and find() is None


def find() -> str | None:
    configured = os.environ.get("BENCH_PGBOUNCER")
    if configured:
        return configured if os.access(configured, os.X_OK) else None
    return shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/local/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )


class PgBouncer(procs.Service):
    """`with PgBouncer(db, pool_size, max_clients, log_path) as via:` gives a Database whose
    app_url goes through PgBouncer (admin_url still reaches PostgreSQL directly)."""

    stop_timeout = 5  # SIGTERM; what is left after that is killed

    def __init__(self, db: Database, pool_size: int, max_clients: int, log_path):
        self.db, self.pool_size, self.max_clients = db, pool_size, max_clients
        self.log_path = Path(log_path)

    def start(self) -> Database:
        executable = find()
        if executable is None:
            raise CellError(INSTALL_HINT)
        target = urlsplit(self.db.app_url)
        user = run_as()
        self.tmp = Path(self.make_tmp("bench-pgbouncer-"))
        self.tmp.chmod(0o755)
        port = free_port()
        (self.tmp / "userlist.txt").write_text(f'"{target.username}" ""\n')
        (self.tmp / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"{target.path.lstrip('/')} = host={target.hostname} port={target.port} "
            f"dbname={target.path.lstrip('/')} user={target.username}\n"
            "[pgbouncer]\n"
            f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
            f"auth_type = trust\nauth_file = {self.tmp / 'userlist.txt'}\n"
            f"pool_mode = transaction\ndefault_pool_size = {self.pool_size}\n"
            f"min_pool_size = 0\nreserve_pool_size = 0\nmax_client_conn = {self.max_clients}\n"
            "ignore_startup_parameters = extra_float_digits,options\n"
            # the app's role may read SHOW POOLS on the console (database "pgbouncer"): the sampler's
            f"stats_users = {target.username}\n"
        )
        for f in self.tmp.iterdir():
            f.chmod(0o644)
        self.proc = procs.spawn([executable, self.tmp / "pgbouncer.ini"], self.log_path, user=user, cwd=self.tmp)
        procs.wait_ready(self.proc, lambda: _listening(port), "PgBouncer", self.log_path, timeout=15)
        app_url = f"postgres://{target.username}@127.0.0.1:{port}{target.path}"
        return replace(
            self.db,
            app_url=app_url,
            source=f"{self.db.source} via PgBouncer",
            pooler_console=f"postgres://{target.username}@127.0.0.1:{port}/pgbouncer",
        )


def _listening(port):
    with socket.socket() as s:
        return True if s.connect_ex(("127.0.0.1", port)) == 0 else None


def front(stack, backend, params, db: Database, log_path) -> Database:
    """The database as the backend's app should reach it: through a PgBouncer started on
    `stack` for backends that go via PgBouncer, else directly."""
    if backend.via != "pgbouncer":
        return db
    return stack.enter_context(
        PgBouncer(
            db, pool_size=params.pool_max, max_clients=params.worker_connections * params.workers, log_path=log_path
        )
    )
