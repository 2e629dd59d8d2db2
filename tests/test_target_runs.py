"""make bench, make capacity and a target's own environment on a project made by `django-admin
startproject` (tests/support/target_project.py); the target file and make serve: test_target.py. Two
modules, so that pytest-xdist can run their minutes on both workers."""

import json
import os
import subprocess
import sys

import pytest

from harness import ROOT
from harness.results import cellfiles
from harness.spec import target
from harness.spec.matrix import OWN
from tests.support import target_project


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    return target_project.make(tmp_path_factory.mktemp("target"))


@pytest.fixture(scope="module")
def bench_run(project, tmp_path_factory):
    """The target on its own backend, and on geventpool-bounded (a matrix backend of this
    project's own code) substituted in, under gevent; and on its own backend under uvicorn (ASGI,
    target.asgi)."""
    out = tmp_path_factory.mktemp("target-bench") / "run"
    matrix_file = out.with_name("matrix.toml")
    matrix_file.write_text(
        (ROOT / "matrix.toml").read_text()
        + """
[[matrices.two.parts]]
backends = ["own", "geventpool-bounded"]
variants = ["hold"]
scenarios = ["own-slow-read"]
[[matrices.two.parts]]
servers = ["uvicorn"]
backends = ["own"]
variants = ["hold"]
scenarios = ["own-slow-read"]
[scenarios.own-slow-read-switched]
description = "own-slow-read with django-stream-release's switch on"
base = "own-slow-read"
release_all_streams = true
[[matrices.two.parts]]
backends = ["own"]
variants = ["hold"]
scenarios = ["own-slow-read-switched"]
"""
    )
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "bench",
            "--target",
            str(project),
            "--matrix-file",
            str(matrix_file),
            "--matrix",
            "two",
            "--out",
            str(out),
            "--set",
            "duration_s=4",
            "--set",
            "streams=4",
            "--set",
            "spawn_s=1",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    rows = cellfiles.read(out / "summary.csv")
    return (
        out,
        {(r["backend"], r["variant"]): r for r in rows if r["server"] == "gevent" and r["scenario"] == "own-slow-read"},
        {r["variant"]: r for r in rows if r["server"] == "uvicorn"},
        {r["variant"]: r for r in rows if r["scenario"] == "own-slow-read-switched"},
    )


def test_bench_tells_the_pinning_streams_from_the_released_one(bench_run):
    out, rows, _, _ = bench_run
    assert sorted(rows) == [(b, s) for b in ("geventpool-bounded", "own") for s in ("iterator", "query", "released")]
    for (backend, name), row in rows.items():
        assert row["status"] == "ok" and row["target"] == "mysite", row
        # the target's own pool is its own; a substituted backend's is the matrix's, and it held
        assert row["pool_max"] == ("" if backend == "own" else "4"), row
        if backend != "own":
            assert 1 <= int(row["peak_pool_in_use"]) <= 4, row
        assert int(row["streams_completed"]) > 0 and int(row["stream_failures"]) == 0
        assert row["lost_writes"] == row["writes_expected"] == ""  # no audit table: unknown, not 0
        assert row["leaked_conns"] == "0" and int(row["timeline_samples"]) > 0  # the sampler read its metrics
        total, held = float(row["stream_total_p50_ms"]), float(row["conn_hold_p50_ms"])
        if name == "released":
            assert held < total / 20 and row["streams_pinned"] == "0", row
        else:  # held for about the whole stream (20 rows 50 ms apart), each stream a pinned one
            assert held > total / 2 and int(row["streams_pinned"]) >= int(row["streams_completed"]), row
    info = json.loads((out / "run.json").read_text())
    assert info["target"]["settings"] == "mysite.settings" and info["status"] == "complete"
    health = json.loads((out / "geventpool-bounded" / "query" / "own-slow-read" / "r1" / "healthz.json").read_text())
    assert (health["backend"], health["engine"]) == ("geventpool-bounded", "benchapp.db.geventpool_bounded")


def test_under_asgi_the_targets_streams_pin_as_under_gevent_and_come_all_at_once(bench_run):
    """target.asgi under uvicorn: the same views, their sync iterators consumed whole by Django
    before the first byte; the pinning ones still hold the connection, the released one not."""
    out, _, rows, _ = bench_run
    assert sorted(rows) == ["iterator", "query", "released"]
    for name, row in rows.items():
        assert row["status"] == "ok" and row["cell"] == f"own/{name}/own-slow-read@uvicorn", row
        assert int(row["streams_completed"]) > 0 and row["leaked_conns"] == "0", row
        total, held = float(row["stream_total_p50_ms"]), float(row["conn_hold_p50_ms"])
        assert float(row["stream_body_p50_ms"]) < total / 5 < float(row["stream_ttfb_p50_ms"]), row
        if name == "released":
            assert held < total / 20 and row["streams_pinned"] == "0", row
        else:
            assert held > total / 2 and int(row["streams_pinned"]) >= int(row["streams_completed"]), row
    health = json.loads((out / "own" / "query" / "own-slow-read@uvicorn" / "r1" / "healthz.json").read_text())
    assert (health["server"], health["app"]) == ("uvicorn", "asgi")


def test_the_report_and_compare_work_on_a_target_run(bench_run):
    out, _, _, _ = bench_run
    assert (out / "report.html").stat().st_size > 10_000 and (out / "conn-hold.png").exists()
    result = subprocess.run(
        [sys.executable, "-m", "harness", "compare", str(out), str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "own/query/own-slow-read" in result.stdout


def test_capacity_steps_a_targets_streams_and_judges_its_own_probe(project, tmp_path):

    out = tmp_path / "run"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "harness",
            "capacity",
            "--target",
            str(project),
            "--matrix",
            "target-smoke",
            "--out",
            str(out),
            "--set",
            "capacity_max=2",
            "--set",
            "capacity_step_s=2",
            "--set",
            "slo_probe_p99_ms=5000",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=400,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {r["variant"]: r for r in cellfiles.read(out / "capacity.csv")}
    assert sorted(rows) == ["iterator", "query", "released"] and {r["status"] for r in rows.values()} == {"ok"}
    for name in rows:
        steps = cellfiles.read(out / "own" / name / "own-slow-read" / "r1" / "steps.csv")
        assert [int(s["streams"]) for s in steps] == [1, 2]
        assert all(int(s["probes"]) > 0 and s["probe_p99_ms"] != "" for s in steps), steps  # /health/db/, judged


def test_a_target_with_requirements_gets_its_own_environment_built_once(project, tmp_path):
    import shutil

    from harness.stack import envs

    requirements = project.parent / "requirements.txt"
    requirements.write_text("Django==5.2.19\npsycopg2-binary==2.9.13\n")
    with_requirements = project.with_name("with-requirements.toml")
    with_requirements.write_text(
        project.read_text().replace(
            'wsgi = "mysite.wsgi:application"', 'wsgi = "mysite.wsgi:application"\nrequirements = "requirements.txt"'
        )
    )
    t = target.load(with_requirements)
    python = envs.python_for_target(t, OWN)
    venv = os.path.dirname(os.path.dirname(python))
    try:
        assert os.path.basename(venv).startswith(".venv-target-mysite-") and python != sys.executable
        stamp = os.path.join(venv, ".installed")
        built = os.stat(stamp).st_mtime_ns
        assert envs.python_for_target(t, OWN) == python and os.stat(stamp).st_mtime_ns == built  # not built again
        listed = subprocess.run([python, "-m", "pip", "list", "--format=json"], capture_output=True, text=True).stdout
        names = {p["name"].lower() for p in json.loads(listed)}
        assert {"django", "psycopg2-binary", "gunicorn", "gevent", "psycogreen", "django-stream-release"} <= names
        requirements.write_text("Django==5.2.19\npsycopg2-binary==2.9.13\n# changed\n")
        assert envs.python_for_target(t, OWN) == python and os.stat(stamp).st_mtime_ns != built  # rebuilt
    finally:
        shutil.rmtree(venv, ignore_errors=True)
        if os.path.exists(f"{venv}.lock"):
            os.remove(f"{venv}.lock")
        requirements.unlink()


def test_the_switch_releases_the_targets_streams_it_can_and_says_which_it_cannot(bench_run):
    """SET=release_all_streams=true (here a scenario's key): the project's files unchanged, its
    query-then-stream export is released, its iterator() export cannot be, and the summary says so."""
    *_, switched = bench_run
    assert sorted(switched) == ["iterator", "query", "released"]
    for name, row in switched.items():
        assert row["release_all_streams"] == "True" and int(row["streams_completed"]) > 0, row
        total, held = float(row["stream_total_p50_ms"]), float(row["conn_hold_p50_ms"])
        if name == "iterator":
            assert held > total / 2 and int(row["streams_pinned"]) >= int(row["streams_completed"]), row
        else:
            assert held < total / 20 and row["streams_pinned"] == "0", row
