"""The cases tests/test_plugin.py runs in a pytest of its own (pytester): each view of
tests/views.py under pytest-django's django_db and django_db(transaction=True) and Django's
TestCase and TransactionTestCase, with ATOMIC_REQUESTS off and on. Each test requests the
view, consumes the body and checks it; whether the plugin then fails it is the outcome."""

import pytest
from django import test as django_test  # not by name: pytest would collect TestCase itself
from django.db import connections

from tests.models import Row
from tests.views import VIEWS

ATOMIC = {"off": False, "on": True}
# Django refuses ATOMIC_REQUESTS for async views. A queryset.iterator() begun in the view under
# ATOMIC_REQUESTS is a server-side cursor of the request's transaction on PostgreSQL, which its
# commit closes when the view returns, before the body reads on (with or without this package).
UNSUPPORTED = {("iterator-then-release", "on")}
CASES = [
    (view, atomic)
    for view in VIEWS
    for atomic in ATOMIC
    if not (view.startswith("async-") and atomic == "on") and (view, atomic) not in UNSUPPORTED
]
BODY = b"".join(f"{n}\n".encode() for n in range(10))


def stream(client, view, atomic):
    Row.objects.bulk_create(Row(n=n) for n in range(10))
    settings_dict = connections["default"].settings_dict
    settings_dict["ATOMIC_REQUESTS"] = ATOMIC[atomic]
    try:
        response = client.get(f"/{view}/")
        assert response.status_code == 200
        assert b"".join(response) == BODY  # iter(): an async body too
    finally:
        settings_dict["ATOMIC_REQUESTS"] = False


@pytest.mark.django_db
@pytest.mark.parametrize("view, atomic", CASES)
def test_django_db(client, view, atomic):
    stream(client, view, atomic)


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("view, atomic", CASES)
def test_django_db_transaction(client, view, atomic):
    stream(client, view, atomic)


def _case(base, view, atomic):
    def test_stream(self):
        stream(self.client, view, atomic)

    return type(f"{base.__name__}__{view}__{atomic}", (base,), {"test_stream": test_stream})


for _base in (django_test.TestCase, django_test.TransactionTestCase):
    for _view, _atomic in CASES:
        _cls = _case(_base, _view, _atomic)
        globals()[f"Test{_cls.__name__}"] = _cls
