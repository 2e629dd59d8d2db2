"""The settings a target (harness/spec/target.py) runs with: its own (BENCH_TARGET_SETTINGS), with
only what a measurement needs changed. Put on the path by the harness; nothing of the
project is written to.

- DATABASES["default"]: the harness's PostgreSQL (BENCH_DATABASE_URL); the project's ENGINE
  and OPTIONS are kept when they name a PostgreSQL backend, else Django's postgresql backend
  is used (and /__stream_release__/healthz says so). With BENCH_DB_ENGINE (a backend of
  matrix.toml substituted in), its ENGINE, OPTIONS, CONN_MAX_AGE, server-side cursors and
  other keys (its `settings`) replace the project's. Then django-stream-release's accounting.
- MIDDLEWARE: django-stream-release's detector first.
- ROOT_URLCONF: bench_target_urls, the project's URLs plus the harness's two.
- ALLOWED_HOSTS: 127.0.0.1 added (and make serve BIND='s address); DEBUG off (Django's query log would grow without end).
"""

import importlib
import json
import os

import dj_database_url

from stream_release.accounting import accounted

_own = importlib.import_module(os.environ["BENCH_TARGET_SETTINGS"])
globals().update({k: v for k, v in vars(_own).items() if k.isupper()})

_url = dj_database_url.parse(os.environ["BENCH_DATABASE_URL"])  # its query string in OPTIONS, as libpq takes it
_default = dict(globals().get("DATABASES", {}).get("default", {}))
BENCH_TARGET_OWN_ENGINE = _default.get("ENGINE", "")
if os.environ.get("BENCH_DB_ENGINE"):
    _default = {
        "ENGINE": os.environ["BENCH_DB_ENGINE"],
        "OPTIONS": json.loads(os.environ["BENCH_DB_OPTIONS"]),
        "CONN_MAX_AGE": int(os.environ["BENCH_CONN_MAX_AGE"]),
        "DISABLE_SERVER_SIDE_CURSORS": os.environ["BENCH_DISABLE_SERVER_SIDE_CURSORS"] == "1",
        **json.loads(os.environ.get("BENCH_DB_SETTINGS", "{}")),
    }
elif "postgres" not in BENCH_TARGET_OWN_ENGINE and "geventpool" not in BENCH_TARGET_OWN_ENGINE:
    _default = {"ENGINE": "django.db.backends.postgresql", "OPTIONS": {}}
BENCH_BACKEND = os.environ.get("BENCH_BACKEND", "own")
_default.update(
    NAME=_url["NAME"],
    USER=_url["USER"],
    PASSWORD=_url["PASSWORD"],
    HOST=_url["HOST"],
    PORT=str(_url["PORT"] or ""),
    OPTIONS={**_default.get("OPTIONS", {}), **_url.get("OPTIONS", {})},
)
DATABASES = accounted({**globals().get("DATABASES", {}), "default": _default})

MIDDLEWARE = [
    "stream_release.middleware.StreamReleaseMiddleware",
    *[m for m in globals().get("MIDDLEWARE", []) if m != "stream_release.middleware.StreamReleaseMiddleware"],
]
BENCH_TARGET_URLCONF = globals().get("ROOT_URLCONF")
ROOT_URLCONF = "bench_target_urls"
ALLOWED_HOSTS = [
    *globals().get("ALLOWED_HOSTS", []),
    "127.0.0.1",
    "localhost",
    os.environ.get("BENCH_HOST", "127.0.0.1"),
]
DEBUG = False
STREAM_RELEASE_EVENT_LOG_DIR = os.environ.get("BENCH_ACCOUNTING_DIR", "")
STREAM_RELEASE_ACCOUNTING = os.environ.get("BENCH_ACCOUNTING", "1") != "0"
# BENCH_RELEASE_ALL_STREAMS=1 (make bench SET=release_all_streams=true): the package's switch, every
# streaming response released by the detector middleware with no view changed
STREAM_RELEASE_ALL_STREAMS = os.environ.get("BENCH_RELEASE_ALL_STREAMS", "0") == "1"
