from django.db import models


class Row(models.Model):
    n = models.IntegerField(unique=True)

    class Meta:
        app_label = "tests"
