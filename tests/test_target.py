"""A target: your own Django project under the harness (harness/spec/target.py). The target file's
refusals, and `python -m harness serve --target` on a project made by `django-admin
startproject` (tests/support/target_project.py): its migrations run, its views served with the
accounting and the detector, whose warnings name the views that pin a connection."""

import json
import os
import signal
import subprocess
import sys
import urllib.request

import pytest

from harness import ROOT, UsageError
from harness.spec import target
from tests.support import target_project


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return target_project.make(tmp_path_factory.mktemp("target"))


def test_a_good_target_file_loads(project):
    t = target.load(project)
    assert t.project == project.parent / "mysite" and t.settings == "mysite.settings"
    assert [s.name for s in t.streams] == ["iterator", "query", "released"] and t.probe == "/health/db/"


@pytest.mark.parametrize(
    "change, message",
    [
        (('[target.probe]\npath = "/health/db/"\n', ""), "[target.probe] is missing or has keys other than path"),
        (('project = "mysite"', 'project = "elsewhere"'), "target.project='elsewhere' has no manage.py"),
        (('name = "query"', 'name = "Query CSV"'), "target.streams[1].name='Query CSV' is not a kebab-case name"),
        (('name = "query"', 'name = "iterator"'), "target.streams[1].name='iterator' is used twice"),
        (
            ('path = "/exports/query.csv"', 'path = "exports/query.csv"'),
            "target.streams[1].path='exports/query.csv' is not a URL path",
        ),
        (('settings = "mysite.settings"\n', ""), "target.settings is missing"),
        (
            ('wsgi = "mysite.wsgi:application"', 'wsgi = "mysite.wsgi"'),
            "target.wsgi='mysite.wsgi' is not module:attribute",
        ),
        (("[target]", "[target]\nport = 1"), "[target] port is not a key of a target"),
        (
            ('asgi = "mysite.asgi:application"', 'asgi = "mysite.asgi"'),
            "target.asgi='mysite.asgi' is not module:attribute",
        ),
    ],
)
def test_a_bad_target_file_is_refused_in_one_line_naming_the_key(project, tmp_path, change, message):
    bad = project.with_name(f"bad-{abs(hash(message))}.toml")
    text = project.read_text()
    assert change[0] in text
    bad.write_text(text.replace(change[0], change[1], 1))
    with pytest.raises(UsageError) as raised:
        target.load(bad)
    text = str(raised.value)
    assert text.startswith(f"TARGET={bad}: {message}") and "\n" not in text
    assert len(text.split(": ")) >= 3  # the key, the problem, then the fix


def serve(project, *args):
    """`harness serve --target`, its logs in a directory of the project's (not the checkout's)."""
    from harness.stack.postgres import free_port

    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "serve",
            "--target",
            str(project),
            "--port",
            str(port),
            "--log-dir",
            str(project.parent / "serve-logs"),
            *args,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    return proc, port


def serving(proc) -> str:
    """What `harness serve` printed up to "Ctrl-C stops both" (its stderr too, if it ended)."""
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if "Ctrl-C stops both" in line:
            return "".join(lines)
    return "".join(lines) + proc.stderr.read()


def serve_changed(project, name, old, new):
    """make serve TARGET= on a copy of the target file with `old` replaced by `new`: (the copy,
    the exit code, stderr)."""
    bad = project.with_name(f"bad-{name}.toml")
    assert old in project.read_text()
    bad.write_text(project.read_text().replace(old, new))
    proc, _ = serve(bad)
    _, err = proc.communicate(timeout=180)
    return bad, proc.returncode, err


def test_an_asgi_server_without_target_asgi_is_refused_before_anything_starts(project):
    bare = project.with_name("bad-no-asgi.toml")
    bare.write_text(project.read_text().replace('asgi = "mysite.asgi:application"\n', ""))
    assert target.load(bare).application("wsgi") == "mysite.wsgi:application"
    proc, _ = serve(bare, "--server", "uvicorn")
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 2, err
    assert err.strip() == (
        f"error: TARGET={bare}: target.asgi is missing, and an ASGI server needs it: set it to "
        'your ASGI application, e.g. "mysite.asgi:application"'
    )
    bad = project.with_name("bad-asgi-import.toml")
    bad.write_text(
        project.read_text().replace('asgi = "mysite.asgi:application"', 'asgi = "mysite.nosuch:application"')
    )
    proc, _ = serve(bad, "--server", "uvicorn")
    _, err = proc.communicate(timeout=180)
    assert proc.returncode == 2, err
    assert err.strip().startswith(
        f"error: TARGET={bad}: target.asgi='mysite.nosuch:application' does not import "
        "(ModuleNotFoundError: No module named 'mysite.nosuch')"
    ), err


def test_settings_that_do_not_import_are_refused_before_anything_starts(project):
    bad, code, err = serve_changed(project, "settings", 'settings = "mysite.settings"', 'settings = "mysite.nosuch"')
    assert code == 2, err
    assert err.strip().startswith(
        f"error: TARGET={bad}: target.settings='mysite.nosuch' does not import "
        "(ModuleNotFoundError: No module named 'mysite.nosuch')"
    )


def test_an_async_stream_under_a_wsgi_server_is_refused_before_anything_starts(project):
    """An async view under gevent fails every request (SynchronousOnlyOperation from its async
    ORM calls, docs/facts.md): the run is refused with the fix, and allowed under an ASGI server."""
    from harness.spec import matrix
    from harness.stack.server import check_target_imports

    events = project.with_name("events.toml")
    events.write_text(
        project.read_text().replace(
            "[target.probe]", '[[target.streams]]\nname = "events"\npath = "/events/"\n\n[target.probe]'
        )
    )
    t, params = target.load(events), matrix.load().params("own-slow-read")
    with pytest.raises(UsageError, match=r"stream 'events' \(/events/\) is an async view, .*SERVER=uvicorn"):
        check_target_imports(t, matrix.OWN, params, "wsgi")
    check_target_imports(t, matrix.OWN, params, "asgi")
    check_target_imports(target.load(project), matrix.OWN, params, "wsgi")  # its sync streams are fine there


def test_a_failed_request_is_told_by_its_exception_line_and_log(tmp_path):
    from harness.stack.server import last_exception

    log = tmp_path / "server.log"
    log.write_text(
        "[INFO] Booting worker\nInternal Server Error: /old/\nTraceback (most recent call last):\n"
        '  File "x.py", line 1, in f\nValueError: an earlier one\n'
        "Internal Server Error: /events/\nTraceback (most recent call last):\n"
        '  File "views.py", line 9, in body\n    yield await Order.objects.acount()\n'
        "django.core.exceptions.SynchronousOnlyOperation: You cannot call this from an async context\n"
        "[INFO] Handling signal: term\n"
    )
    assert last_exception(log) == (
        "django.core.exceptions.SynchronousOnlyOperation: You cannot call this from an async context"
    )
    assert last_exception(log, start=log.read_text().index("[INFO] Handling")) is None
    assert last_exception(tmp_path / "missing.log") is None


def test_a_stream_that_does_not_answer_200_on_warm_up_is_refused(project):
    bad, code, err = serve_changed(project, "stream", 'path = "/exports/query.csv"', 'path = "/exports/nosuch.csv"')
    assert code == 1, err
    assert f"error: TARGET={bad}: stream 'query' (/exports/nosuch.csv) answered 404 on warm-up, not 200" in err


def test_a_probe_that_never_touches_the_database_is_refused(project):
    _, code, err = serve_changed(project, "probe", 'path = "/health/db/"', 'path = "/health/"')
    assert code == 1, err
    assert "the probe /health/ never touched the database" in err


def test_serve_runs_the_project_with_the_accounting_and_the_detector(project):
    mine = project.parent / "mysite"
    before = {p: os.stat(p).st_mtime_ns for p in mine.rglob("*") if p.is_file() and "__pycache__" not in str(p)}
    proc, port = serve(project)
    try:
        banner = serving(proc)
        assert f"http://127.0.0.1:{port}/exports/query.csv   (stream query)" in banner, banner
        base = f"http://127.0.0.1:{port}"
        health = json.loads(urllib.request.urlopen(f"{base}/__stream_release__/healthz", timeout=5).read())
        assert health["engine"] == "django.db.backends.postgresql" and "sqlite3" in health["own_engine"]
        assert health["psycopg2_gevent_patched"] is True
        for path in ("/exports/iterator.csv", "/exports/query.csv", "/exports/released.csv"):
            body = urllib.request.urlopen(base + path, timeout=30).read().decode()
            assert body.splitlines()[0] == "1,customer 0,0" and len(body.splitlines()) == 20, path
        metrics = urllib.request.urlopen(f"{base}/__stream_release__/metrics", timeout=5).read().decode()
        assert "stream_release_pinned_streams_total" in metrics
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 130
    log = (project.parent / "serve-logs" / "server.log").read_text()
    warned = {line.split(" started streaming")[0] for line in log.splitlines() if " started streaming its body" in line}
    # each pinning view warned (warm-up and the requests above), the released one never
    assert warned == {"shop.views.iterator_export", "shop.views.query_export"}
    after = {p: os.stat(p).st_mtime_ns for p in mine.rglob("*") if p.is_file() and "__pycache__" not in str(p)}
    assert after == before  # the project's files are left untouched


def test_serve_substitutes_a_matrix_backend_into_the_projects_settings(project):
    """native-pool: Django's own pool on psycopg 3, in that backend's environment (.venv-pg3)."""
    proc, port = serve(project, "--backend", "native-pool", "--set", "pool_max=3")
    try:
        banner = serving(proc)
        assert "backend native-pool" in banner, banner
        base = f"http://127.0.0.1:{port}"
        health = json.loads(urllib.request.urlopen(f"{base}/__stream_release__/healthz", timeout=5).read())
        assert (health["backend"], health["driver"], health["pool_limit"]) == ("native-pool", "psycopg", 3), health
        assert health["engine"] == "django.db.backends.postgresql" and "sqlite3" in health["own_engine"]
        body = urllib.request.urlopen(f"{base}/exports/query.csv", timeout=30).read().decode()
        assert len(body.splitlines()) == 20
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 130


def test_an_unknown_backend_for_a_target_is_refused_naming_own(project):
    proc, _ = serve(project, "--backend", "nosuch")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "error: BACKEND=nosuch is unknown: use one of own, stock," in err, err


def test_an_unknown_scenario_for_a_target_is_refused_in_one_line(project):
    proc, _ = serve(project, "--scenario", "nosuch")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and err.strip().startswith("error: SCENARIO=nosuch is unknown: use one of"), err


def test_ui_drives_the_target_and_its_pool_panel_reads_the_targets_metrics(project, tmp_path):
    import time
    import urllib.parse

    from harness.stack.postgres import free_port

    port, web_port = free_port(), free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "ui",
            "--target",
            str(project),
            "--port",
            str(port),
            "--web-port",
            str(web_port),
            "--log-dir",
            str(tmp_path / "ui"),
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        for line in proc.stdout:
            if line.startswith("Locust:"):
                break
        web = f"http://127.0.0.1:{web_port}"
        form = urllib.parse.urlencode({"user_count": 3, "spawn_rate": 3, "host": f"http://127.0.0.1:{port}"}).encode()
        urllib.request.urlopen(f"{web}/swarm", data=form, timeout=10).read()
        deadline = time.monotonic() + 30
        while True:  # the panel's samples show the target's pool in use: its metrics are read
            samples = json.loads(urllib.request.urlopen(f"{web}/bench/pool", timeout=5).read())["samples"]
            if any(s.get("pool_in_use") not in ("", None, 0) for s in samples):
                break
            assert time.monotonic() < deadline, samples[-3:]
            time.sleep(0.5)
        stats = json.loads(urllib.request.urlopen(f"{web}/stats/requests", timeout=5).read())["stats"]
        assert {"/exports/iterator.csv", "/health/db/"} <= {s["name"] for s in stats}
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert proc.returncode == 130


def test_the_plugin_tells_the_pinning_views_from_the_released_one_in_the_projects_tests(project):
    """The project's own test of its exports (tests/support/target_project.py TESTS), run by its owner's
    pytest with pytest-django and the package's plugin."""
    directory = project.parent / "mysite"
    (directory / "test_exports.py").write_text(target_project.TESTS.lstrip())
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    run = [
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "--ds",
        "mysite.settings",
        "-q",
        "-rf",
        "test_exports.py",
    ]
    try:
        plain = subprocess.run(run, cwd=directory, env=env, capture_output=True, text=True, timeout=120)
        assert plain.returncode == 0 and "3 passed" in plain.stdout, plain.stdout[-2000:]
        strict = subprocess.run(
            [*run, "--fail-on-pinned-streams"], cwd=directory, env=env, capture_output=True, text=True, timeout=120
        )
        assert "2 failed, 1 passed" in strict.stdout, strict.stdout[-3000:]
        failed = {line.split("[")[1].split("]")[0] for line in strict.stdout.splitlines() if line.startswith("FAILED")}
        assert failed == {"/exports/iterator.csv", "/exports/query.csv"}
        assert "shop.views.query_export started sending its body holding database connection 'default'" in strict.stdout
    finally:
        (directory / "test_exports.py").unlink()


def test_make_matrix_lists_a_targets_stream_cells_not_benchapps(project):
    result = subprocess.run(
        [sys.executable, "-m", "harness", "matrix", "--target", str(project), "--server", "uvicorn"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
    names = [line.split()[0] for line in result.stdout.splitlines()]
    assert names == [
        f"own/{stream}/{scenario}@uvicorn"
        for scenario in ("own-slow-read", "own-burst")
        for stream in ("iterator", "query", "released")
    ]
