"""The server dimension (matrix.toml's [servers]): benchapp under gunicorn's gthread and sync
workers and under uvicorn's ASGI worker, measured end to end (`python -m harness bench --matrix
smoke-servers`): holding pins the connection on every server, the package's release releases on
every server, and under ASGI a sync iterator is sent only once it is done, held whole in memory."""

import subprocess
import sys

import pytest

from harness import ROOT, UsageError
from harness.results import cellfiles
from harness.spec import matrix
from tests.conftest import SPEC


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("servers") / "run"
    result = subprocess.run(
        [sys.executable, "-m", "harness", "bench", "--matrix", "smoke-servers", "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out


@pytest.fixture(scope="module")
def rows(run):
    return {(r["server"], r["variant"]): r for r in cellfiles.read(run / "summary.csv") if r["backend"] == "stock"}


@pytest.fixture(scope="module")
def persistent(run):
    return {
        (r["server"], r["variant"]): r
        for r in cellfiles.read(run / "summary.csv")
        if r["backend"] == "stock-persistent"
    }


def ms(row, column):
    return float(row[column])


def test_every_cell_ran_under_its_server_and_says_so(rows):
    assert sorted(rows) == sorted(
        [(s, v) for s in ("gthread", "sync", "uvicorn") for v in ("hold", "release")]
        + [("uvicorn", v) for v in ("async-hold", "async-release", "async-thread-query")]
        + [("daphne", v) for v in ("hold", "async-hold")]
    )
    for (server, variant), row in rows.items():
        assert row["status"] == "ok", row
        assert row["cell"] == f"stock/{variant}/smoke-server@{server}" and int(row["streams_completed"]) > 0, row
        assert row["leaked_conns"] == "0", row


@pytest.mark.parametrize("server", ["gthread", "sync", "uvicorn"])
def test_hold_pins_and_release_releases_on_every_server(rows, server):
    # against the stream's designed length, as the findings tables judge: a stream's total also
    # counts its wait for a sync worker, behind the streams before it
    hold, release = rows[(server, "hold")], rows[(server, "release")]
    assert ms(hold, "conn_hold_p50_ms") >= ms(hold, "stream_design_ms") / 2, hold
    assert int(hold["streams_pinned"]) >= int(hold["streams_completed"]), hold
    assert ms(release, "conn_hold_p50_ms") <= ms(release, "stream_design_ms") / 10, release
    assert release["streams_pinned"] == "0", release


def test_under_asgi_a_sync_iterator_is_sent_only_once_it_is_done_and_an_async_one_as_it_goes(rows):
    for variant in ("hold", "release"):  # Django's __aiter__ consumes a sync iterator whole first
        row = rows[("uvicorn", variant)]
        assert ms(row, "stream_ttfb_p50_ms") > 0.9 * ms(row, "stream_total_p50_ms"), row
        assert ms(row, "stream_body_p50_ms") < ms(row, "stream_total_p50_ms") / 20, row  # then all at once
    for server in ("gthread", "sync"):  # under WSGI the same body streams (under sync, after its turn)
        row = rows[(server, "hold")]
        assert ms(row, "stream_body_p50_ms") > ms(row, "stream_total_p50_ms") / 5, row
    row = rows[("gthread", "hold")]
    assert ms(row, "stream_ttfb_p50_ms") < ms(row, "stream_total_p50_ms") / 5, row
    for variant in ("async-hold", "async-release", "async-thread-query"):
        row = rows[("uvicorn", variant)]
        assert ms(row, "stream_ttfb_p50_ms") < ms(row, "stream_total_p50_ms") / 5, row


def test_under_asgi_a_sync_iterator_holds_the_whole_body_in_the_servers_memory(rows):
    """Four 12 MiB bodies at a time: consumed whole before the first byte, they sit in the
    worker's memory together; an async iterator's chunks are sent and dropped one by one."""
    streamed = float(rows[("uvicorn", "async-release")]["server_rss_peak_mib"])
    for variant in ("hold", "release"):
        row = rows[("uvicorn", variant)]
        assert float(row["server_rss_peak_mib"]) > streamed + 10, (row, streamed)
    for server in ("gthread", "sync"):  # the same sync iterator, streamed under WSGI
        assert float(rows[(server, "release")]["server_rss_peak_mib"]) < float(
            rows[("uvicorn", "release")]["server_rss_peak_mib"]
        )


def test_async_bodies_hold_until_the_response_closes_unless_released(rows):
    for variant in ("async-hold", "async-thread-query"):  # request_finished only from response.close()
        row = rows[("uvicorn", variant)]
        assert ms(row, "conn_hold_p50_ms") > ms(row, "stream_total_p50_ms") / 2, row
    released = rows[("uvicorn", "async-release")]
    assert ms(released, "conn_hold_p50_ms") < ms(released, "stream_total_p50_ms") / 20, released


def test_daphne_pins_like_uvicorn_but_sends_a_buffered_bodys_headers_only_with_it(rows):
    """The same ASGI handler under another server: the connection is held alike; uvicorn sends
    http.response.start as it comes, daphne only with the first body bytes, so a client of a
    buffered stream waits for the whole body before it sees even the status line."""
    for variant in ("hold", "async-hold"):
        row = rows[("daphne", variant)]
        assert ms(row, "conn_hold_p50_ms") > ms(row, "stream_total_p50_ms") / 2, row
        assert int(row["streams_pinned"]) >= int(row["streams_completed"]), row
    daphne, uvicorn = rows[("daphne", "hold")], rows[("uvicorn", "hold")]
    assert ms(daphne, "stream_headers_p50_ms") > 0.9 * ms(daphne, "stream_total_p50_ms"), daphne
    assert ms(uvicorn, "stream_headers_p50_ms") < ms(uvicorn, "stream_total_p50_ms") / 5, uvicorn
    streamed = rows[("daphne", "async-hold")]  # an async body: its headers come with its first chunk, at once
    assert ms(streamed, "stream_headers_p50_ms") < ms(streamed, "stream_total_p50_ms") / 5, streamed


def test_a_persistent_connection_kept_across_the_stream_counts_as_held_for_its_body(persistent):
    """CONN_MAX_AGE=60: close_old_connections() keeps a young connection, and under gthread each
    thread keeps its own across requests; neither is returned within the cell, and each stream's
    hold is its body's, from the detector's join (it was "not returned" before, or the few the
    garbage collector happened to take)."""
    assert sorted(persistent) == [("gevent", "close-old"), ("gthread", "hold")]
    for row in persistent.values():
        assert row["status"] == "ok", row
        assert ms(row, "conn_hold_p50_ms") > ms(row, "stream_total_p50_ms") / 2, row
        assert int(row["streams_pinned"]) >= int(row["streams_completed"]) > 0, row


def test_a_one_process_server_refuses_workers_and_worker_kill_in_one_line():
    spec = matrix.load()
    for override, message in (
        (["workers=2"], "workers=2 under server daphne, which runs one process"),
        (
            ["server_gc=tuned"],
            "server_gc=tuned under server daphne: the tuned collector is set in gunicorn's post_worker_init",
        ),
        (["fault=worker-kill"], "fault worker-kill under server daphne, which has no gunicorn worker to kill"),
    ):
        with pytest.raises(UsageError) as raised:
            spec.cells("smoke-servers", matrix.parse_overrides(override))
        assert message in str(raised.value) and "\n" not in str(raised.value)


def test_a_sync_worker_serves_one_request_at_a_time_so_the_probes_wait_behind_the_streams(rows):
    """Four streams and one sync worker: the probes queue behind whole streams, releasing or not."""
    for variant in ("hold", "release"):
        sync, threads = rows[("sync", variant)], rows[("gthread", variant)]
        assert int(sync["probe_failures"]) > int(threads["probe_failures"]), (sync, threads)
        assert ms(sync, "probe_p99_ms") > 2 * ms(threads, "probe_p99_ms"), (sync, threads)


def test_a_backend_under_a_server_it_does_not_work_under_is_refused_in_one_line(tmp_path):
    spec = tmp_path / "matrix.toml"
    spec.write_text(
        (ROOT / "matrix.toml").read_text() + '\n[matrices.bad]\nservers = ["uvicorn"]\n'
        'backends = ["geventpool"]\nvariants = ["hold"]\nscenarios = ["smoke-server"]\n'
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "bench",
            "--matrix-file",
            str(spec),
            "--matrix",
            "bad",
            "--out",
            str(tmp_path / "run"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and result.stderr.strip().splitlines() == [
        "error: MATRIX=bad: backend geventpool does not work under server uvicorn (only gevent): "
        "pick another backend or server"
    ], result.stderr
    assert not (tmp_path / "run").exists()  # refused before anything started


def test_an_async_variant_under_a_wsgi_server_and_an_unknown_server_are_refused():
    with pytest.raises(
        UsageError, match="variant async-hold runs only under ASGI servers, not gthread: pick a server of uvicorn"
    ):
        matrix.check_variant(SPEC, "async-hold", SPEC.servers["gthread"], "MATRIX=x")
    result = subprocess.run(
        [sys.executable, "-m", "harness", "serve", "--server", "nosuch"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (
        result.returncode == 2
        and "error: SERVER=nosuch is unknown: use one of gevent, gthread, sync, uvicorn" in result.stderr
    ), result.stderr


def test_make_table_on_a_servers_run_says_per_server_what_pins_and_what_is_buffered(run):
    result = subprocess.run(
        [sys.executable, "-m", "harness", "table", str(run)], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = {
        tuple(c.strip(" `*") for c in line.split("|")[1:6]): line
        for line in result.stdout.splitlines()
        if line.startswith("| `")
    }
    assert lines[("uvicorn", "stock", "hold", "held for the stream", "buffered whole")]
    assert lines[("uvicorn", "stock", "async-release", "released", "streamed")]
    assert lines[("gthread", "stock", "hold", "held for the stream", "streamed")]
    assert lines[("gthread", "stock-persistent", "hold", "held for the stream", "streamed")]
    assert len(lines) == 13
