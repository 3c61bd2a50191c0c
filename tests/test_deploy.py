"""The Docker Compose stack, validated as Debian's docker-compose reads it (no engine needed)."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.factories import needs_tool

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = shutil.which("docker-compose") or "docker-compose"
SECRETS = {
    "POSTGRES_PASSWORD": "pg-secret",
    "MINIO_ROOT_PASSWORD": "minio-secret",
    "PSEUDONYMIZATION_SALT": "salt",
    "OBSERVATORY_PORTAL_SECRET": "portal-secret",
}
# Variables that widen or move what the stack publishes: never taken from the caller's shell.
BINDS = ("DAGSTER_UI_BIND", "MINIO_CONSOLE_BIND", "PORTAL_BIND", "OBSERVATORY_PORTAL_URL")

needs_compose = needs_tool("docker-compose", "docker-compose")


def compose(*args, **variables):
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and k not in BINDS and not k.startswith("MINIO_")}
    env.update(variables)
    return subprocess.run(
        [COMPOSE, "-f", str(ROOT / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


@needs_compose
def test_the_stack_is_valid_and_complete():
    checked = compose("config", "-q", **SECRETS)
    assert checked.returncode == 0, checked.stderr

    config = yaml.safe_load(compose("config", **SECRETS).stdout)
    services = config["services"]
    assert set(services) == {
        "postgres",
        "minio",
        "minio-init",
        "migrate",
        "user_code",
        "webserver",
        "daemon",
        "portal",
        "backup",
    }
    assert services["postgres"]["image"] == "postgres:16" and "healthcheck" in services["postgres"]
    assert [name for name, s in services.items() if "dagster-daemon" in s.get("command", [])] == ["daemon"]
    assert services["backup"]["profiles"] == ["backup"]
    user_code = services["user_code"]["environment"]
    assert user_code["MINIO_ENDPOINT"] == "http://minio:9000" and user_code["MINIO_SECRET_KEY"] == "minio-secret"
    assert user_code["DAGSTER_POSTGRES_URL"].startswith("postgresql+psycopg2://")
    # The portal gets the shared block plus its secret; no other container holds the secret.
    portal = services["portal"]["environment"]
    assert (
        portal["OBSERVATORY_PORTAL_SECRET"] == "portal-secret" and portal["DATABASE_URL"] == user_code["DATABASE_URL"]
    )
    assert [name for name, s in services.items() if "OBSERVATORY_PORTAL_SECRET" in s.get("environment", {})] == [
        "portal"
    ]
    assert user_code["OBSERVATORY_PORTAL_URL"] == "http://localhost:8080"
    for name in ("migrate", "user_code", "webserver", "daemon", "portal", "backup"):
        assert "observatory-state:/var/lib/observatory" in str(services[name]["volumes"])


@needs_compose
@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_a_missing_secret_is_named(missing):
    variables = {k: v for k, v in SECRETS.items() if k != missing}
    checked = compose("config", "-q", **variables)
    assert checked.returncode != 0
    assert f"set {missing}" in checked.stderr


# Who can reach what: read from the file itself, with every ${VAR:-default} at its default (no tool
# needed), and through docker-compose to check that the bind variables really override.

_VARIABLE = re.compile(r"\$\{(?P<name>\w+)(?::(?P<op>[-?])(?P<rest>[^}]*))?\}")


def _unset(text: str) -> str:
    """``text`` as Compose reads it with no variable set (``${VAR:?message}`` left as written)."""
    return _VARIABLE.sub(lambda m: m["rest"] if m["op"] == "-" else m[0], text)


def _published(port: str | dict) -> tuple[str, int, int]:
    """(host address, published port, container port); "" for the address means every interface.

    Takes the short syntax as written ("9000:9000", "127.0.0.1:3000:3000") and both forms that
    ``docker-compose config`` prints ("127.0.0.1:3000:3000/tcp", {published: 9000, target: 9000}).
    """
    if isinstance(port, dict):
        return str(port.get("host_ip", "")), int(port["published"]), int(port["target"])
    parts = port.split("/")[0].split(":")
    return ":".join(parts[:-2]), int(parts[-2]), int(parts[-1])


def _everywhere(address: str) -> bool:
    return address in {"", "0.0.0.0", "::", "[::]"}


def _file_ports() -> dict[str, list[tuple[str, int, int]]]:
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    return {name: [_published(_unset(p)) for p in s.get("ports", [])] for name, s in services.items()}


def test_only_the_portal_and_the_s3_api_face_the_network_by_default():
    ports = _file_ports()
    assert ports["webserver"] == [("127.0.0.1", 3000, 3000)]
    assert ("127.0.0.1", 9001, 9001) in ports["minio"]
    assert ports["portal"] == [("0.0.0.0", 8080, 8080)]
    facing = sorted(
        (name, published) for name, mapped in ports.items() for address, published, _ in mapped if _everywhere(address)
    )
    assert facing == [("minio", 9000), ("portal", 8080)]


def test_the_portal_service_runs_the_portal_and_needs_its_secret():
    text = (ROOT / "docker-compose.yml").read_text(encoding="utf-8")
    portal = yaml.safe_load(text)["services"]["portal"]
    assert portal["command"][:2] == ["observatory", "portal"]
    assert portal["command"][portal["command"].index("--port") + 1] == "8080"
    assert portal["environment"]["OBSERVATORY_PORTAL_SECRET"].startswith("${OBSERVATORY_PORTAL_SECRET:?")
    assert portal["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    assert portal["depends_on"]["minio-init"] == {"condition": "service_completed_successfully"}
    # The image has Python and no curl (the Dockerfile purges it).
    assert portal["healthcheck"]["test"][:2] == ["CMD", "python"] and "/healthz" in portal["healthcheck"]["test"][-1]
    assert "curl" not in str(portal["healthcheck"])


@needs_compose
def test_the_bind_variables_default_to_this_host_and_override():
    def ports(**variables):
        checked = compose("config", **SECRETS, **variables)
        assert checked.returncode == 0, checked.stderr
        services = yaml.safe_load(checked.stdout)["services"]
        return {name: sorted(_published(p) for p in s.get("ports", [])) for name, s in services.items() if "ports" in s}

    default = ports()
    assert default["webserver"] == [("127.0.0.1", 3000, 3000)]
    assert default["minio"] == [("", 9000, 9000), ("127.0.0.1", 9001, 9001)]
    assert default["portal"] == [("0.0.0.0", 8080, 8080)]
    assert set(default) == {"webserver", "minio", "portal"}

    widened = ports(DAGSTER_UI_BIND="0.0.0.0", MINIO_CONSOLE_BIND="10.0.0.5", PORTAL_BIND="127.0.0.1")
    assert widened["webserver"] == [("0.0.0.0", 3000, 3000)]
    assert ("10.0.0.5", 9001, 9001) in widened["minio"]
    assert widened["portal"] == [("127.0.0.1", 8080, 8080)]


def test_the_deploy_guide_says_who_can_reach_what():
    guide = (ROOT / "docs" / "deploy.md").read_text(encoding="utf-8")
    section = guide.split("## Who can reach what", 1)[1].split("\n## ", 1)[0]
    for needed in ("oauth2-proxy", "auth_request", "websocket", "erase_actor", "OBSERVATORY_PORTAL_URL", "127.0.0.1"):
        assert needed in section, needed
