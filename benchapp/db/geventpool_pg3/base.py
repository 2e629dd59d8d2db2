"""django-db-geventpool's psycopg 3 backend with accounting. ENGINE: benchapp.db.geventpool_pg3."""

from django_db_geventpool.backends.postgresql_psycopg3 import base

from benchapp.accounting import AccountingMixin


class DatabaseWrapper(AccountingMixin, base.DatabaseWrapper):
    def pool_limit(self):
        return int(self.settings_dict["OPTIONS"].get("MAX_CONNS", 4))
