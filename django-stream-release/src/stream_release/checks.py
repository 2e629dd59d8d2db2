"""Django system checks of django-stream-release (`manage.py check`; registered when
"stream_release" is in INSTALLED_APPS).

- stream_release.E001: an entry's ENGINE is "stream_release.db" without ACCOUNTED_ENGINE, the
  backend to account for.
- stream_release.E002: STREAM_RELEASE_EVENT_LOG_DIR is not an existing directory.
- stream_release.W001: StreamReleaseMiddleware is not first in MIDDLEWARE: a middleware before
  it that queries is not seen, and it does not see the body as the server sends it.
- stream_release.W002: the accounting is on (stream_release.db) without the middleware: every
  checkout is booked to the route "other", and no pinned stream is found.
- stream_release.I001: a SQLite database whose test database is in memory: Django never closes
  such a connection, so no release (and no pinned stream) can be seen in the test suite.
- stream_release.I002: persistent connections with no pool in the process, and
  STREAM_RELEASE_KEEP_PERSISTENT off: each release closes the thread's connection, which its
  next request opens again (docs: when keeping it helps, measured).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Info, Warning, register

from stream_release.accounting import ENGINE
from stream_release.conf import setting

MIDDLEWARE = "stream_release.middleware.StreamReleaseMiddleware"


@register()
def check_settings(app_configs: Sequence[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    return [*_databases(), *_middleware(), *_event_log()]


def _databases() -> list[CheckMessage]:
    out: list[CheckMessage] = []
    for alias, entry in settings.DATABASES.items():
        if entry.get("ENGINE") == ENGINE and entry.get("ACCOUNTED_ENGINE") in (None, "", ENGINE):
            out.append(
                Error(
                    f"DATABASES[{alias!r}] has ENGINE {ENGINE!r} but no ACCOUNTED_ENGINE, the backend to account for.",
                    hint="DATABASES = stream_release.accounting.accounted(DATABASES) sets both.",
                    id="stream_release.E001",
                )
            )
        engine = entry.get("ACCOUNTED_ENGINE") if entry.get("ENGINE") == ENGINE else entry.get("ENGINE")
        test_name = (entry.get("TEST") or {}).get("NAME")
        if engine == "django.db.backends.sqlite3" and _in_memory(test_name):
            out.append(
                Info(
                    f"DATABASES[{alias!r}] is SQLite with its test database in memory, which Django never closes: "
                    "no release, and no pinned stream, can be seen on it in tests.",
                    hint=f"Give it a file: DATABASES[{alias!r}]['TEST'] = {{'NAME': 'test.sqlite3'}}, or test on PostgreSQL.",
                    id="stream_release.I001",
                )
            )
        if _persistent_without_pool(entry, engine) and not setting("STREAM_RELEASE_KEEP_PERSISTENT"):
            out.append(
                Info(
                    f"DATABASES[{alias!r}] keeps persistent connections (CONN_MAX_AGE) with no pool in the process: "
                    "each release closes the thread's connection, and its next request, or a batches() body's "
                    "next batch, opens a new one.",
                    hint="With a sync or gthread worker and no PgBouncer in front, "
                    "STREAM_RELEASE_KEEP_PERSISTENT = True keeps it; under gevent or ASGI leave it off.",
                    id="stream_release.I002",
                )
            )
    return out


def _persistent_without_pool(entry: dict[str, Any], engine: str | None) -> bool:
    if entry.get("CONN_MAX_AGE", 0) == 0 or (entry.get("OPTIONS") or {}).get("pool"):
        return False
    return not str(engine).startswith(("django_db_geventpool.", "dj_db_conn_pool."))


def _in_memory(name: str | None) -> bool:
    return not name or name == ":memory:" or "mode=memory" in str(name)


def _middleware() -> list[CheckMessage]:
    middleware = list(getattr(settings, "MIDDLEWARE", None) or [])
    accounted = [alias for alias, entry in settings.DATABASES.items() if entry.get("ENGINE") == ENGINE]
    if MIDDLEWARE not in middleware:
        if not accounted:
            return []
        return [
            Warning(
                f"The connection accounting is on for {', '.join(map(repr, accounted))} but {MIDDLEWARE} is not in "
                "MIDDLEWARE: every checkout is booked to the route 'other', and no pinned stream is found.",
                hint=f'MIDDLEWARE = ["{MIDDLEWARE}", *MIDDLEWARE]',
                id="stream_release.W002",
            )
        ]
    before = middleware[: middleware.index(MIDDLEWARE)]
    if not before:
        return []
    return [
        Warning(
            f"{MIDDLEWARE} comes after {', '.join(before)}: queries those make are not seen, and it does not "
            "watch the body as the server sends it.",
            hint="Put it first in MIDDLEWARE.",
            id="stream_release.W001",
        )
    ]


def _event_log() -> list[CheckMessage]:
    directory = getattr(settings, "STREAM_RELEASE_EVENT_LOG_DIR", "")
    if not directory or os.path.isdir(directory):
        return []
    return [
        Error(
            f"STREAM_RELEASE_EVENT_LOG_DIR = {directory!r} is not an existing directory: no event could be written.",
            hint="Create it first, or set it to '' to write no event log.",
            id="stream_release.E002",
        )
    ]
