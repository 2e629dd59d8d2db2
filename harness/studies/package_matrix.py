"""`make package-matrix`: django-stream-release's own test suite on every supported Python x
Django x database, run by nox (noxfile.py holds the matrix: one session per Python and Django
series, the five databases run side by side inside each) against one throwaway PostgreSQL.

Before anything starts, every Python the chosen sessions need must be found, or the command
fails with one line naming it and how to get it: a session is never skipped for want of one.
An interpreter is looked for in pyenv's versions directory (the newest X.Y.* there), then on
PATH (pyenv's shims do not count: they fail unless that version is selected); nox finds each
through a directory of links put first on its PATH. The cluster's superuser address goes to
nox in STREAM_RELEASE_MATRIX_DATABASE_URL, and the cluster is stopped on any exit, Ctrl-C
included.

    python3 -m harness.studies.package_matrix which 3.12          the interpreter found for 3.12
    python3 -m harness.studies.package_matrix lock --pip-tools pip-tools==X -- PIP-COMPILE FLAGS
        re-pin requirements/package-matrix/django-<series>.txt, each on its series' oldest
        Python (pip-compile resolves for the Python it runs on): `make lock` calls it

This module imports nothing outside the standard library at the top: `make lock` runs it on
the system's Python.
"""

import ast
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from harness import ROOT, UsageError

NOXFILE = ROOT / "noxfile.py"
LOCKS = ROOT / "requirements" / "package-matrix"
DATABASE_URL = "STREAM_RELEASE_MATRIX_DATABASE_URL"
# the cluster's log, and each session's result.json and <database>.log (noxfile.py writes them)
RESULTS = ROOT / "results" / "package-matrix"
# five pytest runs side by side per session, each with a few connections (its pytester runs too)
MAX_CONNECTIONS = 100


def _noxfile_literal(name: str, noxfile: Path = NOXFILE):
    """The value (keys, for a dict with names in it) of a top-level assignment in noxfile.py,
    read without importing nox: the matrix is declared once, there."""
    for node in ast.parse(noxfile.read_text()).body:
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            try:
                return ast.literal_eval(node.value)
            except ValueError:
                return [ast.literal_eval(k) for k in node.value.keys]
    raise RuntimeError(f"{noxfile} has no {name} = ...")


def matrix() -> dict:
    """{Django series: [Python versions]}, noxfile.py's MATRIX."""
    return _noxfile_literal("MATRIX")


def databases() -> list:
    return list(_noxfile_literal("DATABASES"))


def session_name(python: str, django: str) -> str:
    """nox's name of a cell's session (python and django parametrized together)."""
    return f"tests(python='{python}', django='{django}')"


def select(pythons=(), djangos=(), dbs=()) -> list:
    """The cells [(python, django)] that PYTHONS= and DJANGO= choose (all by default), and the
    databases checked; UsageError naming an unknown one."""
    spec = matrix()
    known_pythons = sorted({p for ps in spec.values() for p in ps}, key=_version_key)
    for given, known, what in ((pythons, known_pythons, "PYTHONS"), (djangos, list(spec), "DJANGO")):
        for value in given:
            if value not in known:
                raise UsageError(f"{what}={value} is not in the package matrix: use one of {', '.join(known)}")
    for value in dbs:
        if value not in databases():
            raise UsageError(f"DATABASES={value} is unknown: use one of {', '.join(databases())}")
    cells = [
        (p, d) for d, ps in spec.items() for p in ps if (not pythons or p in pythons) and (not djangos or d in djangos)
    ]
    if not cells:
        raise UsageError(
            f"PYTHONS={' '.join(pythons)} DJANGO={' '.join(djangos)} choose no cell: "
            + "; ".join(f"Django {d} runs on {', '.join(ps)}" for d, ps in spec.items())
        )
    return cells


def _version_key(version: str):
    return tuple(int(n) if n.isdigit() else -1 for n in re.split(r"[.]", version))


def pyenv_versions(environ=None) -> Path | None:
    """pyenv's versions directory: $PYENV_ROOT, else `pyenv root`, else ~/.pyenv; None if none."""
    environ = os.environ if environ is None else environ
    root = environ.get("PYENV_ROOT")
    if not root:
        pyenv = shutil.which("pyenv", path=environ.get("PATH"))
        if pyenv:
            try:
                result = subprocess.run([pyenv, "root"], capture_output=True, text=True, timeout=30)
                root = result.stdout.strip() if result.returncode == 0 else None
            except (OSError, subprocess.TimeoutExpired):
                root = None
    versions = Path(root or Path.home() / ".pyenv") / "versions"
    return versions if versions.is_dir() else None


def _runs_as(python, version: str) -> bool:
    try:
        result = subprocess.run(
            [str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0 and result.stdout.strip() == version


def find_python(version: str, environ=None) -> str | None:
    """The path of a working pythonX.Y: pyenv's newest X.Y.* install, else the first on PATH."""
    environ = os.environ if environ is None else environ
    name = f"python{version}"
    candidates = []
    versions = pyenv_versions(environ)
    if versions is not None:
        installs = [d for d in versions.glob(f"{version}.*") if re.fullmatch(rf"{re.escape(version)}\.\d+", d.name)]
        candidates += [d / "bin" / name for d in sorted(installs, key=lambda d: _version_key(d.name), reverse=True)]
    for directory in environ.get("PATH", "").split(os.pathsep):
        if directory and Path(directory).name != "shims":
            candidates.append(Path(directory) / name)
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK) and _runs_as(candidate, version):
            return str(candidate)
    return None


def _and(items) -> str:
    items = list(items)
    return " and ".join([", ".join(items[:-1]), items[-1]] if len(items) > 1 else items)


def find_interpreters(versions, environ=None) -> dict:
    """{X.Y: path} of every version, or UsageError in one line naming each missing one."""
    found = {v: find_python(v, environ) for v in versions}
    missing = [v for v, path in found.items() if path is None]
    if missing:
        it, are = ("it", "is") if len(missing) == 1 else ("them", "are")
        raise UsageError(
            f"Python {_and(missing)} {are} missing, which the package matrix needs: install {it} with "
            f"`pyenv install {' '.join(missing)}` (or put {_and(f'python{v}' for v in missing)} on PATH), "
            f"or leave {it} out with PYTHONS="
        )
    return found


def cell_dir(python: str, django: str) -> Path:
    """Where a session's results go: noxfile.py's cell_dir() under RESULTS."""
    return RESULTS / f"python{python}-django{django}"


def table(cells, dbs) -> str:
    """Each session's verdict on each database, from its result.json."""
    rows = [["Python", "Django", *dbs]]
    for python, django in cells:
        try:
            result = json.loads((cell_dir(python, django) / "result.json").read_text())
        except (OSError, ValueError):
            rows.append([python, django, "no result: see nox's output above"])
            continue
        ran = result["databases"]
        rows.append(
            [
                python,
                result.get("django_version", django),
                *({"passed": "passed"}.get(ran[d]["status"], "FAILED") if d in ran else "-" for d in dbs),
            ]
        )
    widths = [max(len(r[i]) for r in rows if i < len(r)) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip() for row in rows)


def nox_command(cells, dbs=(), pytest_args=(), reuse=False, jobs=1) -> list:
    command = [sys.executable, "-m", "nox", "--noxfile", str(NOXFILE), "--envdir", str(ROOT / ".nox")]
    command += ["--error-on-missing-interpreters", "--download-python", "never", "--non-interactive"]
    command += ["--sessions", *(session_name(p, d) for p, d in cells)]
    if reuse:
        command += ["--reuse-venv", "yes"]
    if jobs > 1 and len(cells) > 1:  # nox then holds each session's output until it ends
        command += ["--parallel", str(min(jobs, len(cells)))]
    if dbs or pytest_args:
        command += ["--", *dbs, *pytest_args]
    return command


def run(pythons=(), djangos=(), dbs=(), pytest_args=(), reuse=False, jobs=1) -> int:
    """Check, start the cluster (unless SQLite alone is asked for), run nox, stop; nox's exit code."""
    import importlib.util

    if jobs < 1:
        raise UsageError(f"JOBS={jobs} must be at least 1")
    cells = select(pythons, djangos, dbs)
    if importlib.util.find_spec("nox") is None:
        raise UsageError("nox is not installed here: run `make package-matrix` (it installs requirements/bench.txt)")
    interpreters = find_interpreters(sorted({p for p, _ in cells}, key=_version_key))
    needs_postgres = any(d != "sqlite" for d in (dbs or databases()))

    from contextlib import ExitStack

    from harness.stack import postgres, procs

    if needs_postgres:  # the binaries, and a user to run them as when root (BENCH_DATABASE_URL is not used)
        postgres.find_binaries()
        postgres.run_as()
    started = time.monotonic()
    with ExitStack() as stack:
        links = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="package-matrix-pythons-")))
        for version, path in interpreters.items():
            (links / f"python{version}").symlink_to(path)
        env = {k: v for k, v in os.environ.items() if k not in ("DJANGO_SETTINGS_MODULE", "PYTHONPATH", DATABASE_URL)}
        env["PATH"] = f"{links}{os.pathsep}{env.get('PATH', '')}"
        if needs_postgres:
            RESULTS.mkdir(parents=True, exist_ok=True)
            log = RESULTS / "postgres.log"
            log.unlink(missing_ok=True)
            db = stack.enter_context(postgres.Cluster(max_connections=MAX_CONNECTIONS, log_path=log))
            env[DATABASE_URL] = db.admin_url  # the superuser: the suite creates its test databases
            print(f"package matrix: PostgreSQL {db.version} at {postgres.redact(db.admin_url)} (log {log})", flush=True)
        print(
            f"package matrix: {len(cells)} session(s), "
            + ", ".join(f"Python {v} {interpreters[v]}" for v in interpreters)
            + f"; databases {', '.join(dbs or databases())}",
            flush=True,
        )
        for python, django in cells:
            (cell_dir(python, django) / "result.json").unlink(missing_ok=True)
        nox = procs.spawn(nox_command(cells, dbs, pytest_args, reuse, jobs), None, env=env, cwd=ROOT)
        # on Ctrl-C (or any exit before nox's): SIGINT to nox and its sessions' processes, which
        # lets nox end its sessions, then whatever is left is killed
        stack.callback(procs.stop, nox, signal.SIGINT, 15)
        code = nox.wait()
    took = time.monotonic() - started
    verdict = "passed" if code == 0 else f"FAILED (nox exited with {code})"
    print(f"\n{table(cells, list(dbs) or databases())}", flush=True)
    print(f"package matrix: {verdict} in {int(took // 60)} min {took % 60:.0f} s", flush=True)
    return 0 if code == 0 else 1


def lock(pip_tools: str, compile_flags) -> int:
    """Re-pin each requirements/package-matrix/django-<series>.txt with pip-compile run on the
    oldest Python of that series (one throwaway environment per Python)."""
    plan = {}
    for django, pythons in matrix().items():
        plan.setdefault(min(pythons, key=_version_key), []).append(django)
    interpreters = find_interpreters(sorted(plan, key=_version_key))
    with tempfile.TemporaryDirectory(prefix="package-matrix-lock-") as tmp:
        for version, series in plan.items():
            venv = Path(tmp) / version
            subprocess.run([interpreters[version], "-m", "venv", str(venv)], check=True)
            subprocess.run(
                [venv / "bin" / "pip", "install", "--quiet", "--disable-pip-version-check", pip_tools], check=True
            )
            for django in series:
                out = LOCKS / f"django-{django}.txt"
                print(f"locking {out.relative_to(ROOT)} (Python {version})", flush=True)
                result = subprocess.run(
                    [
                        venv / "bin" / "pip-compile",
                        *compile_flags,
                        "--output-file",
                        out.relative_to(ROOT),
                        out.with_suffix(".in").relative_to(ROOT),
                    ],
                    cwd=ROOT,
                    env={**os.environ, "CUSTOM_COMPILE_COMMAND": "make lock"},
                )
                if result.returncode != 0:
                    return result.returncode
    return 0


def main(argv=None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python3 -m harness.studies.package_matrix")
    sub = parser.add_subparsers(dest="command", required=True)
    which = sub.add_parser("which", help="print the interpreter found for a Python version")
    which.add_argument("version")
    locking = sub.add_parser("lock", help="re-pin requirements/package-matrix/*.txt (make lock)")
    locking.add_argument("--pip-tools", required=True)
    locking.add_argument("compile_flags", nargs="*")
    args = parser.parse_args(argv)
    try:
        if args.command == "which":
            print(find_interpreters([args.version])[args.version])
            return 0
        return lock(args.pip_tools, args.compile_flags)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
