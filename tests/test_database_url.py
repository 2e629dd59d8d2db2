"""The database URL's query string reaches the app's connections as it reaches the harness's:
sslmode, application_name and libpq's options, read by dj-database-url in benchapp/settings.py
and in a target's settings shim, on psycopg2 and on psycopg 3 (their server environments)."""

import json
import subprocess
import textwrap

import pytest

from harness import ROOT
from harness.stack import postgres
from harness.stack.envs import python_for
from harness.stack.server import server_env
from tests.conftest import SPEC

QUERY = "sslmode=disable&application_name=from-the-url&options=-c%20statement_timeout%3D4321"
CHECK = textwrap.dedent("""
    import json, django
    django.setup()
    from django.db import connection
    with connection.cursor() as cur:
        cur.execute("SELECT current_setting('application_name'), current_setting('statement_timeout'), "
                    "current_setting('ssl', true)")
        print(json.dumps(cur.fetchone()))
""")


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    with postgres.Cluster(20, tmp_path_factory.mktemp("pg") / "pg.log") as database:
        yield database


@pytest.mark.parametrize("backend", ["stock", "geventpool", "native-pool"])
def test_the_urls_query_string_reaches_the_apps_connection(db, backend):
    b = SPEC.backends[backend]
    params = SPEC.params("smoke-stream")
    env = server_env(b, params, f"{db.app_url}?{QUERY}", 0)
    result = subprocess.run(
        [python_for(b.env), "-c", CHECK], env=env, cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    name, timeout, _ = json.loads(result.stdout)
    assert (name, timeout) == ("from-the-url", "4321ms")


def test_a_target_gets_the_urls_query_string_too(db, tmp_path):
    from harness.spec import target as targets
    from harness.spec.matrix import OWN
    from harness.stack.server import target_env
    from tests.support import target_project

    target = targets.load(target_project.make(tmp_path))
    env = target_env(target, OWN, SPEC.params("own-slow-read"), f"{db.app_url}?{QUERY}")
    result = subprocess.run(
        [python_for("bench"), "-c", CHECK], env=env, cwd=target.project, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)[:2] == ["from-the-url", "4321ms"]
