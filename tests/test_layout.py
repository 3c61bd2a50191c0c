"""How the code is laid out, read from the source (nothing is imported): test modules share helpers
through ``tests/factories.py`` and ``tests/conftest.py``, never through one another; the core is
plain Python that Dagster wraps, and never imports Dagster itself."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ROOT / "tests"
CORE = ROOT / "observatory_pipelines" / "core"


def imported_modules(path: Path, root: Path = ROOT) -> set[str]:
    """Every module an ``import`` or ``from ... import`` in the file names, at any depth (functions
    and ``if TYPE_CHECKING`` blocks included), relative imports resolved, and ``from package import
    name`` also counted as ``package.name`` (it may be a module)."""
    package = list(path.relative_to(root).parent.parts)
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *([node.module] if node.module else [])])
            found.add(module)
            found |= {f"{module}.{alias.name}" for alias in node.names}
    return found


def test_no_test_module_imports_another():
    test_modules = sorted(TESTS.glob("test_*.py"))
    names = {f"tests.{p.stem}" for p in test_modules}
    assert len(names) > 10 and "tests.test_layout" in names
    offenders = {p.name: sorted(found) for p in test_modules if (found := imported_modules(p) & names)}
    assert not offenders, f"shared helpers belong in tests/factories.py or tests/conftest.py: {offenders}"


def test_the_checker_sees_imports_of_test_modules_in_every_form(tmp_path):
    source = tmp_path / "tests" / "test_example.py"
    source.parent.mkdir()
    source.write_text(
        "import tests.test_stats\n"
        "from tests import test_exports\n"
        "from . import test_gexf\n"
        "from .test_dedup import URL_CASES\n"
        "def f():\n"
        "    from tests.test_networks import edges\n",
        encoding="utf-8",
    )
    found = imported_modules(source, root=tmp_path)
    assert {
        "tests.test_stats",
        "tests.test_exports",
        "tests.test_gexf",
        "tests.test_dedup",
        "tests.test_networks",
    } <= found


def test_core_never_imports_dagster():
    modules = sorted(CORE.rglob("*.py"))
    assert len(modules) > 10
    offenders = {
        str(p.relative_to(ROOT)): sorted(found)
        for p in modules
        if (found := {m for m in imported_modules(p) if m.split(".")[0] == "dagster" or m.startswith("dagster_")})
    }
    assert not offenders, f"observatory_pipelines/core is plain Python; Dagster belongs in defs/: {offenders}"


#: Where a machine keeps its own software and scratch files; a literal naming these is not project data.
SYSTEM_FOLDERS = ("/bin", "/dev", "/etc", "/lib", "/opt", "/proc", "/sys", "/tmp", "/usr", "/var")


def _outside_the_repository(literal: str, here: Path) -> bool:
    """A path literal naming something that exists outside the checkout: absolute, or climbing out
    of the module's folder or the checkout (a bad path that exists nowhere, as in input tests, is fine)."""
    if "\n" in literal or literal.startswith(SYSTEM_FOLDERS):
        return False
    if literal.startswith("/"):
        candidates = [Path(literal)] if len(Path(literal).parts) > 1 else []  # "/" alone is a separator
    elif literal.startswith("../") and set(Path(literal).parts) - {".."}:
        candidates = [here.parent / literal, ROOT / literal]
    else:
        return False
    return any(target.exists() and ROOT not in (target.resolve(), *target.resolve().parents) for target in candidates)


def test_no_code_or_test_reads_a_path_outside_the_repository():
    # The machine's shared folders (specs, research notes) are copied in, licence included.
    offenders = [
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for folder in ("observatory_pipelines", "tests", "bench", "scripts", "migrations")
        for path in sorted((ROOT / folder).rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _outside_the_repository(node.value, path)
    ]
    assert offenders == []
