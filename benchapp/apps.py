from django.apps import AppConfig


class BenchAppConfig(AppConfig):
    name = "benchapp"

    def ready(self):
        from benchapp import instrument

        instrument.install()
