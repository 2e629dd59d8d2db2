"""The pytest plugin, run in pytests of its own (pytester, in subprocesses: each configures
Django once): what `--fail-on-pinned-streams` reports for each view of tests/views.py under
each test mode and ATOMIC_REQUESTS setting. The expected outcomes are the table in the
package's README: this test reads it, so the documentation cannot drift from the behaviour."""

import json
import os
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.plugin_cases import CASES

PACKAGE = Path(__file__).resolve().parents[1]
MODES = ["django_db", "django_db(transaction=True)", "TestCase", "TransactionTestCase"]


def documented_table():
    """{(view, atomic, mode): "fails" | "passes"} from the README's table."""
    text = (PACKAGE / "README.md").read_text()
    table = {}
    for line in text.splitlines():
        m = re.fullmatch(r"\| `([a-z-]+)` \| (off|on) \|(.*)\|", line.strip())
        if m:
            cells = [c.strip().strip("*") for c in m.group(3).split("|")]
            assert len(cells) == len(MODES), line
            for mode, cell in zip(MODES, cells, strict=True):
                table[(m.group(1), m.group(2), mode)] = cell.split()[0]
    return table


def run(pytester, *args, ini=None):
    pytester.makepyfile(test_cases="from tests.plugin_cases import *  # noqa: F401,F403\n")
    if ini:
        pytester.makeini(f"[pytest]\n{ini}\n")
    xml = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess(
        "--ds=tests.settings", "-p", "no:cacheprovider", f"--junitxml={xml}", *args, timeout=240
    )
    return result, outcomes(xml)


def outcomes(xml):
    """{(view, atomic, mode): (outcome, message)} of a run's JUnit XML."""
    got = {}
    for case in ET.parse(xml).getroot().iter("testcase"):
        name, cls = case.get("name"), case.get("classname").rsplit(".", 1)[-1]
        if m := re.fullmatch(r"test_django_db(_transaction)?\[(.+)-(off|on)\]", name):
            key = (m.group(2), m.group(3), "django_db(transaction=True)" if m.group(1) else "django_db")
        else:
            m = re.fullmatch(r"Test(TestCase|TransactionTestCase)__(.+)__(off|on)", cls)
            assert m, (cls, name)
            key = (m.group(2), m.group(3), m.group(1))
        problem = case.find("failure")
        if problem is None:
            problem = case.find("error")
        if problem is None:
            got[key] = ("passes", "")
        else:
            got[key] = ("fails" if problem.tag == "failure" else "error", problem.get("message", ""))
    return got


@pytest.fixture(autouse=True)
def package_on_path(monkeypatch):
    """The inner pytest imports tests.settings and tests.views from this package's folder."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(PACKAGE), os.environ.get("PYTHONPATH")])))


def test_the_option_fails_exactly_what_the_readme_table_says(pytester):
    result, got = run(pytester, "--fail-on-pinned-streams")
    table = documented_table()
    assert set(got) == set(table) and len(table) == len(CASES) * len(MODES)
    wrong = [
        f"{key}: {got[key][0]} ({got[key][1][:300]}), documented {table[key]}"
        for key in table
        if got[key][0] != table[key]
    ]
    assert not wrong, "\n".join(wrong)
    assert "stream_release: failing tests whose streaming responses hold" in result.stdout.str()
    # what it says names the view, the alias and what happened
    held = got[("query-then-stream", "off", "django_db(transaction=True)")][1]
    assert "tests.views.query_then_stream started sending its body holding database connection 'default'" in held
    inferred = got[("query-then-stream", "off", "django_db")][1]
    assert "outside the test's transaction it would be held until the last chunk" in inferred
    cursor = got[("iterator", "off", "django_db(transaction=True)")][1]
    assert "tests.views.iterator queried 'default' while producing its body and kept the connection" in cursor


def test_without_the_option_every_case_passes(pytester):
    result, got = run(pytester)
    assert len(got) == len(CASES) * len(MODES)
    assert {outcome for outcome, _ in got.values()} == {"passes"}, result.stdout.str()[-3000:]


def test_the_ini_option_does_what_the_command_line_option_does(pytester):
    _, got = run(pytester, "-k", "django_db_transaction and off", ini="fail_on_pinned_streams = true")
    assert {key[0]: outcome for key, (outcome, _) in got.items()} == {
        "query-then-stream": "fails",
        "iterator": "fails",
        "guarded-close": "passes",
        "header-then-iterator": "fails",
        "iterator-then-release": "fails",
        "atomic-body": "fails",
        "no-database": "passes",
        "non-atomic-no-database": "passes",
        "release": "passes",
        "release-batches": "passes",
        "async-release-batches": "passes",
    }


def test_the_fixture_asserts_one_response_and_returns_its_body(pytester):
    pytester.makepyfile(
        test_fixture="""
import pytest
from tests.models import Row

pytestmark = pytest.mark.django_db(transaction=True)


def test_release(client, assert_stream_releases):
    Row.objects.bulk_create(Row(n=n) for n in range(10))
    assert assert_stream_releases(client.get("/release/")) == b"".join(b"%d\\n" % n for n in range(10))


def test_hold(client, assert_stream_releases):
    Row.objects.bulk_create(Row(n=n) for n in range(10))
    assert_stream_releases(client.get("/query-then-stream/"))


def test_not_streaming(assert_stream_releases):
    from django.http import HttpResponse
    assert_stream_releases(HttpResponse(b"x"))
"""
    )
    result = pytester.runpytest_subprocess(
        "--ds=tests.settings", "-p", "no:cacheprovider", "test_fixture.py", timeout=120
    )
    result.assert_outcomes(passed=1, failed=2)
    result.stdout.fnmatch_lines(
        [
            "*stream_release: 1 streaming response(s) held a database connection*",
            "*tests.views.query_then_stream started sending its body holding*",
        ]
    )
    result.stdout.fnmatch_lines(["*takes a streaming response made during the test, got HttpResponse*"])


def test_sqlite_in_memory_is_said_by_the_plugin_and_never_reported_by_the_detector(pytester, monkeypatch):
    """Django never closes an in-memory SQLite connection: no release can be seen, and no other
    request ever waits for it."""
    monkeypatch.setenv(
        "STREAM_RELEASE_TEST_DATABASE",
        json.dumps({"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:", "TEST": {"NAME": ":memory:"}}),
    )
    pytester.makepyfile(
        test_detector="""
import logging
import pytest
from tests.models import Row


@pytest.mark.django_db(transaction=True)
def test_no_warning(client, caplog):
    Row.objects.bulk_create(Row(n=n) for n in range(10))
    with caplog.at_level(logging.WARNING, logger="stream_release"):
        assert b"".join(client.get("/query-then-stream/")).startswith(b"0\\n")
    assert caplog.records == []
"""
    )
    result, got = run(
        pytester, "--fail-on-pinned-streams", "-k", "django_db_transaction and release-off and not iterator"
    )
    assert got == {("release", "off", "django_db(transaction=True)"): ("passes", "")}
    result.stdout.fnmatch_lines(
        ["stream_release: 'default' is SQLite in memory, where Django never closes a connection*"]
    )
    detector = pytester.runpytest_subprocess("--ds=tests.settings", "-p", "no:cacheprovider", "test_detector.py")
    detector.assert_outcomes(passed=1)


def test_the_async_fixture_asserts_a_response_in_an_async_test(pytester):
    """aassert_stream_releases awaits the body (the sync fixture cannot: AsyncToSync in a running
    event loop), and the sync one, called there, names the async one."""
    pytester.makepyfile(
        test_async_fixture="""
import pytest
from asgiref.sync import async_to_sync
from django.test import AsyncClient
from tests.models import Row

pytestmark = pytest.mark.django_db(transaction=True)
BODY = b"".join(b"%d\\n" % n for n in range(10))


def test_release(aassert_stream_releases):
    Row.objects.bulk_create(Row(n=n) for n in range(10))

    async def go():
        return await aassert_stream_releases(await AsyncClient().get("/async-release-batches/"))

    assert async_to_sync(go)() == BODY


def test_hold(aassert_stream_releases):
    Row.objects.bulk_create(Row(n=n) for n in range(10))

    async def go():
        return await aassert_stream_releases(await AsyncClient().get("/query-then-stream/"))

    async_to_sync(go)()


def test_the_sync_fixture_names_the_async_one(assert_stream_releases):
    async def go():
        assert_stream_releases(await AsyncClient().get("/no-database/"))

    with pytest.raises(RuntimeError, match="use `await aassert_stream_releases"):
        async_to_sync(go)()
"""
    )
    result = pytester.runpytest_subprocess("--ds=tests.settings", "-p", "no:cacheprovider", timeout=120)
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*FAILED test_async_fixture.py::test_hold*"])
    result.stdout.fnmatch_lines(["*tests.views.query_then_stream started sending its body holding*"])


def test_it_sees_the_streams_of_a_live_server(pytester):
    """The live server answers in a thread of its own; its connections are watched too."""
    pytester.makepyfile(
        test_live="""
import urllib.request
import pytest
from tests.models import Row

BODY = b"".join(b"%d\\n" % n for n in range(10))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("view", ["query-then-stream", "release", "release-batches"])
def test_live(live_server, view):
    Row.objects.bulk_create(Row(n=n) for n in range(10))
    with urllib.request.urlopen(f"{live_server.url}/{view}/", timeout=30) as response:
        assert response.read() == BODY
"""
    )
    result = pytester.runpytest_subprocess(
        "--ds=tests.settings", "-p", "no:cacheprovider", "--fail-on-pinned-streams", timeout=120
    )
    result.assert_outcomes(passed=2, failed=1)
    result.stdout.fnmatch_lines(["*FAILED test_live.py::test_live?query-then-stream?*"])
