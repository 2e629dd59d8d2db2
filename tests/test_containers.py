"""docker-compose.yml and the Dockerfile, checked without a container engine: the compose
file against the Compose specification's JSON schema (check-jsonschema's vendored copy) and
by a real Compose implementation's `config -q` where one is installed (.ci/run installs
Debian's docker-compose); the Dockerfile with hadolint."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from harness import ROOT

pytestmark = pytest.mark.fast  # starts no server: make test-fast

COMPOSE = ROOT / "docker-compose.yml"
BIN = Path(sys.executable).parent


def schema_check(path):
    return subprocess.run(
        [BIN / "check-jsonschema", "--builtin-schema", "vendor.compose-spec", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def compose_command():
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("podman-compose"):
        return ["podman-compose"]
    return None


def test_compose_file_follows_the_compose_specification():
    result = schema_check(COMPOSE)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_schema_check_catches_a_broken_file(tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("    healthcheck:\n      test:", "    healthcheck:\n      tset:", 1))
    assert schema_check(broken).returncode != 0


@pytest.fixture
def compose():
    command = compose_command()
    if command is None:
        pytest.skip(
            "no Compose implementation here (docker compose, docker-compose or podman-compose): "
            "sudo apt-get install docker-compose; .ci/run does"
        )
    return command


def test_compose_config_accepts_it(compose, tmp_path):
    result = subprocess.run(
        [*compose, "-f", str(COMPOSE), "--project-directory", str(ROOT), "config", "-q"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr


def test_compose_config_refuses_a_broken_file(compose, tmp_path):
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(COMPOSE.read_text().replace("depends_on:\n      db:", "depends_on:\n      nodb:", 1))
    (tmp_path / "compose.env").write_text((ROOT / "compose.env").read_text())
    result = subprocess.run(
        [*compose, "-f", str(broken), "config", "-q"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode != 0


def test_the_stack_is_what_the_issue_asks():
    spec = YAML(typ="safe").load(COMPOSE.read_text())
    services = spec["services"]
    assert set(services) == {"db", "app", "locust-master", "locust-worker"}
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert services["app"]["depends_on"]["db"]["condition"] == "service_healthy"
    # every published port is on the loopback interface only
    published = [port for s in services.values() for port in s.get("ports", [])]
    assert published and all(port.startswith("127.0.0.1:") for port in published)
    # no password committed: it comes from the environment, with a local-only default
    text = COMPOSE.read_text() + (ROOT / "compose.env").read_text()
    assert "${POSTGRES_PASSWORD:-local-only-not-a-secret}" in text
    assert "PASSWORD=" not in (ROOT / "compose.env").read_text()
    # one image for the app and Locust
    assert {services[s]["build"] for s in ("app", "locust-master", "locust-worker")} == {"."}


def test_dockerfile_passes_hadolint():
    result = subprocess.run([BIN / "hadolint", str(ROOT / "Dockerfile")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
