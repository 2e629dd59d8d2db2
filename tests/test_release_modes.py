"""Each variant under each test mode and ATOMIC_REQUESTS setting, per backend, on a real
PostgreSQL: tests/support/release_modes.py run in the backend's own Python environment with the
server's settings (harness.stack.server.server_env). tests/support/facts.py says what
docs/facts.md reports, as rules; every observed outcome is compared with it."""

import json
import subprocess

import pytest

from harness import ROOT
from harness.stack.envs import python_for
from harness.stack.server import server_env
from tests.conftest import SPEC
from tests.support.facts import HELPER, NAIVE, QUEUE_POOL, TEST_IN_ATOMIC, TEST_MODES, expected

# PgBouncer's backend runs the code of stock-persistent behind a proxy; the safety matrix
# measures it on gunicorn.
BACKENDS = [name for name, b in SPEC.backends.items() if not b.via]


def run_modes(backend_name, database, out):
    backend = SPEC.backends[backend_name]
    # pytest-django makes its own test_bench_modes database in the session's cluster
    url = database.admin_url.rsplit("/", 1)[0] + "/bench_modes"
    env = server_env(backend, SPEC.params("slow-server"), url, 0)
    env["BENCH_MODES_OUT"] = str(out)
    result = subprocess.run(
        [
            python_for(backend.env),
            "-m",
            "pytest",
            "tests/support/release_modes.py",
            "--noconftest",
            "-p",
            "no:cacheprovider",
            "-q",
        ],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    return [json.loads(line) for line in out.read_text().splitlines()]


@pytest.fixture(scope="module", params=BACKENDS)
def outcomes(request, database, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param) / "outcomes.jsonl"
    return request.param, run_modes(request.param, database, out)


def test_every_mode_variant_and_setting_was_observed(outcomes):
    _, rows = outcomes
    seen = {(r["mode"], r["variant"], r["atomic_requests"]) for r in rows}
    assert len(rows) == len(seen) == len(TEST_MODES) * len(SPEC.variants) * 2
    assert {mode for mode, _, _ in seen} == set(TEST_MODES)
    assert {variant for _, variant, _ in seen} == set(SPEC.variants)


def test_each_outcome_is_what_the_facts_predict(outcomes):
    backend, rows = outcomes
    wrong = [
        f"{r['mode']} {r['variant']} ATOMIC_REQUESTS={r['atomic_requests']}: "
        f"{r['outcome']} ({r['message']}), expected {expected(backend, r['variant'], r['mode'], r['atomic_requests'])}"
        for r in rows
        if r["outcome"] != expected(backend, r["variant"], r["mode"], r["atomic_requests"])
    ]
    assert not wrong, "\n".join(wrong)


def test_the_naive_calls_break_tests_and_lose_writes(outcomes):
    backend, rows = outcomes
    # Django's own words, or SQLAlchemy's bare assertion under its QueuePool (facts.QUEUE_POOL)
    messages = (
        {""}
        if backend in QUEUE_POOL
        else {"connection already closed", "Cannot open a new connection in an atomic block."}
    )
    for variant in NAIVE:
        mine = [r for r in rows if r["variant"] == variant]
        errors = [r for r in mine if r["outcome"].startswith("check: ")]
        assert {r["mode"] for r in errors} == TEST_IN_ATOMIC
        assert {r["message"] for r in errors} <= messages
        lost = [r for r in mine if r["outcome"] == "lost write"]
        assert {(r["mode"], r["atomic_requests"]) for r in lost} == {
            ("django_db(transaction=True)", True),
            ("TransactionTestCase", True),
        }


def test_the_helper_passes_in_every_mode(outcomes):
    _, rows = outcomes
    helper = [r for r in rows if r["variant"] in HELPER]
    assert len(helper) == len(HELPER) * len(TEST_MODES) * 2
    assert [r for r in helper if not r["outcome"].startswith("ok: ")] == []
    # and it releases wherever the test does not own the connection
    assert {r["mode"] for r in helper if r["outcome"] == "ok: released"} == set(TEST_MODES) - TEST_IN_ATOMIC
