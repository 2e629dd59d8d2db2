"""benchapp without django-stream-release (BENCH_STREAM_RELEASE=none: benchapp/urls_plain.py):
the views make query-cost compares setups on, in a module that imports nothing of the package,
so that a project without it is measured as one (importing the package alone connects its
cursor tracking to every connection)."""

import os
import random
import sys
import time

from django.conf import settings
from django.core.handlers.asgi import ASGIRequest
from django.db import connections
from django.http import HttpResponseBadRequest, JsonResponse

from benchapp.models import Item

# (name, default, lowest, highest): /queries/'s shape
QUERIES_PARAMS = (
    ("n", 10, 1, 1000),
    ("wait_ms", 0, 0, 60_000),
)


class BadParameter(ValueError):
    pass


def parse_int(query, name, default, low, high):
    raw = query.get(name)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadParameter(f"{name} must be an integer from {low} to {high}, got {raw!r}") from None
    if not low <= value <= high:
        raise BadParameter(f"{name} must be an integer from {low} to {high}, got {value}")
    return value


def queries(request):
    """`n` indexed lookups, and a wait of `wait_ms` halfway through (a call to something outside
    the database)."""
    try:
        shape = {name: parse_int(request.GET, name, *rest) for name, *rest in QUERIES_PARAMS}
    except BadParameter as exc:
        return HttpResponseBadRequest(f"{exc}\n")
    found = 0
    for i in range(shape["n"]):
        if i == shape["n"] // 2 and shape["wait_ms"]:
            time.sleep(shape["wait_ms"] / 1000)
        sku = f"SKU{random.randrange(settings.BENCH_SEED_ROWS):08d}"
        found += Item.objects.filter(sku=sku).values_list("price_cents", flat=True).first() is not None
    return JsonResponse({"queries": shape["n"], "found": found})


def server_facts(request) -> dict:
    """What /healthz says of any server of benchapp, with or without the package: which
    backend, server and driver answer, and whether psycopg2 is made to yield to gevent."""
    conn = connections["default"]  # the wrapper itself; nothing here opens a connection
    try:
        import psycopg2.extensions

        patched = psycopg2.extensions.get_wait_callback() is not None
    except ImportError:
        patched = None
    return {
        "status": "ok",
        "backend": settings.BENCH_BACKEND,
        # how it is served: BENCH_SERVER (gunicorn.conf.py's default, gevent), through ASGI or WSGI
        "server": os.environ.get("BENCH_SERVER", "gevent"),
        "app": "asgi" if isinstance(request, ASGIRequest) else "wsgi",
        "vendor": conn.vendor,
        "conn_max_age": conn.settings_dict["CONN_MAX_AGE"],
        "driver": type(conn).Database.__name__,  # psycopg2 or psycopg (3)
        "psycopg2_gevent_patched": patched,
        "pid": os.getpid(),
        "stream_release": settings.BENCH_STREAM_RELEASE,
        "stream_release_imported": "stream_release" in sys.modules,
    }


def healthz(request):
    """What the harness checks of a server (harness/stack/server.py), without the package's helpers."""
    conn = connections["default"]
    pool = conn.settings_dict["OPTIONS"].get("pool")
    return JsonResponse(
        {
            **server_facts(request),
            "engine": conn.settings_dict["ENGINE"],
            "pool_limit": pool.get("max_size") if isinstance(pool, dict) else None,
        }
    )
