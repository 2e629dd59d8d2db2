"""A Django project nobody here wrote the views of, made the way its owner would start one
(`django-admin startproject`), with an app of five views: two that pin a connection while they
stream (queryset.iterator(), and query-then-stream with a plain StreamingHttpResponse), the
same export through django-stream-release, a probe, and async server-sent events (not among
the target's streams: a test adds it). Used by the target tests."""

import subprocess
import sys
import textwrap
from pathlib import Path

VIEWS = """
import time

from django.http import JsonResponse, StreamingHttpResponse
from stream_release import ReleasingStreamingHttpResponse, batches

from shop.models import Order

PAUSE_S = 0.05  # between rows: a slow export


def _csv(rows):
    for order in rows:
        time.sleep(PAUSE_S)
        yield f"{order.pk},{order.customer},{order.cents}\\n"


def iterator_export(request):
    return StreamingHttpResponse(_csv(Order.objects.order_by("pk").iterator(chunk_size=5)), content_type="text/csv")


def query_export(request):
    orders = list(Order.objects.order_by("pk")[:20])
    return StreamingHttpResponse(_csv(orders), content_type="text/csv")


def released_export(request):
    rows = (order for batch in batches(Order.objects.all(), 5) for order in batch)
    return ReleasingStreamingHttpResponse(_csv(rows), content_type="text/csv")


async def events(request):  # server-sent events polling the table with the async ORM: ASGI's

    async def body():
        for _ in range(3):
            yield f"data: {await Order.objects.acount()}\\n\\n"

    return StreamingHttpResponse(body(), content_type="text/event-stream")


def health(request):
    return JsonResponse({"orders": Order.objects.count()})


def no_database(request):
    return JsonResponse({"ok": True})
"""

MODELS = """
from django.db import models


class Order(models.Model):
    customer = models.CharField(max_length=40)
    cents = models.IntegerField()
"""

MIGRATION = """
from django.db import migrations, models


def seed(apps, schema_editor):
    Order = apps.get_model("shop", "Order")
    Order.objects.bulk_create(Order(customer=f"customer {i}", cents=100 * i) for i in range(20))


class Migration(migrations.Migration):
    initial = True
    dependencies = []
    operations = [
        migrations.CreateModel("Order", [
            ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False)),
            ("customer", models.CharField(max_length=40)),
            ("cents", models.IntegerField()),
        ]),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
"""

URLS = """
from django.urls import path

from shop import views

urlpatterns = [
    path("exports/iterator.csv", views.iterator_export),
    path("exports/query.csv", views.query_export),
    path("exports/released.csv", views.released_export),
    path("events/", views.events),
    path("health/db/", views.health),
    path("health/", views.no_database),
]
"""

# the project's own test of its exports (a transactional test flushes the seeded rows: it writes its own)
TESTS = """
import pytest

from shop.models import Order

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.parametrize("path", ["/exports/iterator.csv", "/exports/query.csv", "/exports/released.csv"])
def test_export(client, path):
    Order.objects.all().delete()
    Order.objects.bulk_create(Order(customer=f"customer {i}", cents=100 * i) for i in range(20))
    assert len(b"".join(client.get(path)).splitlines()) == 20
"""

TARGET = """
[target]
project = "mysite"
settings = "mysite.settings"
wsgi = "mysite.wsgi:application"
asgi = "mysite.asgi:application"

[[target.streams]]
name = "iterator"
path = "/exports/iterator.csv"

[[target.streams]]
name = "query"
path = "/exports/query.csv"

[[target.streams]]
name = "released"
path = "/exports/released.csv"

[target.probe]
path = "/health/db/"
"""


def make(directory: Path) -> Path:
    """The project in directory/mysite, and directory/target.toml; returns the target file."""
    project = directory / "mysite"
    project.mkdir(parents=True)
    subprocess.run([sys.executable, "-m", "django", "startproject", "mysite", str(project)], check=True)
    shop = project / "shop"
    (shop / "migrations").mkdir(parents=True)
    for path, text in (
        (shop / "__init__.py", ""),
        (shop / "migrations" / "__init__.py", ""),
        (shop / "models.py", MODELS),
        (shop / "views.py", VIEWS),
        (shop / "migrations" / "0001_initial.py", MIGRATION),
        (shop / "urls.py", URLS),
    ):
        path.write_text(textwrap.dedent(text).lstrip())
    settings = project / "mysite" / "settings.py"
    settings.write_text(
        settings.read_text().replace("INSTALLED_APPS = [", 'INSTALLED_APPS = [\n    "shop",')
        # its tests' database a file, as django-stream-release's README asks of SQLite
        + '\nDATABASES["default"]["TEST"] = {"NAME": BASE_DIR / "test_db.sqlite3"}\n'
    )
    urls = project / "mysite" / "urls.py"
    urls.write_text(
        urls.read_text()
        .replace("from django.urls import path", "from django.urls import include, path")
        .replace("urlpatterns = [", 'urlpatterns = [\n    path("", include("shop.urls")),')
    )
    target = directory / "target.toml"
    target.write_text(textwrap.dedent(TARGET).lstrip())
    return target
