"""The suite's own scheduling (tests/conftest.py): a pytest-xdist worker runs a module whole, and
the modules that write into the checkout all on one worker, one after another."""

import pytest

from tests.conftest import CHECKOUT, scope_of

pytestmark = pytest.mark.fast  # starts no server: make test-fast


def test_a_module_is_one_unit_and_the_checkout_writers_share_one():
    assert scope_of("tests/test_summary.py::test_x") == scope_of("tests/test_summary.py::test_y[a]")
    assert scope_of("tests/test_summary.py::test_x") == "tests/test_summary.py"
    assert scope_of("tests/test_tables.py::test_x") != scope_of("tests/test_summary.py::test_x")
    writers = {scope_of(f"tests/{module}.py::test_x") for module in CHECKOUT}
    assert writers == {"checkout"} and len(CHECKOUT) > 1
