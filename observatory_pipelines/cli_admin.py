"""``observatory users`` (with portal invitations and passwords), ``observatory credits`` and ``observatory credentials``: an admin's accounts.

Wired into ``cli.build_parser`` through ``register(sub, add)``. The work is done in
``core.accounts`` and ``core.collection.credits``; this module reads arguments and prints. Failures
raise ``ObservatoryError`` (or ``ValueError``), which ``cli.main`` prints as one line.

Secrets are read from stdin when it is not a terminal (``... | observatory credentials add``), else
from a prompt that does not echo. They are never printed, not even in part.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from collections.abc import Sequence
from datetime import date, datetime, timedelta

from observatory_pipelines.core.platform import settings
from observatory_pipelines.core.platform.database import migrated_engine
from observatory_pipelines.core.platform.errors import ConfigError
from observatory_pipelines.core.platform.settings import Secret


def _print(msg: str = "") -> None:
    print(msg, flush=True)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], right: frozenset[int] = frozenset()) -> None:
    widths = [max(len(row[i]) for row in (header, *rows)) for i in range(len(header))]
    for row in (header, *rows):
        cells = [cell.rjust(w) if i in right else cell.ljust(w) for i, (cell, w) in enumerate(zip(row, widths))]
        _print("  ".join(cells).rstrip())


def _when(value: datetime | None) -> str:
    return f"{value:%Y-%m-%d %H:%M} UTC" if value else "-"


def _date_arg(value: str) -> date:
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a date (YYYY-MM-DD)") from None


def _integer_arg(value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{value}' is not a whole number") from None


def _positive_days(value: str) -> int:
    days = _integer_arg(value)
    if not 1 <= days <= 90:
        raise argparse.ArgumentTypeError(f"{days} is not between 1 and 90 days")
    return days


def _read_secret(prompt: str) -> Secret:
    """The secret from stdin when it is piped, else a prompt that does not echo."""
    if sys.stdin is None:
        raise ConfigError("no secret given: pipe it on stdin")
    if sys.stdin.isatty():
        return Secret(getpass.getpass(prompt))
    return Secret(sys.stdin.read())


# --- users ------------------------------------------------------------------------------------------


def cmd_users_add(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.accounts import users

    with migrated_engine() as engine:
        user = users.add_user(engine, args.email, admin=args.admin, name=args.name)
    _print(f"added {user.role} {user.email}" + (f" ({user.display_name})" if user.display_name else ""))
    return 0


def cmd_users_list(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.accounts import users

    with migrated_engine() as engine:
        found = users.list_users(engine)
    if not found:
        _print("no users yet; add one with: observatory users add EMAIL")
        return 0
    rows = [
        (u.email, u.display_name or "-", u.role, "yes" if u.is_active else "no", f"{u.created_at:%Y-%m-%d}")
        for u in found
    ]
    _table(("email", "name", "role", "active", "created"), rows)
    return 0


def cmd_users_deactivate(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.accounts import users

    with migrated_engine() as engine:
        user, was_active = users.deactivate_user(engine, args.email)
    _print(f"deactivated {user.email}" if was_active else f"{user.email} was already deactivated")
    return 0


def _operator() -> str:
    return f"cli:{getpass.getuser()}"


def cmd_users_invite(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.accounts import signin

    with migrated_engine() as engine:
        invitation = signin.invite(engine, args.email, _operator(), lifetime=timedelta(days=args.valid_days))
    base = settings.current().portal_url
    _print(f"invitation for {invitation.email}, valid until {invitation.expires_at:%Y-%m-%d %H:%M} UTC (once):")
    _print(f"{base}/invitation/{invitation.token}")
    return 0


def cmd_users_set_password(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.accounts import signin

    password = _read_secret("new password: ").reveal()
    if sys.stdin is not None and sys.stdin.isatty() and getpass.getpass("again: ") != password:
        raise ConfigError("the two passwords differ; nothing was changed")
    # A piped password ends with the newline echo or a file added; the password itself never does.
    password = password.rstrip("\r\n")
    with migrated_engine() as engine:
        user = signin.set_password(engine, args.email, password)
    _print(f"password set for {user.email}; their other sessions and open invitations have ended")
    return 0


# --- credits ----------------------------------------------------------------------------------------


def _user_id(engine, email: str):
    from observatory_pipelines.core.accounts import users

    with engine.connect() as conn:
        return users.find_user(conn, email)


def cmd_credits_grant(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.collection.credits import CreditError, CreditService

    with migrated_engine() as engine:
        user = _user_id(engine, args.email)
        if not user.is_active:
            raise CreditError(f"{user.email} is deactivated; credits are granted to active users only")
        granted = CreditService(engine).grant(user.id, args.amount, args.valid_from, args.valid_until)
        available = CreditService(engine).available(user.id)
    until = f"through {granted.valid_until}" if granted.valid_until else "with no end"
    _print(f"granted {granted.credits} credits to {user.email}, valid from {granted.valid_from} {until}")
    _print(f"available today: {available}")
    return 0


def cmd_credits_balance(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.collection.credits import CreditService

    with migrated_engine() as engine:
        user = _user_id(engine, args.email)
        balance = CreditService(engine).balance(user.id)
    _print(f"{user.email}, period from {balance.period_start}")
    for label, value in (
        ("allocated", balance.allocated),
        ("reserved", balance.reserved),
        ("settled", balance.settled),
        ("refunded", balance.refunded),
        ("available", balance.available),
    ):
        _print(f"  {label:<10} {value:>10}")
    return 0


def cmd_credits_history(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.collection.credits import CreditService

    with migrated_engine() as engine:
        user = _user_id(engine, args.email)
        page, cursor = CreditService(engine).history(user.id, limit=args.limit, before=args.cursor)
    if not page:
        _print(f"no ledger entries for {user.email}" + (" before this cursor" if args.cursor else ""))
        return 0
    rows = [
        (
            _when(e.created_at),
            e.transaction_type,
            str(e.credits_consumed),
            e.arena or "-",
            " ".join((e.description or "").split()) or "-",
        )
        for e in page
    ]
    _table(("when", "type", "credits", "arena", "description"), rows, right=frozenset({2}))
    if cursor:
        _print(f"more: observatory credits history {user.email} --limit {args.limit} --cursor {cursor}")
    return 0


# --- credentials ------------------------------------------------------------------------------------


def cmd_credentials_new_key(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.accounts import credentials

    _print(credentials.new_key())
    return 0


def cmd_credentials_add(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.accounts import credentials

    # Everything that can be refused without the secret is refused before asking for it.
    key = credentials.CredentialKey.from_settings()
    platform = credentials.check_platform(args.platform)
    name = credentials.check_name(args.name)
    credentials.check_terms(args.tier, args.daily_quota)
    secret = _read_secret(f"secret for {platform}/{name} (API key, or JSON of its fields; not echoed): ")
    with migrated_engine() as engine:
        added = credentials.add_credential(
            engine, key, platform, name, secret, tier=args.tier, daily_quota=args.daily_quota
        )
    quota = f"daily quota {added.daily_quota}" if added.daily_quota is not None else "no daily quota"
    _print(f"added {added.platform} credential {added.name} ({added.tier} tier, {quota}), encrypted")
    return 0


def cmd_credentials_list(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.accounts import credentials
    from observatory_pipelines.core.platform import months

    with migrated_engine() as engine:
        found = credentials.list_credentials(engine)
    if not found:
        _print("no API credentials yet; add one with: observatory credentials add PLATFORM NAME")
        return 0
    now = months.utc()
    rows = [
        (
            c.platform,
            c.name,
            c.tier,
            "yes" if c.is_active else "no",
            f"{c.used_today}/{c.daily_quota if c.daily_quota is not None else '-'}",
            _when(c.last_used_at),
            _when(c.exhausted_until) if c.exhausted_until and c.exhausted_until > now else "-",
            c.last_error or "-",
        )
        for c in found
    ]
    _table(
        ("platform", "name", "tier", "active", "used today", "last used", "exhausted until", "last error"),
        rows,
        right=frozenset({4}),
    )
    return 0


def _set_active(args: argparse.Namespace, active: bool) -> int:
    from observatory_pipelines.core.accounts import credentials

    with migrated_engine() as engine:
        changed = credentials.set_active(engine, args.platform.strip().lower(), args.name.strip(), active)
    _print(f"{'enabled' if active else 'disabled'} {changed.platform} credential {changed.name}")
    return 0


def cmd_credentials_disable(args: argparse.Namespace) -> int:
    return _set_active(args, False)


def cmd_credentials_enable(args: argparse.Namespace) -> int:
    return _set_active(args, True)


REKEY_HELP = (
    "Re-encrypt every credential under a new key, all or nothing in one transaction. The current key is "
    f"{settings.OBSERVATORY_CREDENTIAL_KEY.name}; the new one is read from stdin (or a prompt that does not "
    "echo), e.g.: observatory credentials new-key > new.key; observatory credentials rekey < new.key. "
    f"Then set {settings.OBSERVATORY_CREDENTIAL_KEY.name} to the new key everywhere the pipeline runs."
)


def cmd_credentials_rekey(args: argparse.Namespace) -> int:
    from observatory_pipelines.core.accounts import credentials

    old = credentials.CredentialKey.from_settings()
    given = _read_secret("new credential key (not echoed): ")
    new = credentials.CredentialKey.parse(given, source="the new key on stdin")
    if settings.current().credential_key == Secret(given.reveal().strip()):
        raise ConfigError(f"the new key is the one in {credentials.KEY_VARIABLE}; make a new one with: new-key")
    with migrated_engine() as engine:
        count = credentials.rekey(engine, old, new)
    _print(
        f"re-encrypted {count} credential(s) under the new key; set {credentials.KEY_VARIABLE} to it "
        "before the next run"
    )
    return 0


# --- wiring -----------------------------------------------------------------------------------------


def register(sub, add) -> None:
    """Add ``users``, ``credits`` and ``credentials`` to the ``observatory`` parser."""
    users = sub.add_parser("users", help="add, list and deactivate user accounts").add_subparsers(
        dest="users_command", metavar="ACTION", required=True
    )
    p = add(users, "add", cmd_users_add, "add a user (a researcher, or an admin with --admin)")
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--admin", action="store_true", help="an admin: sees every design and export")
    p.add_argument("--name", metavar="NAME", help="the name shown beside the address")
    add(users, "list", cmd_users_list, "list users, active or not")
    p = add(users, "deactivate", cmd_users_deactivate, "deactivate a user (accounts are never deleted)")
    p.add_argument("email", metavar="EMAIL")
    p = add(users, "invite", cmd_users_invite, "print a one-time link with which the user sets a portal password")
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--valid-days", type=_positive_days, default=7, help="how long the link works (default 7)")
    p = add(users, "set-password", cmd_users_set_password, "set a user's portal password (stdin or a prompt)")
    p.add_argument("email", metavar="EMAIL")

    credits = sub.add_parser("credits", help="grant credits and read a user's balance and ledger").add_subparsers(
        dest="credits_command", metavar="ACTION", required=True
    )
    p = add(credits, "grant", cmd_credits_grant, "allocate credits to a user")
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("amount", metavar="AMOUNT", type=_integer_arg, help="credits, more than 0")
    p.add_argument("--valid-from", type=_date_arg, metavar="YYYY-MM-DD", help="first day (default: today, UTC)")
    p.add_argument("--valid-until", type=_date_arg, metavar="YYYY-MM-DD", help="last day, inclusive (default: none)")
    p = add(credits, "balance", cmd_credits_balance, "what a user has allocated, reserved, spent and available")
    p.add_argument("email", metavar="EMAIL")
    p = add(credits, "history", cmd_credits_history, "a user's ledger, newest first, a page at a time")
    p.add_argument("email", metavar="EMAIL")
    p.add_argument("--limit", type=_integer_arg, default=50, metavar="N", help="entries per page (default 50)")
    p.add_argument("--cursor", metavar="C", help="the cursor the previous page printed")

    creds = sub.add_parser(
        "credentials", help="the arenas' API credentials, encrypted with OBSERVATORY_CREDENTIAL_KEY"
    ).add_subparsers(dest="credentials_command", metavar="ACTION", required=True)
    add(creds, "new-key", cmd_credentials_new_key, "print a new random key for OBSERVATORY_CREDENTIAL_KEY")
    p = add(
        creds, "add", cmd_credentials_add, "add a credential; its secret is read from stdin or a prompt (not echoed)"
    )
    p.add_argument("platform", metavar="PLATFORM")
    p.add_argument("name", metavar="NAME", help="a name for it, unique per platform (no spaces)")
    p.add_argument("--tier", default="free", metavar="T", help="free, medium or premium (default free)")
    p.add_argument("--daily-quota", type=_integer_arg, metavar="N", help="uses per UTC day (default: unlimited)")
    add(creds, "list", cmd_credentials_list, "list credentials, their quota and errors (never a secret)")
    for name, func, text in (
        ("disable", cmd_credentials_disable, "stop the pool from handing out a credential"),
        ("enable", cmd_credentials_enable, "hand out a credential again (clears the error that switched it off)"),
    ):
        p = add(creds, name, func, text)
        p.add_argument("platform", metavar="PLATFORM")
        p.add_argument("name", metavar="NAME")
    p = add(creds, "rekey", cmd_credentials_rekey, "re-encrypt every credential under a new key")
    p.description = REKEY_HELP
