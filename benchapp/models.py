from django.db import models

CATEGORIES = 100  # Item.category takes values 0..CATEGORIES-1


class Item(models.Model):
    """The seeded table the views query (`manage.py seed`)."""

    sku = models.CharField(max_length=32, unique=True)
    category = models.PositiveSmallIntegerField(db_index=True)
    name = models.CharField(max_length=100)
    price_cents = models.PositiveIntegerField()
    in_stock = models.BooleanField(default=True)
