"""django-stream-release's own test suite on every supported Python x Django x database.

`make package-matrix` (`python -m harness package-matrix`, harness/studies/package_matrix.py) runs this
with a throwaway PostgreSQL whose address it exports in STREAM_RELEASE_MATRIX_DATABASE_URL.

One session per Python and Django series, e.g. `tests(python='3.12', django='6.0')`: a virtual
environment with requirements/package-matrix/django-<series>.txt (exact pins, hashes checked)
and the package itself, installed from its folder as people install it (not editable). The
session then runs the package's suite once per database, side by side (each pytest makes its
own test database): `sqlite` (the suite's default), and on PostgreSQL with psycopg 3 `stock`,
`persistent`, `native-pool` (Django's pool) and `geventpool` (django-db-geventpool's psycopg 3
backend). Any database's failure fails the session, which names it.

Arguments after `--`: first the databases to run on, if not all (`-- sqlite stock`), then
pytest's (`-- stock -x -k plugin`, or all databases: `-- -x`). `sqlite` alone needs no PostgreSQL:
    .venv/bin/nox -s "tests(python='3.12', django='6.0')" -- sqlite
"""

import itertools
import json
import os
import subprocess
import sys
import threading
import time
import traceback
import urllib.parse
from pathlib import Path

import nox

ROOT = Path(__file__).resolve().parent
PACKAGE = ROOT / "django-stream-release"
LOCKS = ROOT / "requirements" / "package-matrix"
DATABASE_URL = "STREAM_RELEASE_MATRIX_DATABASE_URL"
# Each session's results/package-matrix/python<X.Y>-django<series>/: result.json (what ran on
# which database and how it ended, which `make package-matrix` tabulates) and <database>.log
RESULTS = ROOT / "results" / "package-matrix"

# Each Django series the package supports, and the Pythons that series supports (Django 6
# needs 3.12). requirements/package-matrix/django-<series>.in pins its newest patch release.
MATRIX = {
    "5.2": ["3.11", "3.12", "3.13"],
    "6.0": ["3.12", "3.13"],
    "6.1": ["3.12", "3.13"],
}
CELLS = [(python, django) for django, pythons in MATRIX.items() for python in pythons]

_PG = "django.db.backends.postgresql"
# Each database's DATABASES entry, without its address (from DATABASE_URL); None: SQLite, the
# suite's own default (tests/settings.py)
DATABASES = {
    "sqlite": None,
    "stock": {"ENGINE": _PG, "CONN_MAX_AGE": 0},
    "persistent": {"ENGINE": _PG, "CONN_MAX_AGE": 60, "CONN_HEALTH_CHECKS": True},
    "native-pool": {
        "ENGINE": _PG,
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"pool": {"min_size": 1, "max_size": 4, "timeout": 10}},
    },
    # django-db-geventpool 4.0.8's README: on Django 5.1+ turn Django's own pool off (pool: False)
    "geventpool": {
        "ENGINE": "django_db_geventpool.backends.postgresql_psycopg3",
        "CONN_MAX_AGE": 0,
        "OPTIONS": {"MAX_CONNS": 4, "REUSE_CONNS": 4, "pool": False},
    },
}
# A hung test must not hang the matrix: a pytest run still going after this long fails
RUN_TIMEOUT_S = 600

nox.options.sessions = ["tests"]
nox.options.error_on_missing_interpreters = True  # a missing Python fails, never skips
nox.options.download_python = "never"  # nor is one fetched from the network instead


@nox.session(allow_parallel=True)
@nox.parametrize("python,django", CELLS)
def tests(session: nox.Session, django: str) -> None:
    """The package's suite on one Python and Django series, on every database (or those named after --)."""
    named = list(itertools.takewhile(DATABASES.__contains__, session.posargs))
    databases, pytest_args = named or list(DATABASES), session.posargs[len(named) :]
    address = _address(session) if any(DATABASES[d] for d in databases) else None
    out = RESULTS / cell_dir(session.python, django)
    out.mkdir(parents=True, exist_ok=True)
    for stale in [out / "result.json", *out.glob("*.log")]:
        stale.unlink(missing_ok=True)
    result = {"python": session.python, "django": django, "databases": {}}

    lock = LOCKS / f"django-{django}.txt"
    session.install("--require-hashes", "-r", str(lock))
    # the package from its folder, not editable; its one dependency (Django) is pinned above
    session.install("--no-deps", "--force-reinstall", str(PACKAGE))
    session.run("python", "-m", "pip", "check", silent=True)
    version = session.run("python", "-c", "import django; print(django.get_version())", silent=True).strip()
    result["django_version"] = version
    session.log(f"Django {version} on Python {session.python}: {', '.join(databases)}")

    result["databases"] = _run_side_by_side(session, databases, address, pytest_args, out)
    (out / "result.json").write_text(json.dumps(result, indent=2) + "\n")
    failed = [name for name, r in result["databases"].items() if r["status"] != "passed"]
    if failed:
        session.error(f"failed on {', '.join(failed)} (Python {session.python}, Django {version})")


def cell_dir(python: str, django: str) -> str:
    return f"python{python}-django{django}"


def _address(session) -> dict:
    url = os.environ.get(DATABASE_URL)
    if not url:
        session.error(
            f"no PostgreSQL: {DATABASE_URL} is not set. Run `make package-matrix` (it starts a throwaway "
            "cluster), export it as postgres://user@host:port/db, or run SQLite only: nox ... -- sqlite"
        )
    parts = urllib.parse.urlsplit(url)
    return {
        "HOST": parts.hostname or "127.0.0.1",
        "PORT": str(parts.port or 5432),
        "USER": urllib.parse.unquote(parts.username or ""),
        "PASSWORD": urllib.parse.unquote(parts.password or ""),
        "NAME": urllib.parse.unquote(parts.path.lstrip("/")) or "postgres",
    }


def _run_side_by_side(session, databases, address, pytest_args, out) -> dict:
    """Start the suite on every database at once; as each ends, print its verdict (and a failed
    one's summary), its whole output going to out/<database>.log. {database: its result}."""
    bindir = Path(session.bin)
    base = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    for key, value in session.env.items():  # None: unset
        base.pop(key, None) if value is None else base.__setitem__(key, value)
    base.update(VIRTUAL_ENV=str(bindir.parent), PATH=f"{bindir}{os.pathsep}{base.get('PATH', '')}")
    base["COLUMNS"] = "200"  # pytest's short summary: its FAILED lines whole
    command = [str(bindir / "python"), "-m", "pytest", "-p", "no:cacheprovider", "-q", *pytest_args]
    results, lock = {}, threading.Lock()

    def run(name):
        env = dict(base)
        if DATABASES[name] is not None:
            env["STREAM_RELEASE_TEST_DATABASE"] = json.dumps({**address, **DATABASES[name]})
        started = time.monotonic()
        try:
            proc = subprocess.run(
                command,
                cwd=PACKAGE,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                timeout=RUN_TIMEOUT_S,
            )
            code, output = proc.returncode, proc.stdout
        except subprocess.TimeoutExpired as exc:
            output = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else exc.stdout or ""
            code = f"a timeout after {RUN_TIMEOUT_S} s"
        except Exception:  # pytest could not be started: the run fails, and says why
            code, output = "not started", traceback.format_exc()
        took = time.monotonic() - started
        log = out / f"{name}.log"
        log.write_text(output)
        lines = output.rstrip().splitlines()
        last = lines[-1].strip("= ") if lines else "(no output)"
        ok = code == 0
        with lock:
            results[name] = {
                "status": "passed" if ok else "failed",
                "code": code,
                "took_s": round(took, 1),
                "last": last,
            }
            sys.stdout.write(f"----- {name}: {'passed' if ok else f'FAILED ({code})'} in {took:.0f} s: {last}\n")
            if not ok:
                # pytest's short summary (its FAILED lines; the last one: pytester's runs print their own), else
                # the end of the output
                marker = max((i for i, line in enumerate(lines) if "short test summary info" in line), default=None)
                shown = lines[marker + 1 : -1] if marker is not None else lines[-40:]
                sys.stdout.write("".join(f"      {line}\n" for line in shown[-40:]))
                sys.stdout.write(f"      the whole output: {log.relative_to(ROOT)}\n")
            sys.stdout.flush()

    threads = [threading.Thread(target=run, args=(name,)) for name in databases]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {name: results[name] for name in databases}
