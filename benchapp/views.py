"""Endpoints of the app under test.

- /stream/<variant>/: an export. It runs an aggregate and a page of rows through the ORM,
  applies the release variant (benchapp/variants.py), then streams `chunks` chunks of
  `chunk_bytes` bytes, waiting `delay_ms` before each chunk after the first.
- /probe/: one indexed lookup; its latency is what every other request experiences.
- /healthz: no database; says which backend, pool limit and driver patching answer.
- /metrics: the connection accounting in Prometheus text format; no database.
"""

import os
import random
import time

from django.db import connection, connections
from django.db.models import Avg, Count, Sum
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse, StreamingHttpResponse
from django.conf import settings
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

from benchapp.accounting import _backend_pid
from benchapp.models import CATEGORIES, Item
from benchapp.variants import VARIANTS

# (name, default, lowest, highest): the stream's shape, from the query string.
STREAM_PARAMS = (
    ("chunks", 21, 1, 1_000_000),
    ("chunk_bytes", 1024, 1, 16 * 1024 * 1024),
    ("delay_ms", 500, 0, 3_600_000),
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


def stream(request, variant):
    release = VARIANTS.get(variant)
    if release is None:
        known = ", ".join(VARIANTS)
        return HttpResponse(f"unknown variant {variant!r}; one of: {known}\n", status=404)
    try:
        shape = {name: parse_int(request.GET, name, *rest) for name, *rest in STREAM_PARAMS}
        category = parse_int(request.GET, "category", random.randrange(CATEGORIES), 0, CATEGORIES - 1)
    except BadParameter as exc:
        return HttpResponseBadRequest(f"{exc}\n")

    items = Item.objects.filter(category=category, in_stock=True)
    totals = items.aggregate(n=Count("id"), value=Sum("price_cents"), avg=Avg("price_cents"))
    page = list(items.order_by("-price_cents", "id").values_list("sku", "name", "price_cents")[:50])
    backend_pid = _backend_pid(connection.connection) if connection.connection else ""

    release()

    header = f"# category {category}: {totals['n']} items, {totals['value']} cents\n"
    text = header + "".join(f"{sku},{name},{cents}\n" for sku, name, cents in page)
    response = StreamingHttpResponse(
        _chunks(text.encode(), **shape), content_type="text/csv; charset=utf-8"
    )
    response["X-Bench-Backend-Pid"] = str(backend_pid)
    response["X-Bench-Body-Bytes"] = str(shape["chunks"] * shape["chunk_bytes"])
    return response


def _chunks(text: bytes, chunks: int, chunk_bytes: int, delay_ms: int):
    """Exactly chunks * chunk_bytes bytes of the CSV text, repeated as needed: each chunk is a
    slice of the text repeated to cover a chunk from any offset (no per-byte work)."""
    repeated = text * (chunk_bytes // len(text) + 2)
    for i in range(chunks):
        if i:
            time.sleep(delay_ms / 1000)
        start = i * chunk_bytes % len(text)
        yield repeated[start:start + chunk_bytes]


def probe(request):
    sku = f"SKU{random.randrange(settings.BENCH_SEED_ROWS):08d}"
    row = Item.objects.filter(sku=sku).values("id", "sku", "price_cents").first()
    pid = _backend_pid(connection.connection) if connection.connection else None
    return JsonResponse({"item": row, "backend_pid": pid})


def healthz(request):
    conn = connections["default"]  # the wrapper itself; nothing here opens a connection
    try:
        import psycopg2.extensions

        patched = psycopg2.extensions.get_wait_callback() is not None
    except ImportError:
        patched = None
    return JsonResponse(
        {
            "status": "ok",
            "backend": settings.BENCH_BACKEND,
            "engine": conn.settings_dict["ENGINE"],
            "vendor": conn.vendor,
            "pool_limit": conn.pool_limit() if hasattr(conn, "pool_limit") else None,
            "conn_max_age": conn.settings_dict["CONN_MAX_AGE"],
            "driver": type(conn).Database.__name__,  # psycopg2 or psycopg (3)
            "psycopg2_gevent_patched": patched,
            "pid": os.getpid(),
            "variants": list(VARIANTS),
        }
    )


def metrics(request):
    registry = REGISTRY
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
