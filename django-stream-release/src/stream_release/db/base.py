"""The DatabaseWrapper of ENGINE "stream_release.db": Django instantiates it once per alias and
thread, and gets the wrapper of the entry's ACCOUNTED_ENGINE with AccountingMixin first."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.db.utils import DEFAULT_DB_ALIAS, load_backend

from stream_release.accounting import ENGINE, accounted_class

if TYPE_CHECKING:
    from stream_release.accounting import AccountingMixin


class DatabaseWrapper:
    def __new__(cls, settings_dict: dict[str, Any], alias: str = DEFAULT_DB_ALIAS) -> AccountingMixin:  # type: ignore[misc]
        engine = settings_dict.get("ACCOUNTED_ENGINE")
        if not engine or engine == ENGINE:
            raise ImproperlyConfigured(
                f"DATABASES[{alias!r}]: ENGINE {ENGINE!r} needs ACCOUNTED_ENGINE, the backend to account "
                "for: use DATABASES = stream_release.accounting.accounted(DATABASES)"
            )
        return accounted_class(load_backend(engine).DatabaseWrapper)(settings_dict, alias)
