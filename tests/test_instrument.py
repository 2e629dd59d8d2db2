"""instrument=false: the app without its connection accounting (to measure what it costs),
and the garbage collector's pauses in the accounting when it is on; real gunicorn servers."""

import json

import pytest

from harness.stack.metrics import read_metrics
from harness.stack.server import get
from tests.conftest import app_server


@pytest.mark.parametrize("instrument", [True, False])
def test_the_accounting_counts_checkouts_only_when_instrumented(database, tmp_path, instrument):
    with app_server(database, tmp_path, instrument=instrument) as server:
        server.verify("release")
        for _ in range(3):
            assert get(f"{server.url}/probe/")[0] == 200
        health = json.loads(get(f"{server.url}/healthz")[1])
        checkouts = read_metrics(server.url).get("pool_checkouts_total", 0)
    assert health["accounting"] is instrument
    if instrument:
        assert checkouts >= 13  # verify's 3 streams and 10 warm-up probes, and these 3
    else:
        assert checkouts == 0


@pytest.mark.parametrize("instrument", [True, False])
def test_the_detector_warns_whether_instrumented_or_not(database, tmp_path, instrument):
    """The detector middleware is the app's, as in a user's project: instrument=false measures
    the accounting and the sampler without taking it away."""
    with app_server(database, tmp_path, instrument=instrument) as server:
        status, body, _ = get(f"{server.url}/stream/hold/?chunks=2&chunk_bytes=16&delay_ms=0&category=1")
    assert status == 200 and len(body) == 32
    log = (tmp_path / "server.log").read_text()
    assert log.count("benchapp.views.stream started streaming its body with database connection") == 1, log


@pytest.mark.parametrize("server_gc", ["default", "tuned"])
def test_a_tuned_garbage_collector_is_frozen_in_the_worker(database, tmp_path, server_gc):
    with app_server(database, tmp_path, server_gc=server_gc) as server:
        assert get(f"{server.url}/probe/")[0] == 200
        health = json.loads(get(f"{server.url}/healthz")[1])
    if server_gc == "tuned":  # Django and the app loaded, then frozen out of the collections
        assert health["gc"]["threshold"] == [50_000, 20, 100] and health["gc"]["frozen"] > 10_000
    else:
        assert health["gc"]["threshold"] == [700, 10, 10] and health["gc"]["frozen"] == 0


def test_every_pause_of_the_garbage_collector_is_measured(database, tmp_path):
    with app_server(database, tmp_path) as server:  # Python's defaults: collections come soon
        for _ in range(20):
            assert get(f"{server.url}/probe/")[0] == 200
        _, body, _ = get(f"{server.url}/metrics")
    counts = {
        line.split('"')[1]: float(line.split()[-1])
        for line in body.decode().splitlines()
        if line.startswith("bench_gc_pause_seconds_count")
    }
    assert counts.get("0", 0) > 0, counts  # the young generation, collected every 700 allocations
