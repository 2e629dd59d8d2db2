"""`make test`'s pytest-xdist workers keep each module on one worker and the modules that
write into the checkout on the same one (tests/conftest.py), so that a module's runs start once
and nothing writes into the checkout while test_bench_smoke checks that nothing does."""

import re
import subprocess
import sys

from harness import ROOT
from tests.conftest import CHECKOUT, scope_of


def test_the_checkout_modules_share_a_scope_and_every_other_module_has_its_own():
    assert {scope_of(f"tests/{m}.py::test_x[a-1]") for m in CHECKOUT} == {"checkout"}
    assert scope_of("tests/test_matrix.py::test_x[a::b]") == "tests/test_matrix.py"
    assert scope_of("tests/test_matrix.py::TestA::test_x") == scope_of("tests/test_matrix.py::test_y")


def test_two_workers_run_each_module_whole_on_one_of_them():
    """Two modules of quick tests, as make test runs them: every test of a module on one worker."""
    modules = ["tests/test_matrix.py", "tests/test_compare.py"]
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-n", "2", "--dist", "loadscope", "-v", "-p", "no:cacheprovider", *modules],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    workers = {}
    for worker, nodeid in re.findall(r"\[(gw\d)\] \[ *\d+%\] PASSED (\S+)", result.stdout):
        workers.setdefault(nodeid.split("::")[0], set()).add(worker)
    assert sorted(workers) == sorted(modules) and all(len(w) == 1 for w in workers.values()), workers
