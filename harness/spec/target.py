"""A target: a Django project of your own, described by a short TOML file, which the harness
runs as it runs benchapp (make serve TARGET=path/to/target.toml).

    [target]
    project = "mysite"                   # the directory with manage.py, relative to this file
    settings = "mysite.settings"
    wsgi = "mysite.wsgi:application"
    asgi = "mysite.asgi:application"     # optional: to run it under an ASGI server (uvicorn)
    requirements = "requirements.txt"    # optional: installed into the target's own environment
    setup = ["python manage.py loaddata demo.json"]   # optional, after migrate, in the project
    [[target.streams]]
    name = "export"                      # kebab-case: it names the cells
    path = "/reports/export.csv"
    [target.probe]
    path = "/api/health/db/"             # a view that uses the database

The project's code is not changed and its files are not written to: the server runs with the
settings of harness/spec/target_app/bench_target_settings.py, which imports the project's settings
and changes only what a measurement needs (the database the harness gives it, the connection
accounting and the detector of django-stream-release, two URLs of the harness's own).
"""

import os
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from harness import ROOT, UsageError

TARGET_APP = ROOT / "harness" / "spec" / "target_app"
NAME = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
DOTTED = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


@dataclass(frozen=True)
class Stream:
    name: str
    path: str


@dataclass(frozen=True)
class Target:
    file: Path
    project: Path
    settings: str
    wsgi: str
    streams: tuple
    probe: str
    requirements: Path | None = None
    setup: tuple = field(default_factory=tuple)
    asgi: str | None = None

    @property
    def name(self) -> str:
        return self.project.name

    def stream(self, name) -> Stream:
        return next(s for s in self.streams if s.name == name)

    def application(self, kind: str) -> str:
        """Its application for a server of this kind (matrix.Server.app, "wsgi" or "asgi"), or
        UsageError naming the key to set."""
        if kind == "wsgi":
            return self.wsgi
        if self.asgi is None:
            _fail(
                self.file,
                "target.asgi",
                "is missing, and an ASGI server needs it",
                f'set it to your ASGI application, e.g. "{self.wsgi.split(".")[0]}.asgi:application"',
            )
        return self.asgi

    def env(self) -> dict:
        """What the target's processes (manage.py, gunicorn) need besides the app's BENCH_*
        settings: its settings through the harness's shim, the project and the shim on the path."""
        return {
            "DJANGO_SETTINGS_MODULE": "bench_target_settings",
            "BENCH_TARGET_SETTINGS": self.settings,
            "BENCH_WSGI_APP": self.wsgi,
            **({"BENCH_ASGI_APP": self.asgi} if self.asgi else {}),
            "PYTHONPATH": os.pathsep.join((str(self.project), str(TARGET_APP))),
        }


def _fail(file, key, problem, fix):
    raise UsageError(f"TARGET={file}: {key} {problem}: {fix}")


def load(file) -> Target:
    """The target file, checked: a bad key gets one line naming it and the fix."""
    path = Path(file)
    table = _read(file, path)

    def text(key, pattern=None, what=""):
        value = table.get(key)
        if not isinstance(value, str) or not value.strip():
            _fail(file, f"target.{key}", "is missing", f"set it to {what}")
        if pattern and not pattern.fullmatch(value):
            _fail(file, f"target.{key}={value!r}", "is not a dotted module path", f"set it to {what}")
        return value

    project = (path.parent / text("project", what="the directory that holds manage.py")).resolve()
    if not (project / "manage.py").is_file():
        _fail(
            file,
            f"target.project={table['project']!r}",
            f"has no manage.py ({project})",
            "point it at the directory that holds manage.py, relative to the target file",
        )
    # checked in this order, so that a file with several faults is told of the first one
    settings = text("settings", DOTTED, 'your settings module, e.g. "mysite.settings"')
    wsgi = _application(file, "wsgi", text("wsgi", what='your WSGI application, e.g. "mysite.wsgi:application"'))
    asgi = None
    if "asgi" in table:
        asgi = _application(file, "asgi", text("asgi", what='your ASGI application, e.g. "mysite.asgi:application"'))
    requirements = None
    if "requirements" in table:
        requirements = _requirements(file, path, table, text("requirements", what="a pip requirements file"))
    setup = _setup(file, table.get("setup", []))
    streams = _streams(file, table.get("streams"))
    probe = _probe(file, table.get("probe"))
    return Target(
        file=path.resolve(),
        project=project,
        settings=settings,
        wsgi=wsgi,
        streams=streams,
        probe=probe,
        requirements=requirements,
        setup=setup,
        asgi=asgi,
    )


KEYS = ("project", "settings", "wsgi", "asgi", "requirements", "setup", "streams", "probe")


def _read(file, path) -> dict:
    """The file's [target] table, with no key a target does not have."""
    if not path.is_file():
        raise UsageError(f"TARGET={file} does not exist: give the path of your target.toml")
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise UsageError(f"TARGET={file} is not valid TOML ({exc}): fix the file") from None
    table = data.get("target")
    if not isinstance(table, dict):
        _fail(file, "[target]", "is missing", "start the file with a [target] table (see harness/spec/target.py)")
    unknown = set(table) - set(KEYS)
    if unknown:
        _fail(
            file,
            f"[target] {', '.join(sorted(unknown))}",
            "is not a key of a target",
            "use project, settings, wsgi, asgi, requirements, setup, streams and probe",
        )
    return table


def _requirements(file, path, table, value) -> Path:
    requirements = (path.parent / value).resolve()
    if not requirements.is_file():
        _fail(
            file,
            f"target.requirements={table['requirements']!r}",
            f"does not exist ({requirements})",
            "give a pip requirements file relative to the target file, or leave the key out",
        )
    return requirements


def _setup(file, setup) -> tuple:
    if not isinstance(setup, list) or not all(isinstance(c, str) and c.strip() for c in setup):
        _fail(
            file, "target.setup", "is not a list of commands", 'write setup = ["python manage.py loaddata demo.json"]'
        )
    return tuple(setup)


def _streams(file, streams) -> tuple:
    if not isinstance(streams, list) or not streams:
        _fail(file, "[[target.streams]]", "is missing", 'add one per streaming URL: name = "export", path = "/export/"')
    seen = []
    for i, stream in enumerate(streams):
        where = f"target.streams[{i}]"
        if not isinstance(stream, dict) or set(stream) - {"name", "path"}:
            _fail(file, where, "has keys other than name and path", "give each stream a name and a path only")
        name, url = stream.get("name"), stream.get("path")
        if not isinstance(name, str) or not NAME.fullmatch(name):
            _fail(file, f"{where}.name={name!r}", "is not a kebab-case name", 'name it like "export" or "orders-csv"')
        if name in seen:
            _fail(file, f"{where}.name={name!r}", "is used twice", "give every stream a name of its own")
        seen.append(name)
        _check_path(file, f"{where}.path", url)
    return tuple(Stream(s["name"], s["path"]) for s in streams)


def _probe(file, probe) -> str:
    if not isinstance(probe, dict) or set(probe) != {"path"}:
        _fail(
            file,
            "[target.probe]",
            "is missing or has keys other than path",
            'add [target.probe] with path = "/a/view/that/queries/the/database/"',
        )
    _check_path(file, "target.probe.path", probe["path"])
    return probe["path"]


def _application(file, key, value):
    module, _, attribute = value.partition(":")
    if not DOTTED.fullmatch(module) or not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", attribute):
        _fail(file, f"target.{key}={value!r}", "is not module:attribute", f'write it as "mysite.{key}:application"')
    return value


def _check_path(file, key, url):
    if not isinstance(url, str) or not url.startswith("/") or any(c.isspace() for c in url):
        _fail(file, f"{key}={url!r}", "is not a URL path", 'write the path the app serves, from "/", e.g. "/export/"')
