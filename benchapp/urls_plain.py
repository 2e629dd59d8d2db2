"""The URLs of benchapp without django-stream-release (BENCH_STREAM_RELEASE=none): /queries/
and /healthz only (benchapp/plain.py)."""

from django.urls import path

from benchapp import plain

urlpatterns = [
    path("queries/", plain.queries, name="queries"),
    path("healthz", plain.healthz, name="healthz"),
]
