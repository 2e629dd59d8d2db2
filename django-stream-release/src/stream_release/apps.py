"""INSTALLED_APPS = [..., "stream_release"]: the system checks, and the cursors of every
connection followed from the first one."""

from django.apps import AppConfig


class StreamReleaseConfig(AppConfig):
    name = "stream_release"
    verbose_name = "django-stream-release"

    def ready(self) -> None:
        from stream_release import checks, release  # noqa: F401  (registers the checks, follows cursors)
