"""Django's own postgresql backend with connection accounting. ENGINE: benchapp.db.stock.

With psycopg 3 and OPTIONS["pool"] this is Django's native pool (5.1+); otherwise every
request opens a connection (CONN_MAX_AGE=0) or keeps one per thread (CONN_MAX_AGE>0).
"""

from django.db.backends.postgresql import base

from benchapp.accounting import AccountingMixin


class DatabaseWrapper(AccountingMixin, base.DatabaseWrapper):
    def pool_limit(self):
        pool = self.settings_dict["OPTIONS"].get("pool")
        if isinstance(pool, dict):
            return pool.get("max_size")
        return None
