"""The system checks, on the settings users get wrong (each on Django's own check runner)."""

import pytest
from django.core import checks

# these tests add an alias to DATABASES for the checks to read; no test here connects to it
pytestmark = pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")
MIDDLEWARE = "stream_release.middleware.StreamReleaseMiddleware"


def ids(**kwargs):
    """The package's check ids, but I002 about 'default': the suite also runs on a persistent
    default database (the repository's suite does, with CONN_MAX_AGE > 0), where it is said."""
    return sorted(
        m.id
        for m in checks.run_checks(**kwargs)
        if m.id.startswith("stream_release.") and not (m.id == "stream_release.I002" and "['default']" in m.msg)
    )


def test_the_test_projects_settings_pass():
    assert ids() == []


def test_the_middleware_after_another_is_a_warning(settings):
    settings.MIDDLEWARE = ["tests.middleware.query_first", MIDDLEWARE]
    (message,) = [m for m in checks.run_checks() if m.id == "stream_release.W001"]
    assert "comes after tests.middleware.query_first" in message.msg and message.hint == "Put it first in MIDDLEWARE."


def test_the_accounting_without_the_middleware_is_a_warning(settings):
    settings.MIDDLEWARE = []
    assert ids() == ["stream_release.W002"]


def test_an_engine_without_its_accounted_engine_is_an_error(settings):
    settings.DATABASES = {**settings.DATABASES, "other": {"ENGINE": "stream_release.db", "NAME": "x"}}
    assert "stream_release.E001" in ids()


@pytest.mark.parametrize("test_name", [None, ":memory:", "file:memorydb?mode=memory&cache=shared"])
def test_sqlite_in_memory_in_tests_is_said(settings, test_name):
    entry = {"ENGINE": "django.db.backends.sqlite3", "NAME": "db.sqlite3"}
    if test_name:
        entry["TEST"] = {"NAME": test_name}
    settings.DATABASES = {**settings.DATABASES, "other": entry}
    assert ids() == ["stream_release.I001"]


def test_an_event_log_directory_that_is_not_there_is_an_error(settings, tmp_path):
    settings.STREAM_RELEASE_EVENT_LOG_DIR = str(tmp_path / "nowhere")
    assert ids() == ["stream_release.E002"]
    settings.STREAM_RELEASE_EVENT_LOG_DIR = str(tmp_path)
    assert ids() == []


@pytest.mark.parametrize(
    "entry, keep, said",
    [
        ({"ENGINE": "django.db.backends.postgresql", "CONN_MAX_AGE": 60}, False, True),
        ({"ENGINE": "django.db.backends.postgresql", "CONN_MAX_AGE": None}, False, True),
        ({"ENGINE": "django.db.backends.postgresql", "CONN_MAX_AGE": 60}, True, False),
        ({"ENGINE": "django.db.backends.postgresql", "CONN_MAX_AGE": 0}, False, False),
        ({"ENGINE": "django_db_geventpool.backends.postgresql_psycopg3", "CONN_MAX_AGE": 60}, False, False),
        ({"ENGINE": "django.db.backends.postgresql", "OPTIONS": {"pool": True}}, False, False),
    ],
    ids=["persistent", "forever", "kept", "new-each-time", "geventpool", "native-pool"],
)
def test_persistent_connections_without_a_pool_are_said(settings, entry, keep, said):
    settings.STREAM_RELEASE_KEEP_PERSISTENT = keep
    settings.DATABASES = {**settings.DATABASES, "other": {**entry, "NAME": "x"}}
    assert ids() == (["stream_release.I002"] if said else [])
