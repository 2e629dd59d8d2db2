"""The package's settings, read once from django.conf.settings: the accounting reads them at
every event, and each read of django.conf.settings goes through its LazyObject."""

from __future__ import annotations

from typing import Any, Literal, overload

from django.conf import settings
from django.core.signals import setting_changed

# Read again when they change the way Django supports: override_settings, pytest-django's
# `settings` fixture (the setting_changed signal).
_SETTINGS: dict[str, bool | str] = {  # name: default
    "STREAM_RELEASE_ACCOUNTING": True,
    "STREAM_RELEASE_EVENT_LOG_DIR": "",
    "STREAM_RELEASE_KEEP_PERSISTENT": False,
    "STREAM_RELEASE_ALL_STREAMS": False,
}
_read: dict[str, Any] = {}


@overload
def setting(
    name: Literal["STREAM_RELEASE_ACCOUNTING", "STREAM_RELEASE_KEEP_PERSISTENT", "STREAM_RELEASE_ALL_STREAMS"],
) -> bool: ...
@overload
def setting(name: Literal["STREAM_RELEASE_EVENT_LOG_DIR"]) -> str: ...
def setting(name: str) -> Any:
    """The setting `name` of _SETTINGS, or its default."""
    try:
        return _read[name]
    except KeyError:
        value = _read[name] = getattr(settings, name, _SETTINGS[name])
        return value


def _forget(setting: str, **kwargs: Any) -> None:
    if setting in _SETTINGS:
        _read.pop(setting, None)


setting_changed.connect(_forget, dispatch_uid="stream_release.conf")
