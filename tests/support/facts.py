"""What docs/facts.md says about each release variant, as rules the tests measure
against: on gunicorn (test_stream_release.py) and under each test mode
(test_release_modes.py)."""

from harness.spec import matrix

# The backends' traits, as matrix.toml declares them (`pooled`, and conn_max_age):
# pools hand a closed connection back and keep None; a next query inside the atomic block then
# cannot open one. The stock backend keeps the closed psycopg connection.
POOLED = {b.name for b in matrix.load().backends.values() if b.pooled}
# CONN_MAX_AGE>0 without a pool: close_old_connections() keeps a connection that is not old,
# and nothing closes it when the request ends. PgBouncer's backend is stock-persistent's
# code in front of PgBouncer.
PERSISTENT = {b.name for b in matrix.load().backends.values() if b.persistent}
# Backends that give the connection back after every query outside an atomic block
# (django-pg-real-pool): a body that does not query holds nothing, whatever the view returns,
# once no atomic block is open; ATOMIC_REQUESTS' block gives it back when it commits. A cursor
# still being read (.iterator()) keeps it until the cursor closes.
PER_QUERY = {b.name for b in matrix.load().backends.values() if b.per_query}
# SQLAlchemy's QueuePool behind Django (django-db-connection-pool): Django keeps SQLAlchemy's proxy
# of a connection closed inside an atomic block, so the next query there fails on SQLAlchemy's own
# `assert self.dbapi_connection is not None`: a bare AssertionError, not Django's ProgrammingError.
QUEUE_POOL = {b.name for b in matrix.load().backends.values() if b.engine.startswith("dj_db_conn_pool.")}
# Test modes that wrap each test in a transaction: the view's connection is the test's.
TEST_IN_ATOMIC = {"django_db", "TestCase"}
TEST_MODES = ["django_db", "TestCase", "django_db(transaction=True)", "TransactionTestCase"]
HELPER = {"release", "release-per-batch", "async-release", "async-release-per-batch"}
# An async body keeps the request's connection until the response closes, like a sync one.
HOLDING = {"hold", "cursor-hold", "async-hold", "async-thread-query"}
# A body reading one cursor across chunks: nothing can give its connection back.
CURSOR = {"cursor-hold"}
NAIVE = {"close-old", "force-close"}


def expected(backend, variant, mode="gunicorn", atomic_requests=False):
    """The outcome of one export: "ok: released" or "ok: held" (the write kept, the stream
    without or with a connection), "lost write", or "check: <error>" (the test's next query
    failed). mode "gunicorn": a server, where nothing wraps the request but ATOMIC_REQUESTS."""
    in_atomic_at_view = mode in TEST_IN_ATOMIC or atomic_requests
    in_atomic_at_stream = mode in TEST_IN_ATOMIC  # ATOMIC_REQUESTS' block ends at the return
    if backend in PER_QUERY and not in_atomic_at_stream and variant not in NAIVE:
        return "ok: held" if variant in CURSOR else "ok: released"
    if variant in HELPER:
        return "ok: held" if in_atomic_at_stream else "ok: released"
    if variant == "guarded-close":
        return "ok: held" if in_atomic_at_view else "ok: released"
    if variant in HOLDING:
        return "ok: held"
    assert variant in NAIVE, variant
    # inside an atomic block autocommit differs from the settings', so close-old closes too
    closes = variant == "force-close" or in_atomic_at_view or backend not in PERSISTENT
    if not closes:
        return "ok: held"
    if mode in TEST_IN_ATOMIC:
        if backend in QUEUE_POOL:
            return "check: AssertionError"
        return "check: ProgrammingError" if backend in POOLED else "check: InterfaceError"
    return "lost write" if atomic_requests else "ok: released"


def releases_on_a_server(backend, variant):
    """Does the view give its connection back before streaming, on gunicorn?"""
    return expected(backend, variant) == "ok: released"
