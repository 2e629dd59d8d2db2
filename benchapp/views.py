"""Endpoints of the app under test.

- /stream/<variant>/: an export. It writes one audit row ("export requested", keyed by the
  X-Request-Id header), runs an aggregate and a page of rows through the ORM, and returns the
  variant's response (benchapp/variants.py): `chunks` chunks of `chunk_bytes` bytes, waiting
  `delay_ms` before each chunk after the first.
- /probe/: one indexed lookup; its latency is what every other request experiences.
- /queries/: not streaming: `n` indexed lookups, and a wait of `wait_ms` halfway through (a call
  to something outside the database; benchapp/plain.py); `make query-cost` measures what a
  backend or the package costs such a view.
- /healthz: no database; says which backend, pool limit and driver patching answer.
- /metrics: the connection accounting in Prometheus text format; no database.
"""

import asyncio
import gc
import itertools
import os
import random
import time
import uuid

from django.conf import settings
from django.db import connection, connections
from django.db.models import Avg, Count, Sum
from django.http import HttpResponse, HttpResponseBadRequest, JsonResponse
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, Metric, generate_latest

from benchapp.models import CATEGORIES, AuditEvent, Item
from benchapp.plain import BadParameter, parse_int, server_facts
from benchapp.variants import VARIANTS
from stream_release import abatches, batches
from stream_release.accounting import backend_pid, pool_limit

# (name, default, lowest, highest): the stream's shape, from the query string.
STREAM_PARAMS = (
    ("chunks", 21, 1, 1_000_000),
    ("chunk_bytes", 1024, 1, 16 * 1024 * 1024),
    ("delay_ms", 500, 0, 3_600_000),
)


def stream(request, variant):
    make_response = VARIANTS.get(variant)
    if make_response is None:
        known = ", ".join(VARIANTS)
        return HttpResponse(f"unknown variant {variant!r}; one of: {known}\n", status=404)
    try:
        shape = {name: parse_int(request.GET, name, *rest) for name, *rest in STREAM_PARAMS}
        category = parse_int(request.GET, "category", random.randrange(CATEGORIES), 0, CATEGORIES - 1)
    except BadParameter as exc:
        return HttpResponseBadRequest(f"{exc}\n")

    request_id = request.headers.get("X-Request-Id", "")[:64] or uuid.uuid4().hex
    last = LastBackend()
    with connection.execute_wrapper(last):
        AuditEvent.objects.create(request_id=request_id, variant=variant)
        items = Item.objects.filter(category=category, in_stock=True)
        totals = items.aggregate(n=Count("id"), value=Sum("price_cents"), avg=Avg("price_cents"))
        page = list(items.order_by("-price_cents", "id").values_list("sku", "name", "price_cents")[:50])

    header = f"# category {category}: {totals['n']} items, {totals['value']} cents\n"
    response = make_response(Export(header + _csv(page), **shape))
    response["Content-Type"] = "text/csv; charset=utf-8"
    response["X-Request-Id"] = request_id
    response["X-Bench-Backend-Pid"] = str(last.pid)
    response["X-Bench-Body-Bytes"] = str(shape["chunks"] * shape["chunk_bytes"])
    return response


class LastBackend:
    """An execute wrapper (connection.execute_wrapper) remembering the PostgreSQL backend pid of
    the last query it saw. Read while the query runs, not after the view's queries: a backend
    that gives the connection back after each query (django-pg-real-pool) has none by then."""

    pid: int | str = ""

    def __call__(self, execute, sql, params, many, context):
        self.pid = backend_pid(context["connection"].connection)
        return execute(sql, params, many, context)


def _csv(rows) -> str:
    return "".join(f"{sku},{name},{cents}\n" for sku, name, cents in rows)


class Export:
    """The body of one stream: `chunks` chunks of exactly `chunk_bytes` bytes, `delay_ms`
    apart, from one of three sources (see benchapp/variants.py)."""

    BATCH_ROWS = 50  # rows per chunk for the sources that read the table while streaming
    ROW_FIELDS = ("sku", "name", "price_cents")

    def __init__(self, page_text: str, chunks: int, chunk_bytes: int, delay_ms: int):
        self.page = page_text.encode()
        self.chunks, self.chunk_bytes, self.delay_ms = chunks, chunk_bytes, delay_ms

    def _paced(self, texts):
        """One chunk per text, waiting delay_ms before each but the first: chunk_bytes bytes of
        the text repeated, from where the last chunk stopped. The repetition is built once per
        distinct text (once per stream for the page), then sliced."""
        text = repeated = None
        for i in range(self.chunks):
            if i:
                time.sleep(self.delay_ms / 1000)
            following = next(texts)
            if following is not text:
                text, repeated = following, following * (self.chunk_bytes // len(following) + 2)
            yield self._chunk(i, text, repeated)

    def _chunk(self, i, text, repeated):
        start = i * self.chunk_bytes % len(text)
        return repeated[start : start + self.chunk_bytes]

    async def _apaced(self, texts):
        """_paced() for an async body (ASGI): the waits are the event loop's, `texts` async."""
        text = repeated = None
        for i in range(self.chunks):
            if i:
                await asyncio.sleep(self.delay_ms / 1000)
            following = await anext(texts)
            if following is not text:
                text, repeated = following, following * (self.chunk_bytes // len(following) + 2)
            yield self._chunk(i, text, repeated)

    def page_chunks(self):
        """From the rows the view fetched; no database while streaming."""
        return self._paced(itertools.repeat(self.page))

    def apage_chunks(self):
        """page_chunks() as an async iterator."""

        async def texts():
            while True:
                yield self.page

        return self._apaced(texts())

    def athread_query_chunks(self):
        """An async body that queries BATCH_ROWS rows per chunk through
        sync_to_async(thread_sensitive=True): in the request's thread, on its connection, which
        nothing gives back until the response is closed."""
        from asgiref.sync import sync_to_async

        rows = Item.objects.order_by("pk").values_list(*self.ROW_FIELDS)

        def page(offset):
            return list(rows[offset : offset + self.BATCH_ROWS])

        async def texts():
            offset = 0
            while True:
                batch = await sync_to_async(page, thread_sensitive=True)(offset)
                offset = offset + self.BATCH_ROWS if batch else 0
                yield f"# rows from the request's thread\n{_csv(batch)}".encode() if batch else b"# end of table\n"

        return self._apaced(texts())

    def abatch_chunks(self):
        """batch_chunks() as an async body: stream_release.abatches, the async ORM, the
        connection given back after each batch."""

        async def texts():
            while True:
                async for batch in abatches(Item.objects.values("pk", *self.ROW_FIELDS), self.BATCH_ROWS):
                    rows = [[row[f] for f in self.ROW_FIELDS] for row in batch]
                    yield f"# rows from a batch\n{_csv(rows)}".encode()
                yield b"# end of table\n"

        return self._apaced(texts())

    def cursor_chunks(self):
        """BATCH_ROWS rows per chunk from one QuerySet.iterator() cursor, reopened only when
        the table runs out: the connection is held for the whole stream."""

        def texts():
            while True:
                rows = Item.objects.order_by("pk").values_list(*self.ROW_FIELDS).iterator(chunk_size=self.BATCH_ROWS)
                while batch := list(itertools.islice(rows, self.BATCH_ROWS)):
                    yield f"# rows from a cursor\n{_csv(batch)}".encode()
                yield b"# end of table\n"

        return self._paced(texts())

    def batch_chunks(self):
        """One query of BATCH_ROWS rows per chunk (stream_release.batches), the connection
        given back after each."""

        def texts():
            while True:
                for batch in batches(Item.objects.values("pk", *self.ROW_FIELDS), self.BATCH_ROWS):
                    rows = [[row[f] for f in self.ROW_FIELDS] for row in batch]
                    yield f"# rows from a batch\n{_csv(rows)}".encode()
                yield b"# end of table\n"

        return self._paced(texts())


def probe(request):
    sku = f"SKU{random.randrange(settings.BENCH_SEED_ROWS):08d}"
    last = LastBackend()
    with connection.execute_wrapper(last):
        row = Item.objects.filter(sku=sku).values("id", "sku", "price_cents").first()
    return JsonResponse({"item": row, "backend_pid": last.pid or None})


def healthz(request):
    conn = connections["default"]  # the wrapper itself; nothing here opens a connection
    return JsonResponse(
        {
            **server_facts(request),
            "engine": conn.settings_dict.get("ACCOUNTED_ENGINE", conn.settings_dict["ENGINE"]),
            "pool_limit": pool_limit(conn),
            "variants": list(VARIANTS),
            "accounting": settings.STREAM_RELEASE_ACCOUNTING,
            # BENCH_GC=tuned (gunicorn.conf.py): objects frozen out of the collections, thresholds
            "gc": {"frozen": gc.get_freeze_count(), "threshold": gc.get_threshold()},
        }
    )


class _Samples:
    """A registry's samples of the given names only. Not restricted_registry(): it finds the
    collectors by the names they describe, and the multiprocess collector describes none."""

    def __init__(self, registry, names):
        self.registry, self.names = registry, set(names)

    def collect(self):
        for metric in self.registry.collect():
            samples = [s for s in metric.samples if s.name in self.names]
            if samples:
                only = Metric(metric.name, metric.documentation, metric.type, metric.unit)
                only.samples = samples
                yield only


def metrics(request):
    # ?name[]=...: only those samples, as prometheus_client's own exposition apps take it (the
    # sampler reads three; the whole page costs the server about 15 times as much to write)
    names = request.GET.getlist("name[]")
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        if names:
            registry = _Samples(registry, names)
    else:  # only the collectors of those names are asked: the histograms are not
        registry = REGISTRY.restricted_registry(names) if names else REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)
