from django.db import models

CATEGORIES = 100  # Item.category takes values 0..CATEGORIES-1


class Item(models.Model):
    """The seeded table the views query (`manage.py seed`)."""

    sku = models.CharField(max_length=32, unique=True)
    category = models.PositiveSmallIntegerField(db_index=True)
    name = models.CharField(max_length=100)
    price_cents = models.PositiveIntegerField()
    in_stock = models.BooleanField(default=True)


class AuditEvent(models.Model):
    """One row per export request, written by the view before it streams. The harness counts
    the rows of requests that got a 200: a missing row is a lost write (summary's lost_writes)."""

    request_id = models.CharField(max_length=64, db_index=True)
    kind = models.CharField(max_length=32, default="export requested")
    variant = models.CharField(max_length=32)
    created = models.DateTimeField(auto_now_add=True)
