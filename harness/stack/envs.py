"""The Python environments servers run in. Django uses psycopg 3 whenever it is importable, which
breaks django-db-geventpool's psycopg2 backend, so psycopg2 and psycopg 3 servers each get
their own environment, built on demand from requirements/<name>.txt:

- "bench": this environment (.venv: the harness, Locust, the psycopg2 server stack);
- any other name: .venv-<name>, rebuilt when its requirements file changes.

Each has django-stream-release (PACKAGE) installed editable, as `make` does for .venv: the app
uses it as a user's project would.
"""

import fcntl
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile

from harness import ROOT, CellError, UsageError

REQUIREMENTS = ROOT / "requirements"
PACKAGE = ROOT / "django-stream-release"


def python_for(name: str, console=None) -> str:
    if name == "bench":
        return sys.executable
    requirements = REQUIREMENTS / f"{name}.txt"
    if not requirements.is_file():
        raise UsageError(
            f"environment {name!r} has no {requirements.relative_to(ROOT)}: fix the backend's env in matrix.toml"
        )
    return _built(name, ROOT / f".venv-{name}", [requirements], console)


def python_for_target(target, backend, console=None) -> str:
    """A target's server environment for a backend (matrix.OWN: the one its settings name).

    Without target.requirements: the backend's environment (this one for its own backend). With
    them: .venv-target-<name>-<hash of its path>, built from its requirements and the server
    stack (requirements/target-server.txt), or for a backend of another environment than "bench"
    .venv-target-<name>-<hash>-<env>, from its requirements and requirements/<env>.txt; each
    rebuilt when one of its files changes."""
    env = "bench" if backend.env == "target" else backend.env
    if target.requirements is None:
        return python_for(env, console)
    key = hashlib.sha256(str(target.project).encode()).hexdigest()[:8]
    stack = REQUIREMENTS / ("target-server.txt" if env == "bench" else f"{env}.txt")
    if not stack.is_file():
        raise UsageError(f"environment {env!r} has no {stack.relative_to(ROOT)}: fix the backend's env in matrix.toml")
    suffix = "" if env == "bench" else f"-{env}"
    return _built(
        f"target {target.name}{suffix}",
        ROOT / f".venv-target-{target.name}-{key}{suffix}",
        [target.requirements, stack],
        console,
    )


def _built(name, venv, requirements, console):
    """The python of `venv`, built from the requirement files and the package (editable) unless
    it was built from the same files already."""
    python = venv / "bin" / "python"
    stamp = venv / ".installed"
    digest = hashlib.sha256(b"".join(r.read_bytes() for r in [*requirements, PACKAGE / "pyproject.toml"])).hexdigest()
    if python.exists() and stamp.exists() and stamp.read_text() == digest:
        return str(python)
    # one builder at a time (two runs, or two test workers, may need it at once); the others
    # wait, then find it built
    with open(f"{venv}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if python.exists() and stamp.exists() and stamp.read_text() == digest:
            return str(python)
        _build(name, venv, python, requirements, console)
        stamp.write_text(digest)
    return str(python)


def _build(name, venv, python, requirements, console):
    if console is not None:
        console.print(f"building the {name!r} environment ({venv.name}) from {', '.join(str(r) for r in requirements)}")
    with tempfile.TemporaryDirectory(prefix="bench-requirements-") as tmp:
        # A lock's hashes put pip in hash-checking mode for every file of the install: beside a
        # target's own (unhashed) requirements, its pins count without them.
        files = requirements if len(requirements) == 1 else [without_hashes(r, tmp) for r in requirements]
        _install(venv, python, files)


def without_hashes(path, directory) -> str:
    """`path` itself, or a copy in `directory` with pip-compile's hash options taken out."""
    text = path.read_text()
    if "--hash=" not in text:
        return str(path)
    stripped = re.sub(r"[ \t]*\\\r?\n[ \t]*--hash=\S+", "", text)
    out = os.path.join(directory, f"{len(os.listdir(directory))}-{path.name}")
    with open(out, "w") as f:
        f.write(stripped)
    return out


def _install(venv, python, requirements):
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    for cmd in (
        [sys.executable, "-m", "venv", "--clear", str(venv)],
        [*pip, *(arg for r in requirements for arg in ("-r", str(r)))],
        [*pip, "--no-deps", "-e", str(PACKAGE)],
    ):
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise CellError(f"could not build {venv.name}: {' '.join(cmd[:3])} failed:\n{result.stderr[-2000:]}")


def freeze(python: str) -> dict:
    """{package: version} installed in the environment of a server's `python`."""
    result = subprocess.run(
        [python, "-m", "pip", "list", "--format=json", "--disable-pip-version-check"], capture_output=True, text=True
    )
    if result.returncode != 0:
        return {}
    return {p["name"]: p["version"] for p in json.loads(result.stdout)}
