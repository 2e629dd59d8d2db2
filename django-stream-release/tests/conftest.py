import pytest

from tests.models import Row


@pytest.fixture
def rows(db):
    Row.objects.bulk_create(Row(n=n) for n in range(10))
