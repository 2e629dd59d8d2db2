"""The Debian packages that some runs and tests use, beyond the pinned Python environments, and
`make deps`: install the missing ones (apt-get, as root or with sudo). `.ci/run` calls it, so
CI runs every test; without them `make test` skips those tests and names the package.

python3 -m harness.stack.deps            install what is missing
python3 -m harness.stack.deps --check    list what is missing; exit 1 if anything is
"""

import argparse
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass


@dataclass(frozen=True)
class Package:
    name: str  # the Debian package
    commands: tuple  # installed when any of these is found (a name on PATH or an absolute path)
    used_by: str

    def found(self) -> bool:
        return any(shutil.which(c) or (os.path.isabs(c) and os.access(c, os.X_OK)) for c in self.commands)


PACKAGES = (
    Package("pgbouncer", ("pgbouncer", "/usr/sbin/pgbouncer"), "the pgbouncer backend"),
    Package("chromium", ("chromium",), "the browser test of make ui"),
    Package("chromium-driver", ("chromedriver",), "the browser test of make ui"),
    Package("slowhttptest", ("slowhttptest",), "make peer's other client"),
    # any Compose implementation will do for `config -q`; Debian's is docker-compose
    Package("docker-compose", ("docker-compose", "podman-compose"), "the check of docker-compose.yml"),
    Package("iproute2", ("ip",), "the distributed test's network namespaces"),
)


def missing() -> list:
    return [p for p in PACKAGES if not p.found() and not (p.name == "docker-compose" and _compose_plugin())]


def _compose_plugin() -> bool:
    """`docker compose` (the CLI plugin) counts as a Compose implementation too."""
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0


def install(packages) -> int:
    names = [p.name for p in packages]
    if not names:
        print("make deps: every package is installed", file=sys.stderr)
        return 0
    if shutil.which("apt-get") is None:
        print(
            f"make deps: no apt-get here: install {' '.join(names)} with this system's package manager", file=sys.stderr
        )
        return 2
    sudo = [] if os.geteuid() == 0 else ["sudo"]
    print(f"make deps: installing {' '.join(names)}", file=sys.stderr, flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update", "-qq"], ["apt-get", "install", "-y", "-qq", *names]):
        code = subprocess.call([*sudo, *command], env=env, stdout=subprocess.DEVNULL)
        if code != 0:
            print(f"make deps: {' '.join(command[:2])} failed with {code}", file=sys.stderr)
            return code
    still = [p.name for p in missing()]
    if still:
        print(f"make deps: still missing after apt-get: {' '.join(still)}", file=sys.stderr)
        return 1
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m harness.stack.deps", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="list what is missing; exit 1 if anything is")
    args = parser.parse_args(argv)
    if args.check:
        for p in missing():
            print(f"{p.name}: missing ({p.used_by})")
        return 1 if missing() else 0
    return install(missing())


if __name__ == "__main__":
    sys.exit(main())
