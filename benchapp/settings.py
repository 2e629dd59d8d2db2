"""Settings of the app under test, read from BENCH_* environment variables.

Every variable is listed, with its default, in .env.example. The harness sets them from the
matrix file; `make serve` and docker-compose set them the same way.
"""

import json
import os
from urllib.parse import urlsplit

import dj_database_url

BASE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _database(url: str) -> dict:
    """BENCH_DATABASE_URL as dj-database-url reads it (its query string, sslmode, application_name
    or options, in OPTIONS as libpq takes them), on the backend's ENGINE and OPTIONS."""
    if urlsplit(url).scheme not in ("postgres", "postgresql"):
        raise ValueError(f"BENCH_DATABASE_URL must start with postgres://, got {url!r}")
    parsed = dj_database_url.parse(url)
    return {
        "ENGINE": os.environ.get("BENCH_DB_ENGINE", "django_db_geventpool.backends.postgresql_psycopg2"),
        "NAME": parsed["NAME"] or "bench",
        "USER": parsed["USER"],
        "PASSWORD": parsed["PASSWORD"],
        "HOST": parsed["HOST"],
        "PORT": str(parsed["PORT"] or ""),
        "CONN_MAX_AGE": int(os.environ.get("BENCH_CONN_MAX_AGE", "0")),
        "ATOMIC_REQUESTS": os.environ.get("BENCH_ATOMIC_REQUESTS", "0") == "1",
        # Transaction-mode poolers (PgBouncer) cannot keep a cursor across transactions.
        "DISABLE_SERVER_SIDE_CURSORS": os.environ.get("BENCH_DISABLE_SERVER_SIDE_CURSORS", "0") == "1",
        "OPTIONS": {**parsed.get("OPTIONS", {}), **json.loads(os.environ.get("BENCH_DB_OPTIONS", '{"MAX_CONNS": 4}'))},
        # the backend's other keys (matrix.toml's `settings`): POOL_OPTIONS, CONN_HEALTH_CHECKS
        **json.loads(os.environ.get("BENCH_DB_SETTINGS", "{}")),
    }


SECRET_KEY = os.environ.get("BENCH_SECRET_KEY", "local-benchmark-only-not-a-secret")
DEBUG = os.environ.get("BENCH_DEBUG", "0") == "1"
ALLOWED_HOSTS = ["*"]
ROOT_URLCONF = "benchapp.urls"
WSGI_APPLICATION = "benchapp.wsgi.application"
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

INSTALLED_APPS = ["benchapp"]

# Where each worker appends one line per connection checkout and return (exact accounting).
STREAM_RELEASE_EVENT_LOG_DIR = os.environ.get("BENCH_ACCOUNTING_DIR", "")
# BENCH_ACCOUNTING=0: no connection accounting (its metrics, its event log, GC timing), to measure its cost.
STREAM_RELEASE_ACCOUNTING = os.environ.get("BENCH_ACCOUNTING", "1") != "0"
# BENCH_RELEASE_ALL_STREAMS=1 (make bench SET=release_all_streams=true): the package's switch, every
# streaming response released by the detector middleware with no view changed
STREAM_RELEASE_ALL_STREAMS = os.environ.get("BENCH_RELEASE_ALL_STREAMS", "0") == "1"

# How much of django-stream-release the project installs (make query-cost compares them):
# "all" (the middleware and the accounting's ENGINE wrapper), "middleware" (a project that
# installs it for the detector and the switch only) or "none" (a project without it).
STREAM_RELEASE_INSTALLS = ("all", "middleware", "none")
BENCH_STREAM_RELEASE = os.environ.get("BENCH_STREAM_RELEASE", "all")
if BENCH_STREAM_RELEASE not in STREAM_RELEASE_INSTALLS:
    raise ValueError(
        f"BENCH_STREAM_RELEASE must be one of {', '.join(STREAM_RELEASE_INSTALLS)}, got {BENCH_STREAM_RELEASE!r}"
    )

# The package's detector, on whatever BENCH_ACCOUNTING says, as in a user's project: a warning
# for each stream that starts sending with a connection checked out; with the accounting on, it
# also labels checkouts with the URL name. `make detector-cost` measures what it costs.
MIDDLEWARE = ["stream_release.middleware.StreamReleaseMiddleware"] if BENCH_STREAM_RELEASE != "none" else []
if BENCH_STREAM_RELEASE == "none":  # nothing imports the package: benchapp/plain.py's views only
    ROOT_URLCONF = "benchapp.urls_plain"

# Connection accounting on whatever backend BENCH_DB_ENGINE names, as in a user's project.
DATABASES = {"default": _database(os.environ.get("BENCH_DATABASE_URL", "postgres://bench@127.0.0.1:5432/bench"))}
if BENCH_STREAM_RELEASE == "all":
    from stream_release.accounting import accounted

    DATABASES = accounted(DATABASES)

# Shown by /healthz so that a run can tell which configuration answered.
BENCH_BACKEND = os.environ.get("BENCH_BACKEND", "geventpool")
# Rows `python -m benchapp seed` writes and /probe/ looks up.
BENCH_SEED_ROWS = int(os.environ.get("BENCH_SEED_ROWS", "10000"))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("BENCH_LOG_LEVEL", "WARNING")},
}
