"""`python -m harness params` and `--version`: every parameter listed with its default, unit,
limits and meaning, read from the places that declare them (so a new one without a comment in
matrix.toml's [defaults] fails here)."""

import subprocess
import sys
from dataclasses import fields

import pytest

from harness import ROOT
from harness.spec import params
from harness.spec.matrix import Params
from tests.conftest import SPEC

pytestmark = pytest.mark.fast  # starts no server: make test-fast


def test_every_parameter_has_a_default_a_unit_and_a_meaning():
    rows = params.rows(SPEC.defaults)
    assert [r["name"] for r in rows] == [f.name for f in fields(Params)]
    for r in rows:
        assert r["default"] is not None and r["unit"] and r["meaning"], r
    by = {r["name"]: r for r in rows}
    assert by["pool_max"]["limits"] == "1 to 10,000" and by["pool_max"]["unit"] == "connections"
    assert by["fault"]["limits"] == "none | pg-restart | worker-kill | client-abort"
    assert by["spawn_s"]["meaning"].startswith("seconds over which the stream clients start (Locust starts")


def test_params_and_version_answer_on_the_command_line():
    listed = subprocess.run(
        [sys.executable, "-m", "harness", "params"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert listed.returncode == 0, listed.stderr
    for f in fields(Params):
        assert f.name in listed.stdout
    version = subprocess.run(
        [sys.executable, "-m", "harness", "--version"], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert version.returncode == 0 and version.stdout.startswith("python -m harness 0.1.0, commit ")
