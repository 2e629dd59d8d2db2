"""Fill the Item table with a deterministic set of rows (idempotent)."""

import random

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from benchapp.models import CATEGORIES, Item


class Command(BaseCommand):
    help = "Seed the Item table with --rows deterministic rows; does nothing if it already has them."

    def add_arguments(self, parser):
        parser.add_argument(
            "--rows", type=int, default=settings.BENCH_SEED_ROWS, help="number of rows (default BENCH_SEED_ROWS)"
        )

    def handle(self, *args, rows, **options):
        if rows < 1:
            raise CommandError(f"--rows must be at least 1, got {rows}")
        if Item.objects.count() == rows and Item.objects.filter(sku=f"SKU{rows - 1:08d}").exists():
            self.stdout.write(f"seed: {rows} rows already present")
            return
        rng = random.Random(42)
        with transaction.atomic():
            Item.objects.all().delete()
            Item.objects.bulk_create(
                (
                    Item(
                        sku=f"SKU{i:08d}",
                        category=i % CATEGORIES,
                        name=f"item {i}",
                        price_cents=rng.randrange(100, 100_000),
                        in_stock=rng.random() < 0.9,
                    )
                    for i in range(rows)
                ),
                batch_size=2000,
            )
        self.stdout.write(f"seed: wrote {rows} rows")
