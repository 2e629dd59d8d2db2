"""summary.csv columns from a cell's raw files (tests/data/cell), computed by hand below."""

import csv
from pathlib import Path

import pytest

from harness.results import cellfiles, summary

pytestmark = pytest.mark.fast  # starts no server: make test-fast

CELL = Path(__file__).parent / "data" / "cell"
WINDOW = (1000.0, 1008.0)  # excludes the warm-up probe at 999 and the shutdown at 1010


@pytest.fixture(scope="module")
def row():
    context = summary.CellContext(WINDOW, grace_end=1009.0, pool_capacity=4, postgres_log=CELL / "postgres.log")
    return summary.summarize(CELL, "hold", context)


def test_a_wait_still_going_at_the_end_counts_with_its_length_so_far():
    events = cellfiles.read_accounting(CELL)
    waits = summary.acquire_waits(events, 1000.0, 1009.0)
    assert sorted(ms for _, ms, _ in waits) == [1.0, 2.0, 300.0, 500.0, 1704.0, 1801.5, 2000.0]
    assert [(route, still) for route, ms, still in waits if ms == 2000.0] == [("probe", True)]


@pytest.mark.parametrize(
    "values, q, expected",
    [
        ([5, 1, 3], 50, 3),
        ([5, 1, 3], 99, 5),
        ([5, 1, 3], 1, 1),
        (list(range(1, 101)), 99, 99),
        (list(range(1, 101)), 95, 95),
        ([7], 99, 7),
        ([], 50, None),
    ],
)
def test_percentile_is_nearest_rank(values, q, expected):
    assert summary.percentile(values, q) == expected


def test_streams_count_only_whole_bodies(row):
    assert row["streams_completed"] == 1
    assert row["stream_failures"] == 1
    assert row["streams_cut_at_stop"] == 1
    assert row["streams_waiting_at_stop"] == 1 and row["stream_wait_at_stop_max_ms"] == 7500.0
    assert row["stream_ttfb_p50_ms"] == 6.0 and row["stream_ttfb_p99_ms"] == 8.0
    assert row["stream_total_p50_ms"] == 2006.0
    assert row["stream_body_p50_ms"] == 2000.0  # a1's first byte to its last; a2's body was cut short


def test_probe_percentiles_include_the_failed_probe_at_its_time(row):
    assert row["probe_requests"] == 4 and row["probe_failures"] == 1
    assert (row["probe_p50_ms"], row["probe_p95_ms"], row["probe_p99_ms"], row["probe_max_ms"]) == (
        4.0,
        5000.0,
        5000.0,
        5000.0,
    )


def test_pool_peaks_replay_every_event_inside_the_window(row):
    # at 1000.3: two streams hold connections while a probe and a stream wait
    assert row["peak_pool_in_use"] == 2
    assert row["peak_pool_waiting"] == 2  # the three "other" waiters at 1010 are outside
    # waits 1, 2, 500 and 300 (errors), 1704, 1801.5, and 1000 so far for the probe still waiting at 1008
    assert row["pool_wait_p99_ms"] == 1801.5
    assert row["probe_wait_p99_ms"] == 1801.5
    assert row["pool_waiting_at_end"] == 1
    assert row["pool_timeouts"] == 1 and row["too_many_clients"] == 1
    assert row["conn_hold_p50_ms"] == 4000.0 and row["conn_hold_max_ms"] == 4000.0
    assert row["db_errors"] == 1


def test_database_backends_come_from_the_postgres_log_and_the_samples_stay_beside_them(row):
    # the log: session 8 (from 1000.5) and the six of the burst at 1004.100-1004.105, gone by
    # 1004.150, between two samples; session 7 had ended, 9 is the superuser's, 12 was refused
    assert row["peak_db_backends"] == 7 and row["db_backends_from"] == "postgres log"
    assert row["overshoot"] == 3  # 7 backends against a capacity of 4
    assert row["peak_db_backends_sampled"] == 5  # the 9 at 1011 is outside; an empty sample is skipped
    assert row["timeline_samples"] == 4


def test_without_a_postgres_log_the_peak_is_the_sampled_one_and_says_so():
    row = summary.summarize(CELL, "hold", summary.CellContext(WINDOW, grace_end=1009.0, pool_capacity=4))
    assert (row["peak_db_backends"], row["db_backends_from"], row["overshoot"]) == (5, "sampled", 1)
    assert row["conn_opened"] == ""


def test_hung_requests_are_those_still_waiting_when_the_grace_period_ended(row):
    # the probe asking at 1007 has no connection by 1009; every other wait ended
    assert row["hung_requests"] == 1


def test_connections_opened_come_from_the_postgres_log_inside_the_window(row):
    # bench at 1000.5 (00:16:40.500), the burst's six and 1007.999; not before 1000, not
    # postgres, not the session refused at 1002 (pid 12), not after 1008
    assert row["conn_opened"] == 8
    assert row["measured_s"] == 8.0


def test_summary_file_has_the_required_columns_in_order(tmp_path, row):
    required = (
        "run_id,cell,backend,variant,scenario,repeat,status,streams,pool_max,duration_s,"
        "streams_completed,stream_failures,stream_ttfb_p50_ms,stream_ttfb_p99_ms,stream_total_p50_ms,"
        "probe_requests,probe_failures,probe_p50_ms,probe_p95_ms,probe_p99_ms,probe_max_ms,"
        "peak_pool_in_use,peak_pool_waiting,pool_wait_p99_ms,conn_hold_p50_ms,peak_db_backends,db_errors,"
        "db_limit,overshoot,pool_timeouts,too_many_clients,hung_requests,conn_opened"
    ).split(",")
    path = tmp_path / "summary.csv"
    summary.write(path, [{"cell": "a/b/c", **row}])
    with open(path) as f:
        header = next(csv.reader(f))
    assert header[: len(required)] == required
    assert cellfiles.read(path)[0]["peak_pool_in_use"] == "2"


def test_lost_writes_are_the_streams_answered_200_without_their_audit_row(row):
    # a1, a2 (200, then cut short: its view had returned) and a4 (200, unfinished at the
    # stop) should have rows; a3 never got an answer, a5 got a 503, x1 is another variant's;
    # zz's row belongs to no answered stream. a2's row is missing.
    assert row["writes_expected"] == 3
    assert row["lost_writes"] == 1


def test_without_an_audit_file_lost_writes_are_unknown_not_zero(tmp_path):
    for name in ("requests.csv", "accounting-100.csv", "timeline.csv"):
        (tmp_path / name).write_bytes((CELL / name).read_bytes())
    row = summary.summarize(tmp_path, "hold", summary.CellContext(WINDOW))
    assert row["lost_writes"] == "" and row["writes_expected"] == ""


def test_a_killed_worker_gives_back_what_it_held_and_stops_waiting_when_it_dies():
    """worker-kill: accounting-100.csv's worker killed at 1001.0 held two connections (checked
    out at 1000.001 and 1000.102) and had two requests waiting (since 1000.2 and 1000.3); what
    it logged later is dropped."""
    events = cellfiles.read_accounting(CELL, killed=(100, 1001.0))
    assert max(e["unix_s"] for e in events) == 1001.0
    ended = [e for e in events if e["detail"] == "worker killed"]
    assert [(e["event"], e["hold_ms"] or e["wait_ms"]) for e in ended] == [
        ("return", "999.000"),
        ("return", "898.000"),
        ("acquire_error", "800.000"),
        ("acquire_error", "700.000"),
    ]
    assert summary.pool_peaks(events, 1001.01, 1009.0) == (0, 0)  # nothing in use or waiting after
    # killed at 1002.5: 2 checked out (backends 11, 12), one acquire (6 is later) - none waiting
    events = cellfiles.read_accounting(CELL, killed=(100, 1002.5))
    assert sorted((e["event"], e["backend_pid"]) for e in events if e["detail"] == "worker killed") == [
        ("return", "11"),
        ("return", "12"),
    ]
    assert summary.pool_peaks(events, 1002.6, 1009.0) == (0, 0)
    assert not any(still for _, _, still in summary.acquire_waits(events, 1000.0, 1009.0))


def _request(kind, name, start, ms, failure=""):
    return {"request_type": kind, "name": name, "start_unix_s": str(start), "response_time_ms": ms, "failure": failure}


def test_recovery_is_from_the_fault_to_the_first_probe_answered_after_which_none_failed():
    from harness.measure import faults

    probes = [
        _request("GET", "/probe/", 99.0, 10),
        _request("GET", "/probe/", 100.0, 300, "ConnectionResetError"),
        _request("GET", "/probe/", 100.2, 100),
        _request("GET", "/probe/", 100.4, 200, "HTTP 500"),
        _request("GET", "/probe/", 100.6, 50),
        _request("GET", "/probe/", 100.8, 40),
    ]
    streams = [
        _request("STREAM", "/stream/hold/", 98.0, 2500, "ConnectionResetError"),
        _request("STREAM", "/stream/hold/", 98.0, 1000, "HTTP 500"),  # ended before the fault
        _request("GET", "/stream/hold/", 100.1, 5, "HTTP 500"),
    ]  # counted as its STREAM row
    result = faults.after_fault(probes + streams, 100.1, "/stream/hold/")
    assert result == {"failures_after_fault": 3, "recovery_s": 0.55, "fault_failure": "2x ConnectionResetError"}
    assert faults.after_fault(probes[:4], 100.1, "/stream/hold/")["recovery_s"] == ""  # the last probe failed
    assert faults.after_fault(probes[:1] + probes[4:], 100.1, "/stream/hold/") == {
        "failures_after_fault": 0,
        "recovery_s": 0.55,
        "fault_failure": "",
    }


def _event(event, t, pid, hold_ms="", detail="", route="stream", worker="accounting-1.csv"):
    return {
        "event": event,
        "unix_s": t,
        "route": route,
        "wait_ms": "",
        "hold_ms": hold_ms,
        "backend_pid": pid,
        "acquire_id": "",
        "detail": detail,
        "worker": worker,
    }


def test_stream_holds_join_each_stream_to_the_connection_it_held_over_its_body():
    events = [
        # a pool's connection 11, pinned for a 4 s body, then returned at close: one hold, not two
        _event("checkout", 1000.0, 11),
        _event("pinned_stream", 1004.0, 11, "4000.0", "v default"),
        _event("return", 1004.01, 11, "4010.0"),
        # a released stream: checked out and returned before its body; no pinned_stream
        _event("checkout", 1001.0, 12),
        _event("return", 1001.005, 12, "5.0"),
        # a persistent connection 13 kept across two streams of one thread, never returned
        _event("pinned_stream", 1005.0, 13, "3990.0", "v default"),
        _event("pinned_stream", 1009.5, 13, "3995.0", "v default"),
        # ... and another persistent one the garbage collector took long after its stream
        _event("pinned_stream", 1006.0, 14, "4001.0", "v default"),
        _event("return", 1030.0, 14, "28000.0"),
        # given back mid-body: its return came first, and is this stream's hold
        _event("return", 1007.0, 15, "1000.0"),
        _event("pinned_stream", 1010.0, 15, "1000.5", "v default given back"),
        # the same pid in another worker process is another connection
        _event("return", 1008.0, 11, "6.0", worker="accounting-2.csv"),
        # another route's checkout
        _event("return", 1008.0, 16, "2.0", route="probe"),
    ]
    holds = summary.stream_holds(events, 1000.0, 1040.0)
    assert sorted(holds) == [5.0, 6.0, 1000.5, 3990.0, 3995.0, 4000.0, 4001.0]
    # a hold that began before the window does not count (3990 and 4001 began at 1001.0 and
    # 1002.0), nor the return of its connection
    assert sorted(summary.stream_holds(events, 1004.5, 1040.0)) == [6.0, 1000.5, 3995.0]


def test_a_stream_that_began_in_the_window_counts_however_late_it_gave_its_connection_back():
    """Streams as long as the window give their connections back after it: their holds are the
    view's, and leaving them out left conn_hold_p50_ms blank for the worst view."""
    events = [
        _event("checkout", 1001.0, 11),
        _event("pinned_stream", 1011.0, 11, "10000.0", "v default"),  # the window ended at 1008
        _event("return", 1011.01, 11, "10010.0"),
        _event("return", 1012.0, 12, "10500.0"),  # a checkout from 1001.5, returned after the window
    ]
    assert sorted(summary.stream_holds(events, 1000.0, 1008.0)) == [10000.0, 10500.0]


def test_after_a_client_abort_each_held_connection_is_timed_until_it_came_back():
    events = [
        _event("checkout", 1000.0, 11),
        _event("checkout", 1000.5, 12),
        _event("checkout", 1001.0, 13),
        _event("return", 1001.5, 13, "500.0"),  # back before the abort: not held then
        _event("checkout", 1001.8, 14, route="probe"),  # another route's
        # the abort at 1002.0
        _event("return", 1002.01, 11, "2010.0"),  # back 10 ms after
        _event("pinned_stream", 1005.0, 12, "4500.0", "v default"),  # a persistent one: its body ended 3 s after
        _event("return", 1020.0, 12, "19500.0"),
    ]
    assert summary.back_after_abort(events, 1002.0) == (2, pytest.approx(3000.0))
    assert summary.back_after_abort(events[:6], 1002.0) == (2, None)  # 12 never came back in the log
    assert summary.back_after_abort(events, 999.0) == (0, None)


def test_a_connection_kept_from_an_earlier_request_is_the_next_ones_from_its_handover():
    """One thread, one persistent connection 21: a probe opens it, a stream takes it over and
    releases it before its body; then a holding stream keeps 22 until the next request."""
    events = [
        _event("checkout", 1000.0, 21, route="probe"),
        _event("handover", 1001.0, 21, "1000.0", "probe"),  # the stream's now
        _event("return", 1001.006, 21, "6.0"),  # released: written with the stream's route
        _event("checkout", 1002.0, 22),
        _event("pinned_stream", 1006.0, 22, "4000.0", "v default"),
        _event("handover", 1006.5, 22, "4500.0", "stream", route="probe"),  # the stream's hold ended at its body
    ]
    events[2]["route"] = "stream"
    assert sorted(summary.stream_holds(events, 1000.0, 1010.0)) == [6.0, 4000.0]
    assert summary.back_after_abort(events, 1003.0) == (1, pytest.approx(3000.0))
    assert summary.pool_peaks(events, 1000.0, 1010.0) == (1, 0)  # a handover returns nothing, takes nothing


def test_a_session_refused_for_its_roles_limit_never_opened(tmp_path):
    from harness.stack import pglog

    log = tmp_path / "pg.log"
    log.write_text(
        "1970-01-01 00:16:40.000 UTC [31] LOG:  connection authorized: user=bench database=bench\n"
        '1970-01-01 00:16:40.001 UTC [31] FATAL:  too many connections for role "bench"\n'
        "1970-01-01 00:16:41.000 UTC [32] LOG:  connection authorized: user=bench database=bench\n"
    )
    found = pglog.sessions(log, "bench")
    assert [s.refused for s in found] == [True, False]
    assert pglog.opened(found, 999, 1002) == 1 and pglog.peak(found, 999, 1002) == 1


@pytest.mark.parametrize(
    "detail",
    [
        # psycopg_pool (Django's native pool), as a cell's event log has it
        "PoolTimeout: couldn't get a connection after 3.00 sec",
        # SQLAlchemy's QueuePool (django-db-connection-pool), as a cell's event log has it
        "TimeoutError: QueuePool limit of size 4 overflow 0 reached, connection timed out, timeout 3.00 "
        "(Background on this error at: https://sqlalche.me/e/21/3o7r)",
    ],
)
def test_every_pool_s_checkout_timeout_counts_as_a_pool_timeout(detail):
    waited = {"route": "stream", "worker": 1, "acquire_id": 1, "detail": ""}
    events = [
        {**waited, "event": "acquire", "unix_s": 1000.0, "wait_ms": ""},
        {**waited, "event": "acquire_error", "unix_s": 1003.0, "wait_ms": "3000.0", "detail": detail},
    ]
    columns = summary._pool_columns(events, WINDOW, None, "stream", "probe")
    assert (columns["pool_timeouts"], columns["too_many_clients"]) == (1, 0)
