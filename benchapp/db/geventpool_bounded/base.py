"""django-db-geventpool with the limit enforced and a bounded wait. ENGINE:
benchapp.db.geventpool_bounded; OPTIONS: MAX_CONNS (default 4), ACQUIRE_TIMEOUT (seconds,
default 30).

The library checks the pool's size and then connects, so greenlets arriving together all see
room and all connect: MAX_CONNS=4 can open dozens of connections. And an exhausted pool makes
callers wait forever. Here a semaphore of MAX_CONNS slots is taken before the library's get()
and given back when the connection is returned to the pool, closed, or garbage-collected, so
no more than MAX_CONNS connections are ever checked out or opened; a caller that gets no slot
within ACQUIRE_TIMEOUT gets PoolTimeout (a DB-API OperationalError: Django raises
django.db.OperationalError). ACQUIRE_TIMEOUT bounds the wait for a slot, not connecting.
"""

import time
import weakref

import psycopg2
from django_db_geventpool.backends.postgresql_psycopg2 import base
from gevent.lock import BoundedSemaphore


class PoolTimeout(psycopg2.OperationalError):
    pass


class BoundedPool(base.PostgresConnectionPool):
    def __init__(self, *args, **kwargs):
        self.alias = kwargs.pop("ALIAS", "default")
        self.acquire_timeout = float(kwargs.pop("ACQUIRE_TIMEOUT", 30))
        super().__init__(*args, **kwargs)
        self.slots = BoundedSemaphore(self.maxsize)
        self.holders = set()  # ids of the connections holding a slot

    def get(self):
        started = time.monotonic()
        if not self.slots.acquire(timeout=self.acquire_timeout):
            raise PoolTimeout(
                f"connection pool of database {self.alias!r} is at its limit of "
                f"MAX_CONNS={self.maxsize} connections: none came free within "
                f"{time.monotonic() - started:.1f}s (ACQUIRE_TIMEOUT={self.acquire_timeout:g}s)"
            )
        try:
            conn = super().get()
        except BaseException:
            self.slots.release()
            raise
        self.holders.add(id(conn))
        # A connection dropped without put() (its wrapper garbage-collected) gives its slot
        # back when it goes.
        weakref.finalize(conn, self._release_id, id(conn))
        return conn

    def release(self, conn):
        """Give the connection's slot back; safe to call more than once."""
        self._release_id(id(conn))

    def _release_id(self, conn_id):
        if conn_id in self.holders:
            self.holders.discard(conn_id)
            self.slots.release()

    def put(self, item):
        try:
            super().put(item)
        finally:
            self.release(item)


class DatabaseWrapper(base.DatabaseWrapper):
    pool_class = BoundedPool

    def get_connection_params(self):
        return {**super().get_connection_params(), "ALIAS": self.alias}

    def _close(self):
        conn = self.connection
        try:
            super()._close()
        finally:
            # The library drops a broken connection without put(): its slot comes back here.
            self.pool.release(conn)
