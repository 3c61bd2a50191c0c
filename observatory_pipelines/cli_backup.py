"""``observatory backup`` and ``observatory restore``: database backups in object storage.

Wired into ``cli.build_parser`` through ``register(sub, add)``. Results go to stdout; progress and
warnings to stderr; failures raise ``ObservatoryError``, which ``cli.main`` prints as one line.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

from observatory_pipelines.core.maintenance import backup
from observatory_pipelines.core.platform import database, storage
from observatory_pipelines.core.platform.errors import ConfigError

#: Restore progress is reported each time it passes another multiple of this many percent.
PROGRESS_STEP = 5


def _print(msg: str = "") -> None:
    print(msg, flush=True)


def _note(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _mib(n: int) -> str:
    return f"{n / 1024 / 1024:.1f} MiB"


def cmd_backup(args: argparse.Namespace) -> int:
    url = database.resolve_url()
    store = storage.store_from_env()
    result = backup.run_backup(url, store, dry_run=args.dry_run, log=_note)
    if result.dry_run:
        _print(f"dry run: would dump {result.database} (PostgreSQL {result.server_version}) with {result.pg_dump}")
        _print(f"  to {result.key} in {result.store}")
        _print(f"would prune {len(result.pruned)} object(s)" + (":" if result.pruned else ""))
    else:
        _print(f"backed up {result.database} (PostgreSQL {result.server_version}) to {result.key} in {result.store}")
        _print(f"  {result.size} bytes, sha256 {result.sha256}")
        _print(f"pruned {len(result.pruned)} object(s)" + (":" if result.pruned else ""))
    for key in result.pruned:
        _print(f"  {key}")
    return 0


def _progress_printer() -> Callable[[int, int], None]:
    reported = -1

    def report(done: int, total: int) -> None:
        nonlocal reported
        percent = 100 * done // total if total else 100
        step = percent - percent % PROGRESS_STEP
        if step > reported:
            reported = step
            _note(f"restore: {step}% ({_mib(done)} of {_mib(total)})")

    return report


def cmd_restore(args: argparse.Namespace) -> int:
    if (args.target_url or args.force) and not args.restore:
        raise ConfigError("--target-url and --force go with --restore KEY")
    store = storage.store_from_env()
    if args.list:
        found = backup.list_backups(store)
        if not found:
            _print(f"no backups in {store.describe()}")
            return 0
        for info in found:
            state = f"PostgreSQL {info.server_version or '?'}" if info.complete else "INCOMPLETE (no checksum)"
            _print(f"{info.key}\t{info.created:%Y-%m-%d %H:%M:%S} UTC\t{info.size}\t{state}")
        return 0
    if args.verify:
        info = backup.verify_backup(store, args.verify)
        _print(f"{info.key}: OK ({info.size} bytes, sha256 {info.sha256}, PostgreSQL {info.server_version or '?'})")
        return 0
    target = args.target_url or database.resolve_url()
    info = backup.restore_backup(store, args.restore, target, force=args.force, progress=_progress_printer())
    _print(f"restored {info.key} (sha256 verified) into {database.describe(target)}")
    return 0


def register(sub, add) -> None:
    """Add ``backup`` and ``restore`` to the ``observatory`` parser (``add`` is build_parser's helper)."""
    p = add(sub, "backup", cmd_backup, "dump the content database to object storage and prune old backups")
    p.add_argument("--dry-run", action="store_true", help="show what would be dumped and pruned; change nothing")

    p = add(sub, "restore", cmd_restore, "list, verify or restore database backups from object storage")
    action = p.add_mutually_exclusive_group(required=True)
    action.add_argument("--list", action="store_true", help="list backups, newest first")
    action.add_argument("--verify", metavar="KEY", help="check a backup's checksum and completeness")
    action.add_argument("--restore", metavar="KEY", help="verify, then load a backup into the target database")
    p.add_argument(
        "--target-url",
        metavar="URL",
        help="database to restore into (default: the configured content database); created if missing",
    )
    p.add_argument("--force", action="store_true", help="replace the target's public schema if it has tables")
