"""Settings of the package's test project. SQLite in a file by default (Django is the only
dependency; an in-memory database could not be closed, and closing is what is tested);
STREAM_RELEASE_TEST_DATABASE, a JSON DATABASES entry, runs the same tests on another
database (the repository's suite does, on PostgreSQL with each backend)."""

import json
import os
import tempfile

from stream_release.accounting import accounted

SECRET_KEY = "tests-only"
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
ROOT_URLCONF = "tests.urls"
INSTALLED_APPS = ["stream_release", "tests"]
MIDDLEWARE = ["stream_release.middleware.StreamReleaseMiddleware"]

_sqlite = os.path.join(tempfile.gettempdir(), f"stream-release-tests-{os.getpid()}.sqlite3")
_entry = json.loads(os.environ.get("STREAM_RELEASE_TEST_DATABASE", "null")) or {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": _sqlite,
    "TEST": {"NAME": _sqlite},
}
# pytester's inner runs are processes of their own: each its own test database
_entry.setdefault("TEST", {}).setdefault("NAME", f"test_{_entry.get('NAME', 'db')}_{os.getpid()}")
DATABASES = accounted({"default": _entry})
STATIC_URL = "/assets/"  # the live server serves static files under it
# the switch that releases every stream (tests/test_switch.py runs the plugin's cases with it on)
STREAM_RELEASE_ALL_STREAMS = os.environ.get("STREAM_RELEASE_TEST_ALL_STREAMS") == "1"
