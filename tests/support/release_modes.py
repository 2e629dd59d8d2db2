"""What each variant of /stream/<variant>/ does to a test suite: the view writes its audit row,
applies the variant and streams; the test reads the body and looks for the row. Run per
backend by tests/test_release_modes.py, in that backend's Python environment and with its
settings (the same BENCH_* variables as the server), on the session's PostgreSQL:

    python -m pytest tests/support/release_modes.py --noconftest

Test modes: pytest-django's django_db and django_db(transaction=True), Django's TestCase and
TransactionTestCase, each with ATOMIC_REQUESTS off and on. Each test records what it
observed in BENCH_MODES_OUT (JSON lines) instead of asserting it: the outer test compares the
whole table with what docs/facts.md says. Django's TestCase classes run through
unittest inside a pytest test, so that an error in their own set-up or tear-down is
recorded too.

Outcomes: "ok: released" (the row is there; the stream held no connection), "ok: held" (the
row is there; the stream kept the connection), "lost write" (no error, no row), or where the
first error came from and its class ("check: InterfaceError": the test's own query after the
request failed).
"""

import json
import os
import unittest
import uuid
from contextlib import contextmanager

import pytest
from django import test as django_test  # not imported by name: pytest would collect TestCase
from django.db import connection, connections

from benchapp.models import AuditEvent, Item
from benchapp.variants import VARIANTS
from benchapp.views import Export

OUT = os.environ.get("BENCH_MODES_OUT", "")
ATOMIC = [False, True]


@contextmanager
def atomic_requests(on: bool):
    """ATOMIC_REQUESTS for the default database, read by Django's handler at each request."""
    settings_dict = connections["default"].settings_dict
    before = settings_dict["ATOMIC_REQUESTS"]
    settings_dict["ATOMIC_REQUESTS"] = on
    try:
        yield
    finally:
        settings_dict["ATOMIC_REQUESTS"] = before


def _released() -> bool:
    """Does Django hold no open connection for the default database right now? A pool that
    hands out SQLAlchemy's proxy (dj_db_conn_pool) keeps the proxy after a close, its driver
    connection gone back to the pool."""
    raw = connection.connection
    if raw is not None and hasattr(raw, "driver_connection"):
        raw = raw.driver_connection
    return raw is None or bool(raw.closed)


def _read(response) -> tuple[bytes, bool]:
    """(the body, whether no connection was held after any chunk). An async body (the async-*
    variants) is read as an ASGI server reads it, its thread-sensitive calls in this thread,
    where the request's connection is."""
    if not response.is_async:
        body, released = b"", True
        for chunk in response.streaming_content:
            body += chunk
            released = released and _released()
        return body, released
    from asgiref.sync import async_to_sync, sync_to_async

    async def read():
        body, released = b"", True
        async for chunk in response.streaming_content:
            body += chunk
            released = released and await sync_to_async(_released, thread_sensitive=True)()
        return body, released

    return async_to_sync(read)()


# Rows in the test database's table, more than two chunks' batches, so that a body reading one
# cursor across chunks (cursor-hold) really does: over an empty table it would open and close a
# cursor per chunk, holding nothing between them.
TABLE_ROWS = 2 * Export.BATCH_ROWS + 20


def fill_table():
    if not Item.objects.exists():
        Item.objects.bulk_create(
            Item(sku=f"SKU{i:08d}", category=1, name=f"item {i}", price_cents=100 + i) for i in range(TABLE_ROWS)
        )


def export_and_check(client, variant: str, atomic: bool) -> tuple[str, str]:
    """Request an export, read its body, then look for its audit row: (outcome, the error's
    message). "released" means no connection was held after any chunk."""
    request_id = uuid.uuid4().hex
    phase = "setup"
    try:
        fill_table()
        phase = "request"
        with atomic_requests(atomic):
            response = client.get(
                f"/stream/{variant}/?chunks=3&chunk_bytes=16&delay_ms=0&category=1",
                headers={"X-Request-Id": request_id},
            )
            assert response.status_code == 200, response.status_code
            phase = "stream"
            body, released = _read(response)
            assert len(body) == 48, len(body)
        phase = "check"
        found = AuditEvent.objects.filter(request_id=request_id).exists()
    except Exception as exc:  # the outcome being measured
        return f"{phase}: {type(exc).__name__}", (str(exc).strip().splitlines() or [""])[0]
    if not found:
        return "lost write", ""
    return ("ok: released" if released else "ok: held"), ""


def record(mode: str, variant: str, atomic: bool, outcome: tuple[str, str]):
    if OUT:
        with open(OUT, "a") as f:
            f.write(
                json.dumps(
                    {
                        "mode": mode,
                        "variant": variant,
                        "atomic_requests": atomic,
                        "outcome": outcome[0],
                        "message": outcome[1],
                    }
                )
                + "\n"
            )


@pytest.mark.django_db
@pytest.mark.parametrize("atomic", ATOMIC, ids=["atomic-requests-off", "atomic-requests-on"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_django_db(client, variant, atomic):
    record("django_db", variant, atomic, export_and_check(client, variant, atomic))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("atomic", ATOMIC, ids=["atomic-requests-off", "atomic-requests-on"])
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_django_db_transaction(client, variant, atomic):
    record("django_db(transaction=True)", variant, atomic, export_and_check(client, variant, atomic))


def _case(base, variant, atomic):
    """A Django test class with one test: the export. One class per test, so that a broken
    connection cannot spill into the next test through the class-wide transaction."""

    class Export(base):
        def test_export(self):
            self.outcome = export_and_check(self.client, variant, atomic)
            Export.outcomes.append(self.outcome)

    Export.outcomes = []
    return Export


@pytest.mark.parametrize("atomic", ATOMIC, ids=["atomic-requests-off", "atomic-requests-on"])
@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("base", [django_test.TestCase, django_test.TransactionTestCase], ids=lambda b: b.__name__)
def test_django_testcase(django_db_setup, django_db_blocker, base, variant, atomic):
    case = _case(base, variant, atomic)
    result = unittest.TestResult()
    with django_db_blocker.unblock():
        unittest.defaultTestLoader.loadTestsFromTestCase(case).run(result)
    problems = result.errors + result.failures
    if problems:
        # an error outside the test method (set-up, tear-down) after it recorded its outcome
        where = "teardown" if case.outcomes else "setup"
        error, _, message = problems[0][1].strip().splitlines()[-1].partition(": ")
        outcome = (f"{where}: {error.rsplit('.', 1)[-1]}", message)
    else:
        outcome = case.outcomes[0]
    record(base.__name__, variant, atomic, outcome)
