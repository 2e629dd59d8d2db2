"""django-stream-release as people install it, and its own tests on every backend.

- `make package`'s wheel and sdist pass `twine check` (what PyPI checks of their metadata and
  README), and hold the license, the changelog and `py.typed`; the wheel installed into a clean
  virtual environment with only Django, pytest and pytest-django: the sdist's own test suite
  passes there against the installed wheel (SQLite; its plugin test runs
  `pytest --fail-on-pinned-streams` on views that pin and views that release), and
  `pip install ./django-stream-release` works too;
- the same test suite on the session's PostgreSQL with a backend of each kind, in that backend's
  own environment, through the accounting wrapper."""

import json
import os
import subprocess
import sys
import tarfile
import zipfile

import pytest

from harness import ROOT
from harness.stack.envs import PACKAGE, python_for
from tests.conftest import SPEC

# what the clean environment gets besides the package: its one dependency, and the test tools
CLEAN_ENV = ["Django==5.2.19", "pytest==9.2.0", "pytest-django==4.14.0"]


def package_env(**extra):
    """The environment for the package's own pytest: its settings (pytest-django would take
    this session's DJANGO_SETTINGS_MODULE over its ini), nothing of this checkout on the path."""
    env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    return {**env, **extra}


def run(cmd, **kwargs):
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=kwargs.pop("timeout", 300), **kwargs)
    assert result.returncode == 0, f"{' '.join(map(str, cmd))}:\n{result.stdout[-4000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def dist(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "build", "--outdir", str(out), str(PACKAGE)], cwd=ROOT)
    (wheel,) = out.glob("django_stream_release-*.whl")
    (sdist,) = out.glob("django_stream_release-*.tar.gz")
    return wheel, sdist


@pytest.fixture(scope="module")
def clean_venv(tmp_path_factory, dist):
    venv = tmp_path_factory.mktemp("clean") / "venv"
    run([sys.executable, "-m", "venv", str(venv)])
    python = venv / "bin" / "python"
    run([python, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", *CLEAN_ENV, str(dist[0])])
    return python


def test_the_wheel_holds_the_package_and_its_pytest_entry_point(dist):
    wheel, _ = dist
    names = zipfile.ZipFile(wheel).namelist()
    assert "stream_release/__init__.py" in names and "stream_release/pytest_plugin.py" in names
    assert not [n for n in names if n.startswith("tests/")]
    (entry_points,) = [n for n in names if n.endswith(".dist-info/entry_points.txt")]
    text = zipfile.ZipFile(wheel).read(entry_points).decode()
    assert "[pytest11]\nstream_release = stream_release.pytest_plugin" in text


def test_the_wheel_and_sdist_pass_twine_check_and_carry_license_changelog_and_types(dist):
    wheel, sdist = dist
    result = run([sys.executable, "-m", "twine", "check", "--strict", str(wheel), str(sdist)])
    assert result.stdout.count("PASSED") == 2, result.stdout
    names = zipfile.ZipFile(wheel).namelist()
    assert "stream_release/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), names
    metadata = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith(".dist-info/METADATA"))).decode()
    assert "License-Expression: BSD-3-Clause" in metadata and "Classifier: Typing :: Typed" in metadata
    with tarfile.open(sdist) as tar:
        top = tar.getnames()[0].split("/")[0]
        members = set(tar.getnames())
    for name in ("LICENSE", "CHANGELOG.md", "README.md", "tests/settings.py", "src/stream_release/py.typed"):
        assert f"{top}/{name}" in members, name


@pytest.fixture(scope="module")
def sdist_tree(tmp_path_factory, dist):
    """The sdist unpacked, as a packager or a user who downloads it has it."""
    out = tmp_path_factory.mktemp("sdist")
    with tarfile.open(dist[1]) as tar:
        tar.extractall(out, filter="data")
    (tree,) = out.iterdir()
    return tree


def test_the_wheel_installs_with_django_as_its_only_dependency(clean_venv):
    listed = json.loads(run([clean_venv, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"]).stdout)
    names = {p["name"].lower() for p in listed}
    assert "django-stream-release" in names
    assert not names & {"prometheus-client", "psycopg2-binary", "psycopg", "gevent"}
    where = run([clean_venv, "-c", "import stream_release; print(stream_release.__file__)"], cwd="/").stdout
    assert "site-packages" in where


def test_the_sdists_tests_pass_against_the_installed_wheel(clean_venv, sdist_tree):
    result = run(
        [clean_venv, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rs"],
        cwd=sdist_tree,
        timeout=600,
        env=package_env(),
    )
    # the package is the wheel's, not the sdist's src/ (which is not on the path)
    where = run([clean_venv, "-c", "import stream_release; print(stream_release.__file__)"], cwd=sdist_tree).stdout
    assert "site-packages" in where
    assert " passed" in result.stdout and " failed" not in result.stdout
    # the skips are the metrics tests, one for each that asks for prometheus_client: the extra is
    # not installed here, and each says so
    reason = "the metrics extra is not installed"
    metrics_tests = sum(path.read_text().count(f'reason="{reason}"') for path in (PACKAGE / "tests").glob("test_*.py"))
    skipped = [line for line in result.stdout.splitlines() if line.startswith("SKIPPED")]
    assert len(skipped) == metrics_tests >= 2 and all(reason in line for line in skipped), skipped


def test_pip_installs_the_folder_too(clean_venv):
    run(
        [
            clean_venv,
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--no-deps",
            "--force-reinstall",
            str(PACKAGE),
        ]
    )
    version = run([clean_venv, "-c", "import stream_release; print(stream_release.__version__)"], cwd="/").stdout
    assert version.strip() == dist_version()


def dist_version():
    text = (PACKAGE / "src" / "stream_release" / "__init__.py").read_text()
    return text.split('__version__ = "', 1)[1].split('"', 1)[0]


# One backend per code path the package meets: Django's backend with a connection per request
# and with persistent ones, django-db-geventpool on psycopg2, and Django's own pool on psycopg 3
# (geventpool-pg3 and the bounded pool run the wrapper on gunicorn in test_stream_release)
BACKENDS = ["stock", "stock-persistent", "geventpool", "native-pool"]


@pytest.fixture(scope="module")
def postgres_runs(database):
    """{backend: (returncode, output)} of the package's suite on each backend, run side by side
    (each pytest makes test databases of its own)."""
    port = database.admin_url.rsplit(":", 1)[1].split("/")[0]
    procs = {}
    for name in BACKENDS:
        backend = SPEC.backends[name]
        entry = {
            "ENGINE": backend.engine,
            "NAME": "bench_package",
            "HOST": "127.0.0.1",
            "PORT": port,
            "USER": "postgres",
            "CONN_MAX_AGE": backend.conn_max_age,
            "OPTIONS": backend.django_options(SPEC.params("slow-server")),
        }
        # this checkout on the path too (benchapp's own backends); the package's folder comes first
        # (its pytest's pythonpath), so that `tests` is the package's
        procs[name] = subprocess.Popen(
            [python_for(backend.env), "-m", "pytest", "-p", "no:cacheprovider", "-q"],
            cwd=PACKAGE,
            env=package_env(STREAM_RELEASE_TEST_DATABASE=json.dumps(entry), PYTHONPATH=str(ROOT)),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
    outputs = {name: proc.communicate(timeout=600)[0] for name, proc in procs.items()}
    return {name: (procs[name].returncode, output) for name, output in outputs.items()}


@pytest.mark.parametrize("backend_name", BACKENDS)
def test_the_package_tests_pass_on_postgresql_with_each_backend(backend_name, postgres_runs):
    returncode, output = postgres_runs[backend_name]
    assert returncode == 0 and " passed" in output and " failed" not in output, output[-4000:]
