"""The ``observatory`` command line.

Every failure a user can cause or meet (bad value, unreachable database, missing migration)
ends as one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from sqlalchemy import exc as sa_exc

from observatory_pipelines.core.collection.privacy import SALT_VARIABLE
from observatory_pipelines.core.platform import database, months, settings
from observatory_pipelines.core.platform.database import migrated_engine
from observatory_pipelines.core.platform.errors import ObservatoryError


def _print(msg: str = "") -> None:
    print(msg, flush=True)


# --- db ---------------------------------------------------------------------------------------


def cmd_db_up(args: argparse.Namespace) -> int:
    url = database.resolve_url(start_embedded=True)
    major = database.server_version(url)
    where = "external (DATABASE_URL)" if database.configured_url() else "embedded"
    _print(f"PostgreSQL {major} ({where}) is up: {database.describe(url)}")
    return 0


def cmd_db_down(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.platform.embedded import EmbeddedPostgres

    if database.configured_url():
        _print("DATABASE_URL points at an external server; observatory does not stop it")
        return 0
    stopped = EmbeddedPostgres().down()
    _print("embedded PostgreSQL stopped" if stopped else "embedded PostgreSQL was not running")
    return 0


def cmd_db_status(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.maintenance import partitions
    from observatory_pipelines.core.platform import migrate
    from observatory_pipelines.core.platform.embedded import EmbeddedPostgres

    if database.configured_url():
        url = database.resolve_url()
        _print(f"database: external {database.describe(url)}")
    else:
        status = EmbeddedPostgres().status()
        state = "running" if status.running else ("stopped" if status.initialised else "not created")
        _print(f"database: embedded, {state} ({status.pgdata})")
        if not status.running:
            _print("start it with: observatory db up")
            return 3
        url = database.resolve_url(start_embedded=False)
    _print(f"server version: PostgreSQL {database.server_version(url)}")
    revision = migrate.current(url)
    head = migrate.head()
    _print(
        f"schema: {revision or 'not migrated'}"
        + ("" if revision == head else f" (head is {head}; run: observatory db migrate)")
    )
    if revision:
        engine = database.make_engine(url)
        try:
            health = partitions.partition_health(engine)
            with engine.connect() as conn:
                found = sorted(partitions.existing_months(conn))
        finally:
            engine.dispose()
        span = f"{found[0]} … {found[-1]} ({len(found)})" if found else "none"
        _print(f"monthly partitions: {span}")
        if not health.next_month_exists:
            _print(
                f"warning: next month's partition ({health.next_month}) is missing; run: observatory partitions ensure"
            )
        if health.default_rows:
            parked = ", ".join(f"{m}: {n}" for m, n in health.default_rows.items())
            _print(f"warning: rows in the default partition ({parked}); run: observatory partitions ensure")
    return 0


def cmd_db_url(args: argparse.Namespace) -> int:
    _print(database.resolve_url(start_embedded=not database.configured_url() and args.start))
    return 0


def cmd_db_migrate(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.platform import migrate

    url = database.resolve_url()
    database.server_version(url)
    before = migrate.current(url)
    migrate.upgrade(url, args.revision)
    after = migrate.current(url)
    _print(f"schema at {after}" + ("" if before == after else f" (was {before or 'empty'})"))
    return 0


# --- partitions -------------------------------------------------------------------------------


def _month_arg(value: str) -> str:
    try:
        months.parse_month(value)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return value


def _slug_arg(value: str) -> str:
    from observatory_pipelines.core.collection.designs import InvalidSlug, check_slug

    try:
        return check_slug(value)
    except InvalidSlug as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def _months_ahead_arg(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        n = -1
    if not 0 <= n <= 120:
        raise argparse.ArgumentTypeError(f"'{value}' is not a number of months between 0 and 120")
    return n


def cmd_partitions_ensure(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.maintenance import partitions, retention

    first_month = args.first_month or retention.default_first_month()
    with migrated_engine() as engine:
        result = partitions.ensure_partitions(engine, first_month=first_month, months_ahead=args.months_ahead)
    if result.created:
        _print("created: " + ", ".join(months.partition_name(m) for m in result.created))
    for month, n in result.moved_rows.items():
        _print(f"moved {n} rows from the default partition into {months.partition_name(month)}")
    _print(f"{len(result.created)} created, {len(result.existing)} already there")
    return 0


def cmd_partitions_list(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.maintenance import partitions

    with migrated_engine() as engine:
        with engine.connect() as conn:
            for info in partitions.list_partitions(conn):
                _print(f"{info.name}\t{info.bound}")
            parked = partitions.default_partition_months(conn)
    for month, n in parked.items():
        _print(f"warning: {n} rows for {month} wait in the default partition; run: observatory partitions ensure")
    return 0


# --- run and demo -----------------------------------------------------------------------------


def _print_report(report) -> None:
    _print(f"\ncorpus '{report.design}', {report.month} (Dagster runs {', '.join(report.run_ids)})")
    _print(f"  {'asset':<22} {'new':>7} {'updated':>8} {'same':>7} {'rejected':>9} {'filtered':>9} {'credits':>8}")
    for asset in report.assets:
        m = asset.metadata
        if asset.arena is None:
            continue
        if not asset.succeeded:
            _print(f"  {asset.asset:<22} FAILED: {asset.error}")
        elif m.get("status") == "skipped":
            _print(f"  {asset.asset:<22} skipped: {m.get('summary', '')}")
        else:
            filtered = sum((m.get("records_filtered") or {}).values())
            _print(
                f"  {asset.asset:<22} {m.get('records_new', 0):>7} {m.get('records_updated', 0):>8} "
                f"{m.get('records_unchanged', 0):>7} {m.get('records_rejected', 0):>9} {filtered:>9} "
                f"{m.get('credits_spent', 0):>8}"
            )
    for asset in report.assets:
        if asset.arena is not None:
            continue
        if asset.succeeded:
            _print(f"  {asset.asset:<28} {asset.metadata.get('summary') or _summary(asset.metadata)}")
        else:
            _print(f"  {asset.asset:<28} FAILED: {asset.error}")


def _summary(metadata: dict) -> str:
    """A short line from an analysis asset's numeric metadata."""
    numbers = [
        f"{k.replace('_', ' ')} {v}"
        for k, v in metadata.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    ]
    return ", ".join(numbers[:4]) or "done"


def _run_corpus(month: str, design: str, arenas=None, salt: str | None = None, identity: str | None = None) -> int:
    from observatory_pipelines.definitions import defs
    from observatory_pipelines.defs import local_run
    from observatory_pipelines.defs.resources import for_this_process

    url = database.resolve_url()
    instance = local_run.project_instance(url)
    resources = for_this_process(url, salt)
    report = local_run.materialize_corpus(
        month, design, instance=instance, defs=defs, resources=resources, arenas=arenas, export_identity=identity
    )
    _print_report(report)
    if report.failed:
        names = ", ".join(a.asset for a in report.failed)
        print(f"observatory: error: {len(report.failed)} asset(s) failed: {names}", file=sys.stderr)
        return 1
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.platform import migrate

    url = database.resolve_url()
    if migrate.current(url) != migrate.head():
        raise ObservatoryError(f"the database at {database.describe(url)} is not migrated; run: observatory db migrate")
    if args.identity:
        _check_export_identity(url, args.design, args.month, args.identity)
    return _run_corpus(args.month, args.design, arenas=args.arena, salt=_local_salt(), identity=args.identity)


def _check_export_identity(url: str, slug: str, month: str, identity: str) -> None:
    """Refuse, before anything runs, exports the design may not have (identified without a recorded basis)."""
    from observatory_pipelines.core.collection import designs
    from observatory_pipelines.core.exports import identity as export_identity

    engine = database.make_engine(url)
    try:
        with engine.connect() as conn:
            export_identity.for_corpus(conn, designs.find_corpus(conn, slug, month), identity)
    finally:
        engine.dispose()


def _local_salt() -> str | None:
    """Without PSEUDONYMIZATION_SALT, the salt this checkout's state keeps (the demo's), said in one
    line; ``None`` when there is none, and collection then refuses as it always does."""
    from observatory_pipelines.core.collection import privacy
    from observatory_pipelines.core.platform import paths

    if settings.current().salt is not None:
        return None
    state = paths.state_dir()
    salt = privacy.kept_salt(state)
    if salt:
        print(
            f"observatory: {SALT_VARIABLE} is unset; pseudonymising with the salt kept in "
            f"{privacy.kept_salt_path(state)}",
            file=sys.stderr,
        )
    return salt


def cmd_demo(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.maintenance import partitions
    from observatory_pipelines.core.platform import migrate, paths
    from observatory_pipelines.demo import seed as demo

    url = database.resolve_url()
    database.server_version(url)
    migrate.upgrade(url)
    engine = database.make_engine(url)
    try:
        partitions.ensure_partitions(engine)
        seeded = demo.seed(engine, paths.import_dir())
    finally:
        engine.dispose()
    salt = demo.demo_salt(paths.state_dir())
    _print(f"demo design '{demo.DESIGN_SLUG}' ready; import files in {seeded.import_folder}")
    status = _run_corpus(args.month, demo.DESIGN_SLUG, salt=salt)
    _print_demo_exports(demo.DEMO_EMAIL, demo.DESIGN_SLUG, args.month)
    if args.no_ui:
        return status
    os.environ[SALT_VARIABLE] = salt  # so runs launched from the UI pseudonymise the same way
    engine = database.make_engine(url)
    try:
        password = demo.set_portal_password(engine)
    finally:
        engine.dispose()
    portal_url = f"http://{args.host}:{args.portal_port}"
    _start_portal(url, args.host, args.portal_port, portal_url)
    _print("")
    _print(f"Researcher portal on {portal_url}: sign in as {demo.DEMO_EMAIL} with password {password}")
    _print(
        f"Dagster UI below: Assets → collection → collect_rss_feeds → partition {demo.DESIGN_SLUG}|{args.month} "
        "shows what was collected. Ctrl-C stops both."
    )
    return cmd_ui(argparse.Namespace(host=args.host, port=args.port))


def _start_portal(url: str, host: str, port: int, portal_url: str) -> None:
    """The portal in a child process, beside the Dagster UI that replaces this one; Ctrl-C in the
    terminal reaches both, as they share its process group."""
    import subprocess

    env = {**os.environ, "DATABASE_URL": url, "OBSERVATORY_PORTAL_URL": portal_url}
    argv = [sys.executable, "-m", "observatory_pipelines.cli", "portal", "--host", host, "--port", str(port)]
    subprocess.Popen(argv, env=env)


def _print_demo_exports(email: str, slug: str, month: str) -> None:
    """Where the demo corpus's exports are, and the commands that fetch them."""
    from observatory_pipelines.core.exports import access as export_access
    from observatory_pipelines.core.platform import storage

    store = storage.store_from_env()
    engine = database.make_engine(database.resolve_url())
    try:
        viewer = export_access.viewer_for(engine, email)
        found = [e for e in export_access.list_exports(engine, store, viewer) if (e.design, e.month) == (slug, month)]
    finally:
        engine.dispose()
    if not found:
        _print(f"\nno exports of '{slug}' {month} were made (see the failures above)")
        return
    _print(f"\nexports of '{slug}' {month}, in {store.describe()}:")
    for item in found:
        rows = "" if item.rows is None else f"{item.rows} rows, "
        _print(f"  {item.file.filename:<36} {rows}{_human_size(item.size)}: {store.uri(item.key)}")
    _print("fetch them with:")
    for fmt in ("csv", "xlsx", "ndjson", "parquet", "gexf", "manifest"):
        _print(f"  observatory exports download --user {email} --design {slug} --month {month} --format {fmt}")


# --- exports ----------------------------------------------------------------------------------

EXPORTS_HELP = (
    "Acts as the user named by --user or OBSERVATORY_USER. This is authorization by the stated user, "
    "for operators acting for a researcher: a researcher sees the exports of the query designs they "
    "own, an admin sees all; nobody is authenticated here."
)


def _exports_user(args: argparse.Namespace) -> str:
    email = (args.user or settings.current().user or "").strip()
    if not email:
        raise ObservatoryError("whose exports? pass --user EMAIL or set OBSERVATORY_USER")
    return email


def _human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{size} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{size} B"  # not reached


def cmd_exports_list(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.exports import access as export_access
    from observatory_pipelines.core.platform import storage

    email = _exports_user(args)
    store = storage.store_from_env()
    with migrated_engine() as engine:
        viewer = export_access.viewer_for(engine, email)
        found = export_access.list_exports(engine, store, viewer)
    if not found:
        whose = "anyone" if viewer.is_admin else viewer.email
        _print(
            f"no exports for {whose} yet; materialize a corpus's export assets in the Dagster UI "
            "(or run: observatory run --month YYYY-MM --design SLUG)"
        )
        return 0
    rows = [
        (
            item.design,
            item.month,
            item.file.filename,
            "?" if item.rows is None else str(item.rows),
            _human_size(item.size),
            item.last_modified.strftime("%Y-%m-%d %H:%M UTC"),
            *((item.owner,) if viewer.is_admin else ()),
        )
        for item in found
    ]
    header = ("design", "month", "file", "rows", "size", "modified", *(("owner",) if viewer.is_admin else ()))
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    right = {3, 4}  # numbers line up on the right
    for row in (header, *rows):
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        _print("  ".join(cells).rstrip())
    return 0


def cmd_exports_download(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.exports import access as export_access
    from observatory_pipelines.core.exports.layout import ExportFile
    from observatory_pipelines.core.platform import storage

    if args.format != "gexf" and (args.network or args.dynamic):
        raise ObservatoryError("--network and --dynamic apply to --format gexf only")
    file = ExportFile(
        args.format,
        network=(args.network or "actor_cooccurrence") if args.format == "gexf" else None,
        dynamic=args.dynamic,
    )
    if args.portal:
        return _download_from_portal(args, file)
    email = _exports_user(args)
    store = storage.store_from_env()
    with migrated_engine() as engine:
        viewer = export_access.viewer_for(engine, email)
        if args.link:
            url = export_access.link(engine, store, viewer, args.design, args.month, file)
            _print(url)
            return 0
        path = export_access.download(engine, store, viewer, args.design, args.month, file, args.to or os.getcwd())
    _print(f"{path} ({_human_size(path.stat().st_size)}, checksum verified)")
    return 0


def _download_from_portal(args: argparse.Namespace, file) -> int:
    from observatory_pipelines.portal import client

    configured = settings.current().token
    token = (args.token or (configured.reveal() if configured else "")).strip()
    if not token:
        raise ObservatoryError(
            "--portal needs a token: pass --token or set OBSERVATORY_TOKEN (create one on the portal)"
        )
    if args.link or args.user:
        raise ObservatoryError("--portal downloads as the token's owner: leave out --user and --link")
    path = client.download(args.portal, token, args.design, args.month, file, args.to or os.getcwd())
    _print(f"{path} ({_human_size(path.stat().st_size)}, checksum verified)")
    return 0


# --- ui ---------------------------------------------------------------------------------------


def cmd_ui(args: argparse.Namespace) -> int:
    """Replace this process with ``dagster dev`` (webserver + daemon) on the project's instance."""
    import shutil

    from observatory_pipelines.core.platform import dagster_home

    url = database.resolve_url()
    env = {**os.environ, **dagster_home.prepare(url)}
    dagster = shutil.which("dagster", path=os.path.dirname(sys.executable)) or shutil.which("dagster")
    if not dagster:
        raise ObservatoryError("the `dagster` command is not installed in this environment; run: ./dev sync")
    argv = [dagster, "dev", "-w", str(dagster_home.workspace_file()), "-h", args.host, "-p", str(args.port)]
    _print(
        f"Dagster UI on http://{args.host}:{args.port} (instance storage: {database.describe(env['DAGSTER_POSTGRES_URL'])})"
    )
    # Run from the Dagster home: Dagster warns about any dagster.yaml in the working directory.
    os.chdir(env["DAGSTER_HOME"])
    os.execve(dagster, argv, env)
    return 0  # not reached


# --- wiring -----------------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Refuses bad arguments in one line on stderr, naming the help to read (argparse's own way
    prints the whole usage first). Subcommands' parsers are of this class too."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}; see: {self.prog} --help\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="observatory",
        description="Run and look after the observatory's pipelines. "
        "Uses DATABASE_URL when set, otherwise an embedded PostgreSQL in .observatory/.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(group, name: str, func: Callable[[argparse.Namespace], int], help: str):
        p = group.add_parser(name, help=help, description=help)
        p.set_defaults(func=func)
        return p

    db = sub.add_parser("db", help="start, stop, inspect and migrate the database").add_subparsers(
        dest="db_command", metavar="ACTION", required=True
    )
    add(db, "up", cmd_db_up, "start the embedded PostgreSQL (or check DATABASE_URL) and create the databases")
    add(db, "down", cmd_db_down, "stop the embedded PostgreSQL")
    add(db, "status", cmd_db_status, "show the server, schema revision and partition health")
    p = add(db, "url", cmd_db_url, "print the content database URL")
    p.add_argument("--no-start", dest="start", action="store_false", help="fail rather than start the embedded server")
    p = add(db, "migrate", cmd_db_migrate, "apply Alembic migrations")
    p.add_argument("--revision", default="head", help="target revision (default: head)")

    parts = sub.add_parser("partitions", help="monthly partitions of content_records").add_subparsers(
        dest="partitions_command", metavar="ACTION", required=True
    )
    p = add(parts, "ensure", cmd_partitions_ensure, "create missing monthly partitions through N months ahead")
    p.add_argument(
        "--months-ahead", type=_months_ahead_arg, default=3, metavar="N", help="months past the current one (default 3)"
    )
    p.add_argument(
        "--first-month",
        type=_month_arg,
        metavar="YYYY-MM",
        help=f"first month to cover (default {months.FIRST_MONTH}, or the oldest month "
        "CONTENT_RETENTION_DAYS keeps if later)",
    )
    add(parts, "list", cmd_partitions_list, "list partitions and their bounds")

    p = add(sub, "run", cmd_run, "materialize one corpus (month x query design) in this process")
    p.add_argument("--month", type=_month_arg, required=True, metavar="YYYY-MM")
    p.add_argument("--design", required=True, type=_slug_arg, metavar="SLUG", help="the query design's slug")
    p.add_argument("--arena", action="append", metavar="NAME", help="only this arena (repeatable)")
    p.add_argument(
        "--identity",
        choices=("pseudonymised", "identified"),
        help="who the exports name (default: what the design records, pseudonymised unless it records a legal "
        "basis); identified is refused without the design's recorded legal basis",
    )

    p = add(
        sub,
        "demo",
        cmd_demo,
        "seed the offline demo, collect its month, then open the researcher portal and Dagster UI",
    )
    p.add_argument("--no-ui", action="store_true", help="stop after collecting (for scripts)")
    p.add_argument("--month", type=_month_arg, default="2026-03", metavar="YYYY-MM")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000, help="the Dagster UI's port (default 3000)")
    p.add_argument("--portal-port", type=int, default=8080, help="the researcher portal's port (default 8080)")

    p = add(sub, "ui", cmd_ui, "start the Dagster webserver and daemon on the project's instance")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=3000)

    exports = sub.add_parser(
        "exports",
        help="list and download corpus exports (as a stated user)",
        description="List and download corpus exports. " + EXPORTS_HELP,
    ).add_subparsers(dest="exports_command", metavar="ACTION", required=True)
    user_help = "act for this user (default: $OBSERVATORY_USER); authorization only, not a login"
    p = add(exports, "list", cmd_exports_list, "list the exports the user may download")
    p.description = "List the exports the user may download. " + EXPORTS_HELP
    p.add_argument("--user", metavar="EMAIL", help=user_help)
    p = add(exports, "download", cmd_exports_download, "download one export file, or print a link to it")
    p.description = "Download one export file (checksum verified), or print a link to it. " + EXPORTS_HELP
    p.add_argument("--design", required=True, type=_slug_arg, metavar="SLUG", help="the query design's slug")
    p.add_argument("--month", type=_month_arg, required=True, metavar="YYYY-MM")
    # Checked by the command, not by choices=: the names live in modules too slow to import for
    # every other command.
    p.add_argument(
        "--format",
        required=True,
        metavar="FORMAT",
        help="csv, xlsx, ndjson or parquet (the content), gexf (a network) or manifest",
    )
    p.add_argument(
        "--network",
        metavar="NAME",
        help="with --format gexf: which network (default actor_cooccurrence; "
        "actor_cooccurrence, term_cooccurrence, actor_term or cross_platform_actors)",
    )
    p.add_argument("--dynamic", action="store_true", help="with --format gexf: the dynamic (time-sliced) graph")
    p.add_argument("--to", metavar="PATH", help="a folder (default: the current one) or a file path")
    p.add_argument(
        "--link", action="store_true", help="print a fresh download link (valid one hour) instead of downloading"
    )
    p.add_argument("--user", metavar="EMAIL", help=user_help)
    p.add_argument("--portal", metavar="URL", help="download through the researcher portal's API (with --token)")
    p.add_argument(
        "--token", metavar="TOKEN", help="a portal API token (better: set OBSERVATORY_TOKEN, which ps does not show)"
    )

    from observatory_pipelines import cli_admin, cli_backup, cli_designs, cli_portal, cli_sources

    cli_backup.register(sub, add)
    cli_designs.register(sub, add)
    cli_admin.register(sub, add)
    cli_sources.register(sub, add)
    cli_portal.register(sub, add)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ObservatoryError as err:
        print(f"observatory: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader stopped early (`observatory exports list | head`): nothing went wrong here.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except ValueError as err:
        print(f"observatory: error: {err}", file=sys.stderr)
        return 2
    except sa_exc.OperationalError as err:
        print(f"observatory: error: {database.unavailable(database.configured_url(), err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
