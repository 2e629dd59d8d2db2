"""stream_release.accounting: any ENGINE wrapped by a settings change, checkouts and returns
counted exactly, the event log written."""

import os
import subprocess
import sys
import threading
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, connections
from django.db.utils import ConnectionHandler, load_backend

from stream_release import accounting, metrics
from stream_release import event_log as event_log_module
from stream_release.accounting import AccountingMixin, accounted, counts, event_log, pool_limit


def test_accounted_wraps_each_entry_once_and_keeps_its_engine():
    databases = {"default": {"ENGINE": "django.db.backends.sqlite3"}, "other": {"ENGINE": "x.y"}}
    wrapped = accounted(databases)
    assert wrapped["default"] == {"ENGINE": "stream_release.db", "ACCOUNTED_ENGINE": "django.db.backends.sqlite3"}
    assert accounted(wrapped) == wrapped
    assert accounted(databases, "other")["default"] == databases["default"]
    assert databases["default"] == {"ENGINE": "django.db.backends.sqlite3"}  # a copy


def test_the_wrapper_is_the_named_backends_with_the_mixin_first():
    wrapper = connections["default"]
    base = load_backend(wrapper.settings_dict["ACCOUNTED_ENGINE"]).DatabaseWrapper
    assert type(wrapper).__mro__[1:3] == (AccountingMixin, base)
    assert type(wrapper).__qualname__ == f"Accounted{base.__name__}"


def test_an_entry_without_the_engine_to_account_for_is_refused():
    handler = ConnectionHandler({"default": {"ENGINE": "stream_release.db"}})
    with pytest.raises(ImproperlyConfigured, match=r"ENGINE 'stream_release.db' needs ACCOUNTED_ENGINE"):
        handler["default"]


@pytest.mark.django_db(transaction=True)
def test_each_checkout_and_return_is_counted_and_logged(tmp_path, settings):
    connection.close()
    settings.STREAM_RELEASE_EVENT_LOG_DIR = str(tmp_path)
    before = counts.in_use
    for _ in range(3):
        connection.ensure_connection()
        assert counts.in_use == before + 1
        connection.close()
        assert counts.in_use == before
    (log,) = tmp_path.glob("accounting-*.csv")
    events = [row["event"] for row in log_of(log)]
    assert events == ["acquire", "checkout", "return"] * 3


def log_of(path):
    return event_log_module.read(path)


@pytest.mark.django_db(transaction=True)
def test_a_connection_kept_from_an_earlier_request_is_handed_over(tmp_path, settings):
    """A persistent connection this thread checked out before belongs to the next request
    (hand_over, at each request's view)."""
    connection.close()
    settings.STREAM_RELEASE_EVENT_LOG_DIR = str(tmp_path)
    route = accounting.current_route.set("earlier")
    try:
        connection.ensure_connection()
        accounting.hand_over("next")
        connection.close()
    finally:
        accounting.current_route.reset(route)
    (log,) = tmp_path.glob("accounting-*.csv")
    events = [(e["event"], e["route"], e["detail"]) for e in log_of(log)]
    assert events == [
        ("acquire", "earlier", ""),
        ("checkout", "earlier", ""),
        ("handover", "next", "earlier"),
        ("return", "next", ""),
    ]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork on this platform")
def test_a_forked_process_writes_a_file_of_its_own(tmp_path, settings):
    settings.STREAM_RELEASE_EVENT_LOG_DIR = str(tmp_path)
    event_log.write("db_error", "parent")
    child = os.fork()
    if child == 0:  # the child: one event, then out without pytest's teardown
        try:
            event_log.write("db_error", "child")
        finally:
            os._exit(0)
    os.waitpid(child, 0)
    event_log.write("db_error", "parent again")
    routes = {path.name: [e["route"] for e in log_of(path)] for path in tmp_path.glob("accounting-*.csv")}
    assert routes == {f"accounting-{os.getpid()}.csv": ["parent", "parent again"], f"accounting-{child}.csv": ["child"]}


@pytest.mark.django_db(transaction=True)
def test_the_gauges_read_the_counts_when_scraped():
    """Outside prometheus_client's multiprocess mode no checkout sets a gauge: /metrics reads
    the counts (the multiprocess mode, which sets them, is tested with the app's /metrics)."""
    gauge = pytest.importorskip(
        "prometheus_client", reason="the metrics extra is not installed"
    ).REGISTRY.get_sample_value
    connection.close()
    before = gauge("stream_release_connections_in_use")
    connection.ensure_connection()
    assert gauge("stream_release_connections_in_use") == before + 1 == counts.in_use
    assert gauge("stream_release_connections_in_use_peak") == counts.in_use_peak >= before + 1
    assert gauge("stream_release_connections_waiting") == counts.waiting == 0
    connection.close()
    assert gauge("stream_release_connections_in_use") == before


@pytest.mark.django_db(transaction=True)
def test_the_checkouts_waits_and_holds_read_the_counts_when_scraped():
    sample = pytest.importorskip(
        "prometheus_client", reason="the metrics extra is not installed"
    ).REGISTRY.get_sample_value
    route = {"route": "scraped"}
    connection.close()
    token = accounting.current_route.set("scraped")
    try:
        connection.ensure_connection()
        time.sleep(0.012)
        connection.close()
    finally:
        accounting.current_route.reset(token)
    assert sample("stream_release_checkouts_total", route) == 1
    assert sample("stream_release_acquire_wait_seconds_count", route) == 1
    assert sample("stream_release_connection_hold_seconds_count", route) == 1
    held = sample("stream_release_connection_hold_seconds_sum", route)
    assert held >= 0.012
    for bound in metrics.SECONDS_BUCKETS:  # in the bucket of each bound at or above it only
        assert sample("stream_release_connection_hold_seconds_bucket", {**route, "le": str(float(bound))}) == (
            held <= bound
        )


def test_the_counts_show_as_prometheus_clients_own_histogram_would():
    """Observed into the counts or into prometheus_client's Histogram, the same values give the
    same samples: at each bound (a value on it is in its bucket), below the first, above the last."""
    prometheus = pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
    seconds = [0, 0.0005, 0.001, 0.0011, 0.005, 0.3, 1, 2.5, 30, 60, 61, 3600]
    own = prometheus.Histogram(
        "h_seconds", "h", registry=prometheus.CollectorRegistry(), buckets=metrics.SECONDS_BUCKETS
    )
    counted = metrics.RouteCounts()
    for s in seconds:
        own.observe(s)
        counted.hold.observe(s)
        counted.checkouts += 1

    class Counts:  # what the collector reads of stream_release.accounting.counts
        lock = threading.Lock()
        in_use = waiting = in_use_peak = waiting_peak = 0
        routes = {"r": counted}

        def settle(self):
            pass

    def samples(families, name):
        return [(s.name.removeprefix(name), s.labels.get("le"), s.value) for f in families for s in f.samples]

    counts = Counts()
    collected = {
        f.name: f for c in (metrics._CountsCollector, metrics._HistogramsCollector) for f in c(counts).collect()
    }
    hold = collected["stream_release_connection_hold_seconds"]
    assert samples([hold], hold.name) == [s for s in samples(own.collect(), "h_seconds") if s[0] != "_created"]
    assert [s.value for s in collected["stream_release_checkouts"].samples] == [len(seconds)]


def test_a_scrape_for_the_gauges_and_checkouts_builds_no_histograms(monkeypatch):
    """prometheus_client's restricted registry (`?name[]=`) asks only the collectors of the
    names asked for: the sampler's once-a-second read leaves the histograms alone."""
    prometheus = pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
    built = []
    monkeypatch.setattr(metrics._HistogramsCollector, "collect", lambda self: built.append(self) or iter(()))
    names = ["stream_release_connections_in_use", "stream_release_checkouts_total"]
    page = prometheus.generate_latest(prometheus.REGISTRY.restricted_registry(names)).decode()
    assert "stream_release_connections_in_use " in page and not built
    prometheus.generate_latest(prometheus.REGISTRY)
    assert built


def test_a_return_by_the_garbage_collector_is_counted_by_the_next_scrape():
    sample = pytest.importorskip(
        "prometheus_client", reason="the metrics extra is not installed"
    ).REGISTRY.get_sample_value
    route = {"route": "collected"}
    with counts.lock:  # the returns of earlier tests' connections, if the collector took any
        counts.settle()
    before = counts.in_use
    counts.acquiring()
    counts.checked_out("collected", 0.001)
    accounting._collected([[time.perf_counter(), "collected", 1, accounting._Holding()]])
    assert counts.in_use == before + 1  # the finalizer takes no lock: not counted yet
    assert sample("stream_release_connections_in_use") == before == counts.in_use
    assert sample("stream_release_connection_hold_seconds_count", route) == 1


MULTIPROCESS_COLLECTED = """
import os, threading, time
import django
from django.conf import settings
settings.configure()
django.setup()
from prometheus_client import CollectorRegistry, values
from prometheus_client.multiprocess import MultiProcessCollector
from stream_release import accounting
# the one lock of prometheus_client's multiprocess values
(values_lock,) = (cell.cell_contents for cell in values.ValueClass.inc.__closure__)
accounting.counts.acquiring()
accounting.counts.checked_out("kept", 0.001)
done = threading.Event()
def collected_inside_an_update():  # where the garbage collector may run the finalizer
    with values_lock:
        accounting._collected([[time.perf_counter(), "kept", 1, accounting._Holding()]])
    done.set()
# and this thread holds the counts' lock, as one does that waits for values_lock to set a gauge
with accounting.counts.lock:
    threading.Thread(target=collected_inside_an_update, daemon=True).start()
    if not done.wait(10):
        print("waited for ever")
        os._exit(1)  # the locks stay held: nothing else could count or set a value
print("returned")
accounting.counts.acquiring()  # the next change sets what the finalizer could not
registry = CollectorRegistry()
MultiProcessCollector(registry)
print(registry.get_sample_value("stream_release_connections_in_use"))
print(registry.get_sample_value("stream_release_connection_hold_seconds_count", {"route": "kept"}))
"""


def test_a_connection_collected_inside_a_multiprocess_update_is_published_by_the_next_change(tmp_path):
    """In prometheus_client's multiprocess mode every value shares one lock, not reentrant, and
    the garbage collector can run a persistent connection's finalizer in a thread that holds
    it, while another holds the counts' lock and waits for it: the finalizer waits for neither,
    and the return reaches the process's file with the next change."""
    pytest.importorskip("prometheus_client", reason="the metrics extra is not installed")
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    env.pop("DJANGO_SETTINGS_MODULE", None)
    out = subprocess.run(
        [sys.executable, "-c", MULTIPROCESS_COLLECTED], env=env, capture_output=True, text=True, timeout=60
    )
    assert out.stdout.split() == ["returned", "0.0", "1.0"], out.stdout + out.stderr


@pytest.mark.django_db(transaction=True)
def test_switched_off_it_passes_calls_on_and_counts_nothing(tmp_path, settings):
    settings.STREAM_RELEASE_EVENT_LOG_DIR = str(tmp_path)
    settings.STREAM_RELEASE_ACCOUNTING = False
    connection.close()
    before = counts.in_use_peak, counts.in_use
    connection.ensure_connection()
    assert connection.connection is not None
    connection.close()
    assert (counts.in_use_peak, counts.in_use) == before and not list(tmp_path.iterdir())


def wrapper(options, *bases, **entry):
    """An object with what pool_limit() reads of a DatabaseWrapper: its classes, OPTIONS and
    the entry's other keys."""
    obj = type("DatabaseWrapper", bases or (object,), {})()
    obj.settings_dict = {"OPTIONS": options, **entry}
    return obj


def test_pool_limit_knows_the_pools():
    assert pool_limit(wrapper({})) is None
    assert pool_limit(wrapper({"pool": True})) == 4
    assert pool_limit(wrapper({"pool": {"min_size": 2, "max_size": 8}})) == 8
    assert pool_limit(wrapper({"pool": {"min_size": 2}})) == 2
    geventpool = type("DatabaseWrapper", (), {"__module__": "django_db_geventpool.backends.postgresql_psycopg2.base"})
    assert pool_limit(wrapper({}, geventpool)) == 4
    assert pool_limit(wrapper({"MAX_CONNS": 9}, geventpool)) == 9
    queue_pool = type("DatabaseWrapper", (), {"__module__": "dj_db_conn_pool.backends.postgresql.base"})
    assert pool_limit(wrapper({}, queue_pool)) == 20  # POOL_SIZE 10 and MAX_OVERFLOW 10 by default
    assert pool_limit(wrapper({}, queue_pool, POOL_OPTIONS={"POOL_SIZE": 4, "MAX_OVERFLOW": 0})) == 4
    assert pool_limit(wrapper({}, queue_pool, POOL_OPTIONS={"MAX_OVERFLOW": -1})) is None  # no limit
