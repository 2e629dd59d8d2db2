from django.apps import AppConfig


class BenchAppConfig(AppConfig):
    name = "benchapp"

    def ready(self):
        from django.conf import settings

        if settings.BENCH_STREAM_RELEASE == "none":  # the app without the package (benchapp/plain.py)
            return
        from benchapp import instrument

        instrument.install()
