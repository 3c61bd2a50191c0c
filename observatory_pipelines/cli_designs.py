"""``observatory designs``: query designs as YAML files (validate, diff, apply, list, show, export, schema).

Wired into ``cli.build_parser`` through ``register(sub, add)``. Results go to stdout. Design files
with errors print every error on stderr, one ``FILE:LINE: FIELD: message`` line each, then one
summary line, and exit 1; other failures raise ``ObservatoryError``, which ``cli.main`` prints as one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from observatory_pipelines.core.platform import paths
from observatory_pipelines.core.platform.database import migrated_engine

#: The exit status of design files with errors (a bad argument or an unreachable database is 2).
INVALID = 1


def _print(msg: str = "") -> None:
    print(msg, flush=True)


def _target(args: argparse.Namespace) -> Path:
    return Path(args.path).resolve() if args.path else paths.designs_dir()


def _reports_invalid_files(command: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        from observatory_pipelines.core.collection.design_files import DesignFilesInvalid

        try:
            return command(args)
        except DesignFilesInvalid as invalid:
            for error in invalid.errors:
                print(error, file=sys.stderr)
            print(f"observatory: error: {len(invalid.errors)} error(s) in the design files", file=sys.stderr)
            return INVALID

    return run


def _print_changes(changes) -> None:
    from observatory_pipelines.core.collection.design_files import describe

    for change in changes:
        _print(f"{change.slug} ({change.source_file or 'no file'}): {change.change}")
        for line in describe(change.diff):
            _print(f"  {line}")


@_reports_invalid_files
def cmd_validate(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.collection import design_files

    target = _target(args)
    files = design_files.read_design_files(target)
    if not args.no_database:
        from observatory_pipelines.core.collection.design_files import plan as planning

        with migrated_engine() as engine:
            with engine.connect() as conn:
                planning.plan(conn, files)
    checked = "the files only" if args.no_database else "the files and the database's users and actors"
    _print(f"{len(files.designs)} design file(s) in {target} are valid ({checked})")
    return 0


@_reports_invalid_files
def cmd_diff(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.collection import design_files

    target = _target(args)
    with migrated_engine() as engine:
        changes = design_files.plan_design_files(engine, target)
    if not changes:
        _print(f"no changes: the database matches the design files in {target}")
        return 0
    _print_changes(changes)
    _print(f"{len(changes)} design(s) would change; apply with: observatory designs apply")
    return 0


@_reports_invalid_files
def cmd_apply(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.collection import design_files

    target = _target(args)
    with migrated_engine() as engine:
        result = design_files.apply_design_files(engine, target, design_files.cli_actor())
    _print_changes(result.changes)
    _print(f"{len(result.changes)} design(s) changed, from {result.designs} design file(s) in {target}")
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    with migrated_engine() as engine:
        with engine.connect() as conn:
            rows = conn.execute(
                sa.text(
                    """
                    SELECT d.slug, d.is_active, coalesce(d.source_file, '-') AS source_file, u.email,
                           (SELECT count(*) FROM search_terms t WHERE t.query_design_id = d.id AND t.is_active) AS terms
                    FROM query_designs d JOIN users u ON u.id = d.owner_id ORDER BY d.slug
                    """
                )
            ).all()
    if not rows:
        _print("no query designs yet; write one in the designs folder and run: observatory designs apply")
        return 0
    table = [("slug", "state", "file", "owner", "terms")] + [
        (r.slug, "active" if r.is_active else "inactive", r.source_file, r.email, str(r.terms)) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        _print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    import sqlalchemy as sa

    from observatory_pipelines.core.collection import design_files

    with migrated_engine() as engine:
        with engine.connect() as conn:
            text = design_files.export_design(conn, args.slug)
            history = conn.execute(
                sa.text(
                    "SELECT c.applied_at, c.change, c.applied_by, c.source_file FROM design_changes c "
                    "JOIN query_designs d ON d.id = c.query_design_id WHERE d.slug = :slug "
                    "ORDER BY c.applied_at DESC LIMIT 10"
                ),
                {"slug": args.slug},
            ).all()
    _print(text.rstrip("\n"))
    _print("")
    if not history:
        _print("# no changes applied from design files")
    for row in history:
        _print(f"# {row.applied_at:%Y-%m-%d %H:%M:%S %Z}  {row.change:<11}  {row.applied_by}  {row.source_file or ''}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.collection import design_files

    with migrated_engine() as engine:
        with engine.connect() as conn:
            text = design_files.export_design(conn, args.slug)
    if args.to:
        target = Path(args.to)
        target.write_text(text, encoding="utf-8")
        _print(f"wrote {target}")
    else:
        sys.stdout.write(text)
    return 0


def cmd_schema(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.collection.design_files import schema_json

    sys.stdout.write(schema_json())
    return 0


def register(sub, add) -> None:
    """Add ``designs`` to the ``observatory`` parser (``add`` is build_parser's helper)."""
    from observatory_pipelines.cli import _slug_arg

    designs = sub.add_parser(
        "designs",
        help="query designs as YAML files: validate, diff, apply, list, show, export, schema",
        description="Query designs as YAML files, one per design in the designs folder "
        "(OBSERVATORY_DESIGNS_DIR, default designs/ in the checkout); see docs/designs.md.",
    ).add_subparsers(dest="designs_command", metavar="ACTION", required=True)
    path_help = "a design file, or a folder of them (default: the designs folder)"

    p = add(designs, "validate", cmd_validate, "check design files and report every error as FILE:LINE: FIELD")
    p.add_argument("path", nargs="?", metavar="PATH", help=path_help)
    p.add_argument(
        "--no-database", action="store_true", help="check the files only, not their owners and actors in the database"
    )
    p = add(designs, "diff", cmd_diff, "show what apply would change, design by design")
    p.add_argument("path", nargs="?", metavar="PATH", help=path_help)
    p = add(
        designs,
        "apply",
        cmd_apply,
        "apply design files in one transaction (a folder also deactivates designs whose file is gone)",
    )
    p.add_argument("path", nargs="?", metavar="PATH", help=path_help)
    add(designs, "list", cmd_list, "list the query designs in the database and the files they came from")
    p = add(designs, "show", cmd_show, "show one design as its file, and the changes applied to it")
    p.add_argument("slug", type=_slug_arg, metavar="SLUG")
    p = add(designs, "export", cmd_export, "write a design in the database as a design file")
    p.add_argument("slug", type=_slug_arg, metavar="SLUG")
    p.add_argument("--to", metavar="FILE", help="write to FILE (default: stdout)")
    add(designs, "schema", cmd_schema, "print the design files' JSON Schema")
