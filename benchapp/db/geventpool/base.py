"""django-db-geventpool (psycopg2) with connection accounting. ENGINE: benchapp.db.geventpool."""

from django_db_geventpool.backends.postgresql_psycopg2 import base

from benchapp.accounting import AccountingMixin


class DatabaseWrapper(AccountingMixin, base.DatabaseWrapper):
    def pool_limit(self):
        # The library's own default when OPTIONS has no MAX_CONNS.
        return int(self.settings_dict["OPTIONS"].get("MAX_CONNS", 4))
