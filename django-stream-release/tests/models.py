from django.db import models


class Row(models.Model):
    n = models.IntegerField(unique=True)

    class Meta:
        app_label = "tests"


class Item(models.Model):
    """What batches() must refuse or page right: a key shared by rows (group), a unique key
    that may be NULL (code), a default ordering of the model's own."""

    group = models.IntegerField()
    code = models.CharField(max_length=10, unique=True, null=True)
    n = models.IntegerField(unique=True)

    class Meta:
        app_label = "tests"
        ordering = ["-group"]
