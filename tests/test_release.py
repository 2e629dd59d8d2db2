"""benchapp.release in this process, on the session's PostgreSQL (pytest-django, stock backend).
How it behaves per backend and test mode: test_release_modes.py; on gunicorn:
test_stream_release.py and the safety matrix."""

import logging

import pytest
from django.db import connection, transaction

from benchapp import release
from benchapp.models import Item
from benchapp.release import ReleasingStreamingHttpResponse, batches, release_connections


@pytest.fixture
def items(db):
    Item.objects.bulk_create(
        Item(sku=f"SKU{i:08d}", category=i % 100, name=f"item {i}", price_cents=100 + i) for i in range(23)
    )
    return list(Item.objects.order_by("pk").values_list("sku", flat=True))


@pytest.mark.django_db(transaction=True)
def test_release_closes_outside_an_atomic_block():
    Item.objects.exists()
    assert connection.connection is not None
    assert release_connections() == ["default"]
    assert connection.connection is None


def test_inside_an_atomic_block_it_leaves_the_connection_and_says_so_once(db, caplog, monkeypatch):
    monkeypatch.setattr(release, "_noted", set())
    Item.objects.exists()
    with caplog.at_level(logging.DEBUG, logger="benchapp.release"):
        assert release_connections() == []
        with transaction.atomic():
            assert release_connections() == []
    assert connection.connection is not None and not connection.connection.closed
    assert [r.levelname for r in caplog.records] == ["DEBUG"]
    assert "'default' is inside an atomic block; left open" in caplog.records[0].getMessage()


@pytest.mark.parametrize("size", [1, 5, 23, 50])
def test_batches_yield_every_row_once_in_order(items, size, django_assert_num_queries):
    # one query per batch, and one more that finds nothing unless the last batch was short
    queries = len(items) // size + 1
    with django_assert_num_queries(queries):
        got = list(batches(Item.objects.values("pk", "sku"), size))
    assert [row["sku"] for batch in got for row in batch] == items
    assert [len(b) for b in got[:-1]] == [size] * (len(got) - 1)


def test_batches_take_model_instances_and_another_key(items):
    got = list(batches(Item.objects.all(), 10, key="sku"))
    assert [item.sku for batch in got for item in batch] == sorted(items)


def test_batches_refuse_an_empty_batch_size(db):
    with pytest.raises(ValueError, match="size must be at least 1"):
        next(batches(Item.objects.all(), 0))


@pytest.mark.django_db(transaction=True)
def test_the_response_releases_when_its_body_starts_not_before():
    Item.objects.exists()
    response = ReleasingStreamingHttpResponse(iter([b"a", b"b"]))
    assert connection.connection is not None  # the view may still query (and middleware)
    chunks = iter(response)
    assert next(chunks) == b"a"
    assert connection.connection is None
    assert list(chunks) == [b"b"]


def test_the_response_refuses_asynchronous_content():
    async def body():
        yield b"a"

    with pytest.raises(TypeError, match="synchronous iterators only"):
        ReleasingStreamingHttpResponse(body())


def test_batches_refuse_rows_they_cannot_page_through(items):
    with pytest.raises(TypeError, match="not values_list"):
        list(batches(Item.objects.values_list("pk", "sku"), 5))
    with pytest.raises(ValueError, match="needs 'pk' among the values"):
        list(batches(Item.objects.values("sku"), 5))
