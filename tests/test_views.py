"""The views through Django's test client, on the session's PostgreSQL (pytest-django)."""

import os

import pytest

from benchapp.models import Item
from benchapp.variants import VARIANTS

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def rows():
    Item.objects.bulk_create(
        Item(sku=f"SKU{i:08d}", category=i % 100, name=f"item {i}", price_cents=100 + i) for i in range(300)
    )


@pytest.mark.parametrize(
    "query, message",
    [
        ("chunks=0", "chunks must be an integer from 1 to 1000000, got 0"),
        ("chunks=abc", "chunks must be an integer from 1 to 1000000, got 'abc'"),
        ("chunk_bytes=-5", "chunk_bytes must be an integer from 1 to 16777216, got -5"),
        ("chunk_bytes=99999999999", "chunk_bytes must be an integer from 1 to 16777216"),
        ("delay_ms=1.5", "delay_ms must be an integer from 0 to 3600000, got '1.5'"),
        ("category=100", "category must be an integer from 0 to 99, got 100"),
    ],
)
def test_bad_stream_parameters_get_a_400_naming_the_parameter(client, query, message):
    response = client.get(f"/stream/hold/?{query}")
    assert response.status_code == 400
    assert message in response.content.decode()


def test_unknown_variant_is_a_404_listing_the_known_ones(client):
    response = client.get("/stream/close-young/")
    assert response.status_code == 404
    assert f"one of: {', '.join(VARIANTS)}" in response.content.decode()


# variant -> (how its body starts, the queries of a 5-chunk stream)
BODIES = {v: (b"# category 7: 3 items, ", 3) for v in VARIANTS}  # audit row, aggregate, page
BODIES["cursor-hold"] = (b"# rows from a cursor\n", 3 + 1)  # ... and one cursor, read as it goes
BODIES["release-per-batch"] = (b"# rows from a batch\n", 3 + 5)  # ... and one query per chunk
BODIES["async-thread-query"] = (b"# rows from the request's thread\n", 3 + 5)
BODIES["async-release-per-batch"] = (b"# rows from a batch\n", 3 + 5)


def body_of(response) -> bytes:
    """The whole body; an async one (the async-* variants) read as an ASGI server would, its
    sync_to_async calls in this thread, where the test's connection is."""
    from asgiref.sync import async_to_sync

    if not response.is_async:
        return b"".join(response.streaming_content)

    async def read():
        return b"".join([part async for part in response.streaming_content])

    return async_to_sync(read)()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_stream_body_has_exactly_the_requested_size(client, variant, django_assert_num_queries):
    start, queries = BODIES[variant]
    with django_assert_num_queries(queries):
        response = client.get(
            f"/stream/{variant}/?chunks=5&chunk_bytes=100&delay_ms=0&category=7", headers={"X-Request-Id": "req-1"}
        )
        body = body_of(response)
    assert response.status_code == 200
    assert len(body) == 500
    assert body.startswith(start)
    assert response["X-Bench-Body-Bytes"] == "500"
    assert response["X-Request-Id"] == "req-1"


def test_probe_looks_up_one_seeded_row(client, settings):
    settings.BENCH_SEED_ROWS = 300
    data = client.get("/probe/").json()
    assert data["item"]["sku"].startswith("SKU")
    assert isinstance(data["backend_pid"], int)


@pytest.mark.parametrize("n", [1, 10])
def test_queries_makes_n_lookups(client, settings, django_assert_num_queries, n):
    settings.BENCH_SEED_ROWS = 300
    with django_assert_num_queries(n):
        data = client.get(f"/queries/?n={n}&wait_ms=1").json()
    assert data == {"queries": n, "found": n}


@pytest.mark.parametrize(
    "query, message",
    [("n=0", "n must be an integer from 1 to 1000, got 0"), ("wait_ms=x", "wait_ms must be an integer")],
)
def test_bad_queries_parameters_get_a_400_naming_the_parameter(client, query, message):
    response = client.get(f"/queries/?{query}")
    assert response.status_code == 400
    assert message in response.content.decode()


def test_healthz_and_metrics_touch_no_database(client, django_assert_num_queries):
    with django_assert_num_queries(0):
        health = client.get("/healthz").json()
        metrics = client.get("/metrics").content.decode()
    assert health["backend"] == "geventpool"
    assert health["variants"] == list(VARIANTS)
    assert "stream_release_connections_in_use" in metrics


def test_metrics_sends_only_the_samples_named_in_name_brackets(client):
    """What the sampler asks for once a second (harness.stack.metrics.METRICS_QUERY): its three
    samples, not the histograms; the whole page without a name."""
    from harness.stack.metrics import METRICS, METRICS_QUERY

    client.get("/probe/")  # a checkout, so that the counter has a sample for its route
    whole = client.get("/metrics").content.decode()
    some = client.get(f"/metrics?{METRICS_QUERY}").content.decode()
    sample_names = {line.split("{")[0].split(" ")[0] for line in some.splitlines() if not line.startswith("#")}
    assert sample_names == set(METRICS)
    assert "stream_release_connection_hold_seconds_bucket" in whole
    assert len(some) < len(whole) / 5


def test_metrics_names_its_samples_from_every_worker_too(tmp_path):
    """With several gunicorn workers /metrics merges their files (PROMETHEUS_MULTIPROC_DIR), and
    prometheus_client's restricted_registry() finds nothing there: ?name[]= must still give the
    sampler its three samples, summed over the workers' files."""
    import subprocess
    import sys

    from harness import ROOT
    from harness.stack.metrics import METRICS

    script = """
import django, os
os.environ["DJANGO_SETTINGS_MODULE"] = "benchapp.settings"
django.setup()
from django.test import RequestFactory
from benchapp import views
from harness.stack.metrics import METRICS_QUERY
from stream_release import accounting
for _ in range(5):  # multiprocess mode: the counts set the metrics in this process's file
    accounting.counts.acquiring()
    accounting.counts.checked_out("probe", 0.002)
for _ in range(2):
    accounting.counts.held("probe", 0.01)
print(views.metrics(RequestFactory().get("/metrics?" + METRICS_QUERY)).content.decode())
"""
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, check=True, timeout=60
    ).stdout
    samples = {line.split("{")[0].split(" ")[0]: line for line in out.splitlines() if line and line[0] != "#"}
    assert set(samples) == set(METRICS)
    assert samples["stream_release_connections_in_use"].endswith(" 3.0")
    assert samples["stream_release_connections_waiting"].endswith(" 0.0")
    assert samples["stream_release_checkouts_total"].endswith(" 5.0")


def test_the_sampler_reads_the_whole_page_when_the_named_samples_come_back_empty():
    """An app's own /metrics may filter name[] with restricted_registry(), which over several
    workers' files gives nothing: the sampler then reads the page without the filter."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from harness.stack.metrics import read_metrics

    asked = []

    class Metrics(BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            body = b"" if "?" in self.path else b"stream_release_connections_in_use 2.0\n"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Metrics)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        assert read_metrics(url) == {"pool_in_use": 2.0}
        assert read_metrics(url) == {"pool_in_use": 2.0}  # remembered: one read a sample from then on
    finally:
        server.shutdown()
        server.server_close()
    assert asked == [asked[0], "/metrics", "/metrics"] and asked[0].startswith("/metrics?name")
