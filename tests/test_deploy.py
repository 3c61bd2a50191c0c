"""The Docker Compose stack, validated as Debian's docker-compose reads it (no engine needed)."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.factories import needs_tool

ROOT = Path(__file__).resolve().parent.parent
COMPOSE = shutil.which("docker-compose") or "docker-compose"
SECRETS = {"POSTGRES_PASSWORD": "pg-secret", "MINIO_ROOT_PASSWORD": "minio-secret", "PSEUDONYMIZATION_SALT": "salt"}

pytestmark = needs_tool("docker-compose", "docker-compose")


def compose(*args, **variables):
    env = {k: v for k, v in os.environ.items() if k not in SECRETS and not k.startswith("MINIO_")}
    env.update(variables)
    return subprocess.run(
        [COMPOSE, "-f", str(ROOT / "docker-compose.yml"), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
    )


def test_the_stack_is_valid_and_complete():
    checked = compose("config", "-q", **SECRETS)
    assert checked.returncode == 0, checked.stderr

    config = yaml.safe_load(compose("config", **SECRETS).stdout)
    services = config["services"]
    assert set(services) == {"postgres", "minio", "minio-init", "migrate", "user_code", "webserver", "daemon", "backup"}
    assert services["postgres"]["image"] == "postgres:16" and "healthcheck" in services["postgres"]
    assert [name for name, s in services.items() if "dagster-daemon" in s.get("command", [])] == ["daemon"]
    assert services["backup"]["profiles"] == ["backup"]
    user_code = services["user_code"]["environment"]
    assert user_code["MINIO_ENDPOINT"] == "http://minio:9000" and user_code["MINIO_SECRET_KEY"] == "minio-secret"
    assert user_code["DAGSTER_POSTGRES_URL"].startswith("postgresql+psycopg2://")
    for name in ("migrate", "user_code", "webserver", "daemon", "backup"):
        assert "observatory-state:/var/lib/observatory" in str(services[name]["volumes"])


@pytest.mark.parametrize("missing", sorted(SECRETS))
def test_a_missing_secret_is_named(missing):
    variables = {k: v for k, v in SECRETS.items() if k != missing}
    checked = compose("config", "-q", **variables)
    assert checked.returncode != 0
    assert f"set {missing}" in checked.stderr
