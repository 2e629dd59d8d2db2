"""`make package-matrix` (harness/studies/package_matrix.py, noxfile.py) without running it: a missing
interpreter refused in one line before anything starts, the interpreters found where pyenv
keeps them, the matrix's refusals, and the matrix, its pins and nox's session names agreeing."""

import json
import os
import re
import subprocess
import sys
import time

import pytest

from harness import ROOT, UsageError
from harness.studies import package_matrix

pytestmark = pytest.mark.fast  # starts no server: make test-fast


def harness(*args, env):
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "harness", "package-matrix", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result, time.monotonic() - started


RUNNING = f"{sys.version_info.major}.{sys.version_info.minor}"
OTHERS = [v for v in ("3.11", "3.12", "3.13") if v != RUNNING]  # the matrix's Pythons but this one


def only_this_python(tmp_path):
    """An environment where this test's Python is all there is: no pyenv, one pythonX.Y on PATH."""
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / f"python{RUNNING}").symlink_to(os.path.realpath(sys.executable))
    env = {k: v for k, v in os.environ.items() if k != "PYENV_ROOT"}
    return {**env, "PATH": str(bindir), "PYENV_ROOT": str(tmp_path / "no-pyenv")}


@pytest.mark.parametrize(
    "args, message",
    [
        (
            [],
            f"error: Python {OTHERS[0]} and {OTHERS[1]} are missing, which the package matrix needs: install them "
            f"with `pyenv install {OTHERS[0]} {OTHERS[1]}` (or put python{OTHERS[0]} and python{OTHERS[1]} on "
            "PATH), or leave them out with PYTHONS=",
        ),
        (
            ["--django", "6.1", "--python", OTHERS[-1], "--database", "sqlite"],
            f"error: Python {OTHERS[-1]} is missing, which the package matrix needs: install it with "
            f"`pyenv install {OTHERS[-1]}` (or put python{OTHERS[-1]} on PATH), or leave it out with PYTHONS=",
        ),
    ],
)
def test_a_missing_interpreter_fails_the_run_in_one_line_before_anything_starts(tmp_path, args, message):
    result, took = harness(*args, env=only_this_python(tmp_path))
    assert result.returncode == 2
    assert result.stderr.splitlines() == [message]
    assert result.stdout == ""  # no cluster, no nox: nothing started
    assert took < 30


@pytest.mark.parametrize(
    "args, message",
    [
        (["--python", "3.10"], "PYTHONS=3.10 is not in the package matrix: use one of 3.11, 3.12, 3.13"),
        (["--django", "4.2"], "DJANGO=4.2 is not in the package matrix: use one of 5.2, 6.0, 6.1"),
        (["--python", "3.11", "--django", "6.0"], "PYTHONS=3.11 DJANGO=6.0 choose no cell: Django 5.2 runs on"),
        (["--database", "mysql"], "DATABASES=mysql is unknown: use one of sqlite, stock, persistent, native-pool"),
        (["--jobs", "0"], "JOBS=0 must be at least 1"),
    ],
)
def test_the_matrix_refuses_what_it_does_not_have(tmp_path, args, message):
    result, _ = harness(*args, env=only_this_python(tmp_path))
    assert result.returncode == 2 and len(result.stderr.splitlines()) == 1
    assert message in result.stderr


def fake_python(path, reports):
    """An executable that answers the version question with `reports` (what a python would say)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"#!/bin/sh\necho {reports}\n" if reports else "#!/bin/sh\necho 'pyenv: not selected' >&2\nexit 127\n"
    )
    path.chmod(0o755)
    return path


def test_the_newest_pyenv_install_of_a_version_is_found_and_shims_do_not_count(tmp_path):
    versions = tmp_path / "pyenv" / "versions"
    fake_python(versions / "3.12.1" / "bin" / "python3.12", "3.12")
    newest = fake_python(versions / "3.12.10" / "bin" / "python3.12", "3.12")
    fake_python(versions / "3.12-dev" / "bin" / "python3.12", "3.12")  # not a release
    shim = fake_python(tmp_path / "pyenv" / "shims" / "python3.13", None)  # fails unless selected
    liar = fake_python(tmp_path / "bin" / "python3.13", "3.11")  # says it is another version
    real = fake_python(tmp_path / "other" / "python3.13", "3.13")
    env = {"PYENV_ROOT": str(tmp_path / "pyenv"), "PATH": os.pathsep.join(str(p.parent) for p in (shim, liar, real))}

    assert package_matrix.find_python("3.12", env) == str(newest)
    assert package_matrix.find_python("3.13", env) == str(real)
    assert package_matrix.find_python("3.14", env) is None
    with pytest.raises(UsageError, match=r"^Python 3\.14 is missing"):
        package_matrix.find_interpreters(["3.12", "3.14"], env)
    with pytest.raises(
        UsageError, match=r"^Python 3\.14, 3\.15 and 3\.16 are missing.*\(or put python3\.14, python3\.15 and"
    ):
        package_matrix.find_interpreters(["3.14", "3.15", "3.16"], env)


def test_every_django_series_has_its_pins_and_nox_knows_every_session_by_name():
    matrix = package_matrix.matrix()
    assert "5.2" in matrix and all("3.11" not in pythons for series, pythons in matrix.items() if series >= "6")
    for series in matrix:
        wanted = re.search(r"^Django==(\S+)$", (package_matrix.LOCKS / f"django-{series}.in").read_text(), re.M)[1]
        assert wanted.startswith(f"{series}.")
        pins = (package_matrix.LOCKS / f"django-{series}.txt").read_text()
        assert f"\ndjango=={wanted} \\\n    --hash=sha256:" in pins  # pinned with hashes by make lock
        assert "psycopg2" not in pins  # Django would take psycopg 3 and break geventpool's psycopg2 backend
    listed = subprocess.run(
        [sys.executable, "-m", "nox", "--noxfile", str(package_matrix.NOXFILE), "--list", "--json"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    sessions = {s["session"] for s in json.loads(listed.stdout)}
    assert sessions == {package_matrix.session_name(p, d) for d, ps in matrix.items() for p in ps}
    assert package_matrix.databases() == ["sqlite", "stock", "persistent", "native-pool", "geventpool"]
