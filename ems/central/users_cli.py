"""``ems users …``: manage accounts of the central service from the command line.

There is no default account; the first admin is made here::

    ems users add --db var/central/users.db --roles admin alice

The password comes from ``--password-file FILE`` (first line), ``--password-stdin``,
the environment variable ``EMS_NEW_PASSWORD``, or an interactive prompt with
confirmation — never from the command line itself (it would show in ``ps``).
Bad input is one line on stderr and exit status 2.  ``--audit-db`` records the
change in the audit log as actor ``cli:<login name>``.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sqlite3
import sys
from pathlib import Path

from ems.errors import UsageError

PASSWORD_ENV = "EMS_NEW_PASSWORD"
DB_ENV = "EMS_USERS_DB"


def add_users_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Add the ``users`` command (add, list, passwd, roles, disable, enable, token, tokens, revoke-token)."""
    p = subparsers.add_parser(
        "users", help="manage users of the central service (the first admin is created here)",
        description="Manage users, roles and API tokens of the central service. No default account exists: "
                    "create the first admin with 'ems users add --db PATH --roles admin NAME'.")
    p.set_defaults(func=run_users)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--db", metavar="PATH", default=os.environ.get(DB_ENV),
                        help=f"users database (SQLite; default: ${DB_ENV})")
    common.add_argument("--audit-db", metavar="PATH", help="also record the change in this audit log")
    pw = argparse.ArgumentParser(add_help=False)
    src = pw.add_mutually_exclusive_group()
    src.add_argument("--password-file", metavar="FILE", help="read the password from the first line of FILE")
    src.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
    sub = p.add_subparsers(dest="users_command", metavar="ACTION", required=True)

    a = sub.add_parser("add", parents=[common, pw], help="create a user",
                       description=f"Create a user. Password: --password-file, --password-stdin, ${PASSWORD_ENV} "
                                   "or a prompt. At least 12 characters, not a common password.")
    a.add_argument("username")
    a.add_argument("--roles", "--role", dest="roles", required=True,
                   help="comma-separated: viewer, operator, municipal, admin")
    a.add_argument("--display-name", default="", help="name shown in the UI and audit log")

    sub.add_parser("list", parents=[common], help="list users").add_argument(
        "--json", action="store_true", help="print JSON instead of a table")

    a = sub.add_parser("passwd", parents=[common, pw], help="set a new password (ends the user's sessions)")
    a.add_argument("username")

    a = sub.add_parser("roles", parents=[common], help="replace a user's roles (ends the user's sessions)")
    a.add_argument("username")
    a.add_argument("--roles", "--role", dest="roles", required=True,
                   help="comma-separated: viewer, operator, municipal, admin")

    a = sub.add_parser("disable", parents=[common], help="disable a user (ends sessions, revokes tokens)")
    a.add_argument("username")
    a = sub.add_parser("enable", parents=[common], help="enable a disabled user")
    a.add_argument("username")

    a = sub.add_parser("token", parents=[common], help="create an API token for a user (printed once)")
    a.add_argument("username")
    a.add_argument("--label", required=True, help="what the token is for, e.g. 'scada bridge'")
    a.add_argument("--ttl-days", type=float, help="expire after this many days (default: until revoked)")

    a = sub.add_parser("tokens", parents=[common], help="list API tokens (without secrets)")
    a.add_argument("username", nargs="?")
    a = sub.add_parser("revoke-token", parents=[common], help="revoke an API token by its id")
    a.add_argument("token_id")
    return p


# -- helpers ----------------------------------------------------------------------
def _read_password(args: argparse.Namespace, confirm: bool = True) -> str:
    if getattr(args, "password_file", None):
        try:
            text = Path(args.password_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--password-file: cannot read {args.password_file}: {exc}") from None
        pw = text.splitlines()[0] if text else ""
        if not pw:
            raise UsageError(f"--password-file: {args.password_file} is empty")
        return pw
    if getattr(args, "password_stdin", False):
        pw = sys.stdin.readline().rstrip("\r\n")
        if not pw:
            raise UsageError("--password-stdin: no password on stdin")
        return pw
    env = os.environ.get(PASSWORD_ENV)
    if env:
        return env
    if not sys.stdin.isatty():
        raise UsageError(f"no password given: use --password-file, --password-stdin, ${PASSWORD_ENV}, "
                         "or run in a terminal to be prompted")
    pw = getpass.getpass(f"New password for {args.username}: ")
    if confirm and getpass.getpass("Repeat the password: ") != pw:
        raise UsageError("the passwords do not match")
    return pw


def _stores(args: argparse.Namespace):
    from ems.central.sessions import SessionStore
    from ems.central.users import UserStore

    if not args.db:
        raise UsageError(f"--db: the users database path is required (or set ${DB_ENV})")
    try:
        return UserStore(args.db), SessionStore(args.db)
    except (sqlite3.Error, OSError) as exc:
        raise UsageError(f"--db: cannot open {args.db}: {exc}") from None


def _audit(args: argparse.Namespace, action: str, target: str, details: dict | None = None) -> None:
    if not args.audit_db:
        return
    from ems.central.audit import AuditLog

    try:
        actor = getpass.getuser()
    except Exception:  # no login name in some containers
        actor = "unknown"
    log = AuditLog(args.audit_db)
    try:
        log.append(f"cli:{actor}", action, target, reason=f"ems users {args.users_command}", details=details)
    finally:
        log.close()


def run_users(args: argparse.Namespace) -> int:
    """Carry out one ``ems users`` action; UsageError (exit 2) for bad input."""
    from ems.central.passwords import PasswordPolicyError
    from ems.central.roles import parse_roles, roles_text
    from ems.central.users import UserError, check_username

    users, sessions = _stores(args)
    cmd = args.users_command
    try:
        if cmd == "list":
            return _list(users, sessions, args.json)
        if cmd == "tokens":
            for t in sessions.list_tokens(args.username):
                state = "revoked" if t.revoked else (f"expires {t.expires_at:%Y-%m-%d}" if t.expires_at else "active")
                print(f"{t.token_id}  {t.username:<20} {state:<18} {t.label}")
            return 0
        if cmd == "revoke-token":
            if not sessions.revoke_token(args.token_id):
                raise UsageError(f"no active token {args.token_id!r}")
            _audit(args, "token_revoked", args.token_id)
            print(f"token {args.token_id} revoked")
            return 0
        username = check_username(args.username)
        if cmd == "add":
            roles = parse_roles(args.roles)
            first = users.count() == 0
            user = users.add(username, _read_password(args), roles, display_name=args.display_name)
            _audit(args, "user_added", username, {"roles": roles_text(user.roles)})
            print(f"user {username} added with roles {roles_text(user.roles)}")
            if first and "admin" not in roles_text(user.roles).split(","):
                print("note: there is no admin yet; add one with --roles admin", file=sys.stderr)
        elif cmd == "passwd":
            if users.get(username) is None:
                raise UserError(f"no user {username!r}")
            users.set_password(username, _read_password(args))
            sessions.revoke_user(username)
            _audit(args, "user_changed", username, {"change": "password"})
            print(f"password of {username} changed; its sessions ended")
        elif cmd == "roles":
            user = users.set_roles(username, parse_roles(args.roles))
            sessions.revoke_user(username)
            _audit(args, "user_changed", username, {"change": "roles", "roles": roles_text(user.roles)})
            print(f"{username} now has roles {roles_text(user.roles)}; its sessions ended")
        elif cmd == "disable":
            users.disable(username)
            n = sessions.revoke_user(username, tokens=True)
            _audit(args, "user_changed", username, {"change": "disabled"})
            print(f"{username} disabled; {n} sessions/tokens ended")
        elif cmd == "enable":
            users.enable(username)
            _audit(args, "user_changed", username, {"change": "enabled"})
            print(f"{username} enabled")
        elif cmd == "token":
            user = users.get(username)
            if user is None or user.disabled:
                raise UserError(f"no enabled user {username!r}")
            if args.ttl_days is not None and args.ttl_days <= 0:
                raise UsageError("--ttl-days: must be positive")
            token = sessions.create_token(username, args.label,
                                          ttl_s=args.ttl_days * 86400 if args.ttl_days is not None else None)
            _audit(args, "token_created", username, {"token_id": token.split("_")[1], "label": args.label})
            print(token)
            print("This token is shown once; store it now. Send it as 'Authorization: Bearer <token>'.",
                  file=sys.stderr)
        return 0
    except (UserError, PasswordPolicyError) as exc:
        raise UsageError(str(exc)) from None
    except ValueError as exc:  # roles, labels
        raise UsageError(str(exc)) from None
    finally:
        users.close()
        sessions.close()


def _list(users, sessions, as_json: bool) -> int:
    from ems.central.roles import roles_text

    rows = users.list()
    if as_json:
        print(json.dumps([{"username": u.username, "roles": sorted(r.value for r in u.roles),
                           "display_name": u.display_name, "disabled": u.disabled,
                           "created_at": u.created_at.isoformat()} for u in rows], ensure_ascii=False, indent=1))
        return 0
    if not rows:
        print("no users")
        return 0
    for u in rows:
        state = "disabled" if u.disabled else "enabled"
        print(f"{u.username:<20} {roles_text(u.roles):<28} {state:<9} {u.created_at:%Y-%m-%d} {u.display_name}")
    return 0
