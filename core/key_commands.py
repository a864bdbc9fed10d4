"""``distillery keys create | list | revoke``: an operator's whole key lifecycle.

``create`` prints the key alone on stdout (scripts capture it) and what identifies it on stderr; a
revoked or expired key is refused by every API process within ``DISTILLERY_AUTH_CACHE_S``, the time
a checked key is trusted without the database.
"""

from __future__ import annotations

import argparse
import sys
from datetime import datetime


def add_key_commands(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key for a tenant (printed once)")
    create.add_argument("--tenant", required=True)
    create.add_argument("--expires-in", type=_positive_days, metavar="DAYS", help="the key stops working after this many days (fractions allowed)")
    create.set_defaults(operator_command=_create)
    listing = key_commands.add_parser("list", help="list keys (ID, tenant, public prefix, created, expires, state); never the secrets")
    listing.add_argument("--tenant", help="only this tenant's keys")
    listing.set_defaults(operator_command=_list)
    revoke = key_commands.add_parser("revoke", help="revoke a key by its ID (key_…, from 'keys list')")
    revoke.add_argument("key_id")
    revoke.set_defaults(operator_command=_revoke)


def _positive_days(text: str) -> float:
    days = float(text)
    if not days > 0:
        raise argparse.ArgumentTypeError(f"--expires-in must be a positive number of days, not {text}")
    return days


def _stamp(moment: datetime | None) -> str:
    from core.api_keys import as_utc

    return as_utc(moment).isoformat(timespec="seconds") if moment is not None else "-"


def _create(args: argparse.Namespace) -> int:
    from core.api_keys import issue_key
    from core.db import session_scope
    from core.operator_cli import migrate

    migrate()
    with session_scope() as session:
        row, key = issue_key(session, args.tenant, args.expires_in)
        described = f"created {row.id} ({row.prefix}…) for tenant {args.tenant}, expires {_stamp(row.expires_at) if row.expires_at else 'never'}"
    print(key)
    print(described, file=sys.stderr)
    return 0


def _list(args: argparse.Namespace) -> int:
    from core.api_keys import key_state, list_keys
    from core.db import session_scope
    from core.operator_cli import migrate

    migrate()
    with session_scope() as session:
        rows = [(row.id, tenant, row.prefix, _stamp(row.created_at), _stamp(row.expires_at), key_state(row)) for row, tenant in list_keys(session, args.tenant)]
    header = ("ID", "TENANT", "PREFIX", "CREATED", "EXPIRES", "STATE")
    widths = [max(len(str(line[i])) for line in [header, *rows]) for i in range(len(header))]
    for line in [header, *rows]:
        print("  ".join(str(value).ljust(width) for value, width in zip(line, widths, strict=True)).rstrip())
    return 0


def _revoke(args: argparse.Namespace) -> int:
    from core.api_keys import revoke_key
    from core.config import get_settings
    from core.db import session_scope
    from core.operator_cli import migrate

    migrate()
    with session_scope() as session:
        row = revoke_key(session, args.key_id)
        revoked = None if row is None else f"revoked {row.id} ({row.prefix}…) at {_stamp(row.revoked_at)}"
    if revoked is None:
        print(f"no API key has the ID {args.key_id!r}; 'distillery keys list' shows them", file=sys.stderr)
        return 1
    print(f"{revoked}; every API process refuses it within {get_settings().auth_cache_s:g} s (DISTILLERY_AUTH_CACHE_S)", file=sys.stderr)
    return 0
