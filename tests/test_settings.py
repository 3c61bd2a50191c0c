"""Settings are read in one place, documented in the README, and never show a secret."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from observatory_pipelines.core.platform import settings
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.defs import resources

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "observatory_pipelines"


def _readme_configuration_variables() -> set[str]:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    assert rows, "the README's configuration table has no rows"
    return {name for row in rows for name in re.findall(r"`([A-Z][A-Z0-9_]+)`", row.split("|")[1])}


def test_readme_configuration_table_names_exactly_the_variables_settings_reads():
    assert _readme_configuration_variables() == {v.name for v in settings.VARIABLES}


def _environment_reads(path: Path) -> list[str]:
    """Places in ``path`` that read a variable from os.environ / os.getenv."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        reading = (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and ast.unparse(node.func) in {"os.environ.get", "os.getenv", "os.environ.setdefault"}
        ) or (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and ast.unparse(node.value) == "os.environ"
        )
        if reading:
            found.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    return found


def test_only_the_settings_module_reads_environment_variables():
    reads = [
        place
        for path in sorted(PACKAGE.rglob("*.py"))
        if path != PACKAGE / "core" / "platform" / "settings.py"
        for place in _environment_reads(path)
    ]
    assert reads == []


def test_secrets_never_print_and_bad_values_fail_only_where_used():
    current = settings.Settings(
        {
            "DATABASE_URL": "postgresql://obs:hemmeligt-kodeord@db/observatory",
            "PSEUDONYMIZATION_SALT": "salt-med-æøå-0123456789",
            "MINIO_ROOT_USER": "root-bruger",
            "MINIO_SECRET_KEY": "s3-hemmelighed",
            "BACKUP_RETENTION_DAYS": "tredive",
            "CONTENT_RETENTION_DAYS": " 365 ",
        }
    )
    shown = f"{current!r} {current.database_url} {current.salt!r} {current.s3_access_key} {current.s3_secret_key}"
    for secret in ("hemmeligt-kodeord", "salt-med", "root-bruger", "s3-hemmelighed"):
        assert secret not in shown
    assert current.database_url.reveal().endswith("@db/observatory")
    assert current.s3_access_key.reveal() == "root-bruger"  # MINIO_ROOT_USER is the accepted fallback
    assert current.content_retention_days == 365
    with pytest.raises(ConfigError, match="^BACKUP_RETENTION_DAYS must be a whole number of days"):
        _ = current.backup_retention_days
    assert settings.Settings({}).backup_retention_days == settings.DEFAULT_BACKUP_RETENTION_DAYS


def test_resources_bind_set_secrets_to_their_variables_and_leave_unset_ones_to_fallbacks(monkeypatch):
    for variable in settings.VARIABLES:
        monkeypatch.delenv(variable.name, raising=False)
    monkeypatch.setenv("PSEUDONYMIZATION_SALT", "a-salt-that-is-long-enough")
    monkeypatch.setenv("MINIO_ROOT_USER", "root-bruger")
    bound = resources.from_environment()
    assert bound["collector"].salt == dg.EnvVar("PSEUDONYMIZATION_SALT")
    assert bound["storage"].access_key == dg.EnvVar("MINIO_ROOT_USER")
    assert bound["storage"].secret_key is None
    assert bound["postgres"].database_url is None  # unset: the embedded server
    shown = repr(bound)
    assert "a-salt-that-is-long-enough" not in shown and "root-bruger" not in shown


def test_docs_rules_are_the_codes_rules():
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "sync_docs.py"), "--check"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
