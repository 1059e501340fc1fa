"""Login sessions (cookie), CSRF tokens and API bearer tokens, stored in SQLite.

Only hashes of session ids and API tokens are stored: a copy of the
database does not let anybody log in.  Sessions end after ``ttl_s`` [s]
in any case and after ``idle_s`` [s] without a request.

When the ``users`` table of :mod:`ems.central.users` is in the same file,
each lookup also checks the account: a disabled or deleted user's sessions
and tokens stop working at once, and role changes apply to open sessions.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Callable

from ems.central.roles import Role, parse_roles, roles_text
from ems.central.sqlite_recovery import OnRecovered
from ems.central.users import SqliteStore, User

#: Header the browser sends the CSRF token in (double submit: the page reads it from /api/session).
CSRF_HEADER = "X-CSRF-Token"
#: Cookie names: the ``__Host-`` prefix makes browsers insist on Secure, Path=/ and no Domain.
COOKIE_NAME_SECURE = "__Host-ems_session"
COOKIE_NAME_PLAIN = "ems_session"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id_hash     TEXT PRIMARY KEY,
    username    TEXT NOT NULL,
    roles       TEXT NOT NULL,
    csrf_token  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT NOT NULL,
    last_seen   TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_user ON sessions (username);
CREATE TABLE IF NOT EXISTS api_tokens (
    token_id    TEXT PRIMARY KEY,
    token_hash  TEXT NOT NULL UNIQUE,
    username    TEXT NOT NULL,
    label       TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    expires_at  TEXT,
    last_used   TEXT,
    revoked     INTEGER NOT NULL DEFAULT 0
);
"""

_TOKEN_RE = re.compile(r"^ems_([0-9a-f]{8})_([A-Za-z0-9_-]{43})$")
_SESSION_ID_RE = re.compile(r"^[A-Za-z0-9_-]{43}$")
# last_seen is written at most this often, so that every page poll is not a disk write.
_TOUCH_EVERY = timedelta(seconds=10)


@dataclass(frozen=True)
class Session:
    """One login. ``id`` is the cookie value (known only to the browser and returned once by create/get)."""

    id: str
    csrf_token: str
    username: str
    roles: frozenset[Role]
    expires_at: datetime  # tz-aware UTC
    created_at: datetime
    last_seen: datetime


@dataclass(frozen=True)
class TokenInfo:
    """An API token without its secret: ``token_id`` is the public part shown in listings."""

    token_id: str
    username: str
    label: str
    created_at: datetime
    expires_at: datetime | None
    last_used: datetime | None
    revoked: bool


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _dt(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def cookie_name(secure: bool) -> str:
    """Session cookie name: ``__Host-ems_session`` over HTTPS, ``ems_session`` on plain HTTP (loopback demo)."""
    return COOKIE_NAME_SECURE if secure else COOKIE_NAME_PLAIN


def cookie_kwargs(secure: bool, max_age_s: int | None = None) -> dict:
    """Keyword arguments for Starlette's ``response.set_cookie(name, value, **kwargs)``.

    HttpOnly (scripts cannot read it), SameSite=Strict (not sent on cross-site
    requests), Path=/, Secure when served over HTTPS; ``max_age_s`` [s] None makes
    it a browser-session cookie.
    """
    kwargs: dict = {"httponly": True, "samesite": "strict", "path": "/", "secure": bool(secure)}
    if max_age_s is not None:
        kwargs["max_age"] = int(max_age_s)
    return kwargs


def check_csrf(session: Session | None, header_value: str | None) -> bool:
    """True when ``header_value`` equals the session's CSRF token (constant-time compare)."""
    if session is None or not isinstance(header_value, str) or not header_value:
        return False
    return hmac.compare_digest(session.csrf_token.encode("utf-8"), header_value.encode("utf-8"))


class SessionStore(SqliteStore):
    """Sessions and API tokens in the SQLite file ``db_path``; ttl_s / idle_s [s]. Thread-safe."""

    def __init__(self, db_path: str | Path, ttl_s: float = 8 * 3600, idle_s: float = 1800,
                 clock: Callable[[], datetime] = _utcnow, on_recovered: OnRecovered | None = None) -> None:
        if ttl_s <= 0 or idle_s <= 0:
            raise ValueError("ttl_s and idle_s must be positive [s]")
        self.db_path = Path(db_path)
        self.ttl = timedelta(seconds=ttl_s)
        self.idle = timedelta(seconds=idle_s)
        self._clock = clock
        self._open(self.db_path, _SCHEMA, "sessions store", on_recovered)

    def _now(self) -> datetime:
        return self._clock().astimezone(timezone.utc)

    def _account(self, username: str) -> tuple[bool, frozenset[Role] | None]:
        """(usable, live roles) from a ``users`` table in the same file; (True, None) when there is none."""
        try:
            row = self._conn.execute("SELECT roles, disabled FROM users WHERE username = ?", (username,)).fetchone()
        except sqlite3.OperationalError:  # no users table here: sessions kept apart from users
            return True, None
        if row is None or row[1]:
            return False, None
        return True, parse_roles(row[0])

    # -- sessions -----------------------------------------------------------
    def create(self, user: User) -> Session:
        """A new session for ``user`` (who has just logged in); the returned ``id`` goes into the cookie."""
        if user.disabled:
            raise ValueError(f"user {user.username!r} is disabled")
        session_id = secrets.token_urlsafe(32)
        csrf_token = secrets.token_urlsafe(32)
        now = self._now()
        expires = now + self.ttl
        with self._lock:
            self._conn.execute(
                "INSERT INTO sessions (id_hash, username, roles, csrf_token, created_at, expires_at, last_seen) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (_sha256(session_id), user.username, roles_text(user.roles), csrf_token,
                 now.isoformat(), expires.isoformat(), now.isoformat()))
        return Session(id=session_id, csrf_token=csrf_token, username=user.username, roles=frozenset(user.roles),
                       expires_at=expires, created_at=now, last_seen=now)

    def get(self, session_id: str | None) -> Session | None:
        """The live session for a cookie value, or None (unknown, expired, idle too long, account disabled).

        A good lookup refreshes the idle timer; an expired session is deleted.
        """
        if not isinstance(session_id, str) or not _SESSION_ID_RE.fullmatch(session_id):
            return None
        id_hash = _sha256(session_id)
        now = self._now()
        with self._lock:
            row = self._conn.execute(
                "SELECT username, roles, csrf_token, created_at, expires_at, last_seen FROM sessions WHERE id_hash = ?",
                (id_hash,)).fetchone()
            if row is None:
                return None
            username, roles, csrf_token, created_at, expires_at, last_seen = row
            expires, seen = datetime.fromisoformat(expires_at), datetime.fromisoformat(last_seen)
            usable, live_roles = self._account(username)
            if now >= expires or now - seen >= self.idle or not usable:
                self._conn.execute("DELETE FROM sessions WHERE id_hash = ?", (id_hash,))
                return None
            if now - seen >= _TOUCH_EVERY:
                self._conn.execute("UPDATE sessions SET last_seen = ? WHERE id_hash = ?", (now.isoformat(), id_hash))
                seen = now
        return Session(id=session_id, csrf_token=csrf_token, username=username,
                       roles=live_roles if live_roles is not None else parse_roles(roles),
                       expires_at=expires, created_at=datetime.fromisoformat(created_at), last_seen=seen)

    def revoke(self, session_id: str) -> bool:
        """End one session (logout); True if it existed."""
        if not isinstance(session_id, str):
            return False
        with self._lock:
            cur = self._conn.execute("DELETE FROM sessions WHERE id_hash = ?", (_sha256(session_id),))
            return cur.rowcount > 0

    def revoke_user(self, username: str, tokens: bool = False) -> int:
        """End every session of ``username`` (and with ``tokens=True`` revoke its API tokens); returns the count."""
        with self._lock:
            n = self._conn.execute("DELETE FROM sessions WHERE username = ?", (username,)).rowcount
            if tokens:
                n += self._conn.execute("UPDATE api_tokens SET revoked = 1 WHERE username = ? AND revoked = 0",
                                        (username,)).rowcount
            return n

    def purge_expired(self) -> int:
        """Delete sessions past their expiry or idle limit; returns how many."""
        now = self._now()
        with self._lock:
            return self._conn.execute(
                "DELETE FROM sessions WHERE expires_at <= ? OR last_seen <= ?",
                (now.isoformat(), (now - self.idle).isoformat())).rowcount

    # -- API tokens -----------------------------------------------------------
    def create_token(self, username: str, label: str, ttl_s: float | None = None) -> str:
        """A new API token ``ems_<id>_<secret>`` for ``username``; shown once, only its hash is kept.

        ``ttl_s`` [s] None: valid until revoked.
        """
        label = " ".join(str(label or "").split())
        if not label or len(label) > 100:
            raise ValueError("token label: 1-100 characters required")
        if ttl_s is not None and ttl_s <= 0:
            raise ValueError("token ttl_s must be positive [s]")
        now = self._now()
        expires = (now + timedelta(seconds=ttl_s)).isoformat() if ttl_s is not None else None
        with self._lock:
            usable, _ = self._account(username)
            if not usable:
                raise ValueError(f"no enabled user {username!r}")
            while True:
                token_id = secrets.token_hex(4)
                token = f"ems_{token_id}_{secrets.token_urlsafe(32)}"
                try:
                    self._conn.execute(
                        "INSERT INTO api_tokens (token_id, token_hash, username, label, created_at, expires_at) "
                        "VALUES (?, ?, ?, ?, ?, ?)", (token_id, _sha256(token), username, label, now.isoformat(), expires))
                    return token
                except sqlite3.IntegrityError:  # token id collision: draw again
                    continue

    def token_user(self, token: str | None) -> str | None:
        """The user name an API token belongs to, or None (unknown, revoked, expired, account disabled)."""
        if not isinstance(token, str):
            return None
        m = _TOKEN_RE.fullmatch(token)
        if m is None:
            return None
        now = self._now()
        with self._lock:
            row = self._conn.execute(
                "SELECT token_hash, username, expires_at, revoked, last_used FROM api_tokens WHERE token_id = ?",
                (m.group(1),)).fetchone()
            if row is None:
                return None
            token_hash, username, expires_at, revoked, last_used = row
            if not hmac.compare_digest(token_hash, _sha256(token)) or revoked:
                return None
            if expires_at and now >= datetime.fromisoformat(expires_at):
                return None
            if not self._account(username)[0]:
                return None
            if last_used is None or now - datetime.fromisoformat(last_used) >= _TOUCH_EVERY:
                self._conn.execute("UPDATE api_tokens SET last_used = ? WHERE token_id = ?",
                                   (now.isoformat(), m.group(1)))
        return username

    def revoke_token(self, token_or_id: str) -> bool:
        """Revoke a token given in full or by its id (the 8 hex digits); True if one was revoked."""
        m = _TOKEN_RE.fullmatch(token_or_id or "")
        token_id = m.group(1) if m else token_or_id
        with self._lock:
            return self._conn.execute("UPDATE api_tokens SET revoked = 1 WHERE token_id = ? AND revoked = 0",
                                      (token_id,)).rowcount > 0

    def list_tokens(self, username: str | None = None) -> list[TokenInfo]:
        """Tokens (without secrets), oldest first; only ``username``'s when given."""
        sql = "SELECT token_id, username, label, created_at, expires_at, last_used, revoked FROM api_tokens"
        args: tuple = ()
        if username is not None:
            sql, args = sql + " WHERE username = ?", (username,)
        with self._lock:
            rows = self._conn.execute(sql + " ORDER BY created_at, token_id", args).fetchall()
        return [TokenInfo(token_id=r[0], username=r[1], label=r[2], created_at=datetime.fromisoformat(r[3]),
                          expires_at=_dt(r[4]), last_used=_dt(r[5]), revoked=bool(r[6])) for r in rows]
