"""User accounts in SQLite: scrypt password hashes, roles, disabled flag.

There is no default account: the first admin is created with
``ems users add --db PATH --roles admin NAME`` (see :mod:`ems.central.users_cli`).
The sessions and API tokens of :mod:`ems.central.sessions` may live in the
same database file; when they do, a disabled user's sessions stop working
at once.
"""

from __future__ import annotations

import re
import sqlite3
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Iterable, Iterator

from ems.central.passwords import (
    PasswordPolicyError,
    dummy_verify,
    hash_password,
    needs_rehash,
    verify_password,
)
from ems.central.roles import Role, parse_roles, roles_text
from ems.central.sqlite_recovery import OnRecovered, open_sqlite_or_recover

USERNAME_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{2,31}$")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS users (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    roles         TEXT NOT NULL,
    display_name  TEXT NOT NULL DEFAULT '',
    disabled      INTEGER NOT NULL DEFAULT 0,
    created_at    TEXT NOT NULL,
    password_changed_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS user_prefs (
    username TEXT PRIMARY KEY REFERENCES users (username) ON DELETE CASCADE,
    language TEXT
);
"""
#: Languages of the dashboard (ems/central/static/i18n/<language>.json).
LANGUAGES = ("ja", "en")


class UserError(ValueError):
    """A request about users that cannot be done (bad name, duplicate, unknown user, last admin); message says why."""


class UnknownUserError(UserError):
    """No user with that name."""


@dataclass(frozen=True)
class User:
    """A user as the service sees it (never the password hash). created_at is tz-aware UTC."""

    username: str
    roles: frozenset[Role]
    display_name: str
    disabled: bool
    created_at: datetime


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class SqliteStore:
    """Base of the central SQLite stores: one connection shared by threads, serialised by a lock."""

    def _open(self, db_path: str | Path, schema: str, what: str = "store",
              on_recovered: OnRecovered | None = None) -> None:
        """Open (creating) ``db_path`` and apply ``schema`` (CREATE ... IF NOT EXISTS statements).

        A damaged file is moved aside and a fresh one started (ems.central.sqlite_recovery); ``what``
        names the store in the log, ``on_recovered`` hears of it.
        """
        self.db_path = Path(db_path)
        self._lock = threading.Lock()
        self._conn = open_sqlite_or_recover(self.db_path, schema, what=what, on_recovered=on_recovered)

    def close(self) -> None:
        """Close the database connection."""
        with self._lock:
            self._conn.close()

    @contextmanager
    def _write_transaction(self) -> Iterator[sqlite3.Connection]:
        """Hold the lock and SQLite's write lock (BEGIN IMMEDIATE: read-then-write is atomic even
        across processes); commit on success, roll back on any exception."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise


def check_username(username: str) -> str:
    """``username`` when it matches ``^[a-z0-9][a-z0-9._-]{2,31}$``, else UserError."""
    if not isinstance(username, str) or not USERNAME_RE.fullmatch(username):
        raise UserError(f"invalid user name {username!r}: 3-32 characters a-z 0-9 . _ -, starting with a letter or digit")
    return username


class UserStore(SqliteStore):
    """Users in the SQLite file ``db_path`` (created if missing). Thread-safe."""

    def __init__(self, db_path: str | Path, clock: Callable[[], datetime] = _utcnow,
                 on_recovered: OnRecovered | None = None) -> None:
        self.db_path = Path(db_path)
        self._clock = clock
        self._open(self.db_path, _SCHEMA, "users store", on_recovered)

    # -- reading ---------------------------------------------------------
    @staticmethod
    def _user(row: tuple) -> User:
        username, roles, display_name, disabled, created_at = row
        return User(username=username, roles=parse_roles(roles), display_name=display_name,
                    disabled=bool(disabled), created_at=datetime.fromisoformat(created_at))

    _COLUMNS = "username, roles, display_name, disabled, created_at"

    def get(self, username: str) -> User | None:
        """The user called ``username``, or None."""
        if not isinstance(username, str):
            return None
        with self._lock:
            row = self._conn.execute(f"SELECT {self._COLUMNS} FROM users WHERE username = ?", (username,)).fetchone()
        return self._user(row) if row else None

    def list(self) -> list[User]:
        """All users, sorted by name."""
        with self._lock:
            rows = self._conn.execute(f"SELECT {self._COLUMNS} FROM users ORDER BY username").fetchall()
        return [self._user(r) for r in rows]

    def count(self) -> int:
        """Number of users (disabled ones included)."""
        with self._lock:
            return int(self._conn.execute("SELECT COUNT(*) FROM users").fetchone()[0])

    # -- checking a password ------------------------------------------------
    def authenticate(self, username: str, password: str) -> User | None:
        """The user when ``password`` is right and the account enabled, else None.

        Unknown names cost one scrypt as well, so timing does not tell which names exist.
        A hash with outdated parameters is upgraded on a successful login.
        """
        with self._lock:
            row = None
            if isinstance(username, str) and USERNAME_RE.fullmatch(username):
                row = self._conn.execute(
                    f"SELECT {self._COLUMNS}, password_hash FROM users WHERE username = ?", (username,)).fetchone()
        if row is None:
            dummy_verify(password)
            return None
        stored = row[-1]
        if not verify_password(password, stored):
            return None
        user = self._user(row[:-1])
        if user.disabled:
            return None
        if needs_rehash(stored):
            new_hash = hash_password(password, enforce_policy=False)
            with self._lock:
                self._conn.execute("UPDATE users SET password_hash = ? WHERE username = ? AND password_hash = ?",
                                   (new_hash, username, stored))
        return user

    # -- changing ---------------------------------------------------------
    @staticmethod
    def _check_password(username: str, password: str) -> None:
        if isinstance(password, str) and username in password.lower():
            raise PasswordPolicyError("password must not contain the user name")

    def add(self, username: str, password: str, roles: Iterable[Role | str] | str, display_name: str = "") -> User:
        """Create a user; UserError for a bad or taken name, PasswordPolicyError for a weak password."""
        check_username(username)
        role_set = _role_set(roles)
        self._check_password(username, password)
        pw_hash = hash_password(password)
        display_name = _clean_display_name(display_name)
        now = self._clock().astimezone(timezone.utc).isoformat()
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO users (username, password_hash, roles, display_name, disabled, created_at, "
                    "password_changed_at) VALUES (?, ?, ?, ?, 0, ?, ?)",
                    (username, pw_hash, roles_text(role_set), display_name, now, now))
            except sqlite3.IntegrityError:
                raise UserError(f"user {username!r} already exists") from None
        user = self.get(username)
        assert user is not None
        return user

    def set_password(self, username: str, password: str) -> None:
        """Replace the password; UnknownUserError, PasswordPolicyError."""
        self._require(username)
        self._check_password(username, password)
        pw_hash = hash_password(password)
        now = self._clock().astimezone(timezone.utc).isoformat()
        with self._lock:
            self._conn.execute("UPDATE users SET password_hash = ?, password_changed_at = ? WHERE username = ?",
                               (pw_hash, now, username))

    def language(self, username: str) -> str | None:
        """The dashboard language the user chose (``ja`` / ``en``), or None if never chosen."""
        with self._lock:
            row = self._conn.execute("SELECT language FROM user_prefs WHERE username = ?", (username,)).fetchone()
        return row[0] if row and row[0] in LANGUAGES else None

    def set_language(self, username: str, language: str) -> None:
        """Remember the dashboard language of ``username``; UserError for a language we do not have."""
        if language not in LANGUAGES:
            raise UserError(f"language must be one of {', '.join(LANGUAGES)}")
        self._require(username)
        with self._lock:
            self._conn.execute("INSERT INTO user_prefs (username, language) VALUES (?, ?) "
                               "ON CONFLICT (username) DO UPDATE SET language = excluded.language", (username, language))

    def set_roles(self, username: str, roles: Iterable[Role | str] | str) -> User:
        """Replace the roles; refuses to take admin from the last enabled admin."""
        role_set = _role_set(roles)
        with self._write_transaction() as db:
            row = db.execute("SELECT roles, disabled FROM users WHERE username = ?", (username,)).fetchone()
            if row is None:
                raise UnknownUserError(f"no user {username!r}")
            if Role.ADMIN not in role_set and Role.ADMIN in parse_roles(row[0]) and not row[1]:
                self._refuse_last_admin(username)
            db.execute("UPDATE users SET roles = ? WHERE username = ?", (roles_text(role_set), username))
        user = self.get(username)
        assert user is not None
        return user

    def disable(self, username: str) -> None:
        """Disable the account (it cannot log in; its sessions and tokens in the same file stop working).

        Refuses to disable the last enabled admin, which would lock everybody out of user management.
        """
        self._set_disabled(username, True)

    def enable(self, username: str) -> None:
        """Enable a disabled account again."""
        self._set_disabled(username, False)

    def _set_disabled(self, username: str, disabled: bool) -> None:
        with self._write_transaction() as db:
            row = db.execute("SELECT roles, disabled FROM users WHERE username = ?", (username,)).fetchone()
            if row is None:
                raise UnknownUserError(f"no user {username!r}")
            if disabled and not row[1] and Role.ADMIN in parse_roles(row[0]):
                self._refuse_last_admin(username)
            db.execute("UPDATE users SET disabled = ? WHERE username = ?", (int(disabled), username))

    def _refuse_last_admin(self, username: str) -> None:
        """Raise UserError when ``username`` is the only enabled admin (called inside a transaction)."""
        others = [r[0] for r in self._conn.execute(
            "SELECT roles FROM users WHERE disabled = 0 AND username != ?", (username,))]
        if not any(Role.ADMIN in parse_roles(r) for r in others):
            raise UserError(f"{username!r} is the last enabled admin; add another admin first")

    def _require(self, username: str) -> None:
        if self.get(username) is None:
            raise UnknownUserError(f"no user {username!r}")


def _role_set(roles: Iterable[Role | str] | str) -> frozenset[Role]:
    if isinstance(roles, str):
        return parse_roles(roles)
    return parse_roles([Role(r).value if isinstance(r, Role) else r for r in roles])


def _clean_display_name(name: str) -> str:
    name = " ".join(str(name or "").split())
    if len(name) > 100:
        raise UserError("display name longer than 100 characters")
    return name
