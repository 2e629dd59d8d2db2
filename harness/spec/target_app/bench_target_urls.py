"""The target's URLs, and the harness's two: /__stream_release__/metrics (the accounting's
Prometheus metrics, which the sampler reads) and /__stream_release__/healthz (what answers:
the backend (own, or the matrix's substituted in), its pool limit, whether psycopg2 is gevent-patched; no database)."""

import os

from django.conf import settings
from django.db import connections
from django.http import HttpResponse, JsonResponse
from django.urls import Resolver404, include, path, resolve

from stream_release.accounting import pool_limit


def metrics(request):
    from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

    names = request.GET.getlist("name[]")  # only those samples, as prometheus_client's own apps do
    registry = REGISTRY.restricted_registry(names) if names else REGISTRY
    return HttpResponse(generate_latest(registry), content_type=CONTENT_TYPE_LATEST)


def served(request) -> dict:
    """How the harness serves this process (BENCH_SERVER, gunicorn.conf.py's default gevent) and
    whether the request came through ASGI or WSGI."""
    from django.core.handlers.asgi import ASGIRequest

    return {
        "server": os.environ.get("BENCH_SERVER", "gevent"),
        "app": "asgi" if isinstance(request, ASGIRequest) else "wsgi",
    }


def healthz(request):
    """?resolve=<path>: also the route the accounting labels that path's checkouts with."""
    conn = connections["default"]
    routes = {}
    for url in request.GET.getlist("resolve"):
        try:
            routes[url] = resolve(url.split("?", 1)[0]).view_name
        except Resolver404:
            routes[url] = None
    try:
        import psycopg2.extensions

        patched = psycopg2.extensions.get_wait_callback() is not None
    except ImportError:
        patched = None
    return JsonResponse(
        {
            "status": "ok",
            "backend": settings.BENCH_BACKEND,
            **served(request),
            "target_settings": os.environ.get("BENCH_TARGET_SETTINGS"),
            "engine": conn.settings_dict.get("ACCOUNTED_ENGINE"),
            "own_engine": settings.BENCH_TARGET_OWN_ENGINE,
            "pool_limit": pool_limit(conn),
            "conn_max_age": conn.settings_dict.get("CONN_MAX_AGE"),
            "driver": type(conn).Database.__name__,
            "psycopg2_gevent_patched": patched,
            "pid": os.getpid(),
            "accounting": settings.STREAM_RELEASE_ACCOUNTING,
            "routes": routes,
        }
    )


urlpatterns = [
    path("__stream_release__/metrics", metrics, name="stream-release-metrics"),
    path("__stream_release__/healthz", healthz, name="stream-release-healthz"),
    *([path("", include(settings.BENCH_TARGET_URLCONF))] if settings.BENCH_TARGET_URLCONF else []),
]
