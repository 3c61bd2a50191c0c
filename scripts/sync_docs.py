"""Keep the rules in docs/ word for word the code's.

A rule (how dedup links records, how a network's edges are made, ...) is written once, in ``core``,
and the Dagster asset descriptions are built from it. The docs show the same text inside marked
blocks::

    <!-- rules: dedup -->
    ...generated...
    <!-- /rules -->

    .venv/bin/python scripts/sync_docs.py          rewrite every block from the code
    .venv/bin/python scripts/sync_docs.py --check  list the blocks that differ; exit 1 if any (a test runs this)
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "docs" / "analysis.md"]
_BLOCK = re.compile(r"(<!-- rules: (?P<name>[\w:-]+) -->\n)(?P<body>.*?)(<!-- /rules -->)", re.S)


def sources() -> dict[str, Callable[[], str]]:
    from observatory_pipelines.core.analysis import networks, statistics
    from observatory_pipelines.core.processing import dedup, entities

    found: dict[str, Callable[[], str]] = {
        "dedup": lambda: dedup.RULES,
        "entities": lambda: entities.RULES,
        "statistics": lambda: statistics.RULES,
    }
    for name in networks.NETWORKS:
        found[f"network:{name}"] = lambda name=name: networks.describe(name)
    return found


def render(text: str, known: dict[str, Callable[[], str]]) -> tuple[str, list[str]]:
    """``text`` with every block filled in, and the names of the blocks that changed."""
    changed: list[str] = []

    def fill(match: re.Match[str]) -> str:
        name = match.group("name")
        if name not in known:
            raise SystemExit(f"sync_docs: unknown rules block {name!r}; known: {', '.join(sorted(known))}")
        body = "```text\n" + known[name]().strip() + "\n```\n"
        if body != match.group("body"):
            changed.append(name)
        return match.group(1) + body + match.group(4)

    return _BLOCK.sub(fill, text), changed


def main(argv: list[str]) -> int:
    check = "--check" in argv
    known = sources()
    stale = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        rendered, changed = render(text, known)
        if changed:
            stale += [f"{doc.relative_to(ROOT)}: {name}" for name in changed]
            if not check:
                doc.write_text(rendered, encoding="utf-8")
    if check and stale:
        print("docs differ from the code's rules (run: .venv/bin/python scripts/sync_docs.py):", file=sys.stderr)
        print("\n".join(f"  {line}" for line in stale), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
