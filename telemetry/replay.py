"""Replay protection for commands, persisted in SQLite.

Every accepted command id is recorded (with a durable commit) before the
command is handed on, and kept until the command expires: after that an
old copy would be refused as expired anyway.  So a restart of the daemon
does not open a window in which a captured command can be replayed.

A command is recorded before it is executed: if the daemon dies in between,
the command is not executed twice (at most once), and the issuer sees no ack
and can send a new command with a new id.

The ack sent for a command is stored with its id, so a QoS 1 redelivery of
the same message (DUP flag, after a broken connection) can be answered with
the original ack instead of a confusing "replayed" refusal.  Either way the
command is not executed again.

A damaged file (not a database, failing ``PRAGMA quick_check``, another
layout) does not stop the gateway: it is moved aside as
``<name>.corrupt-<UTC time>`` (see :mod:`telemetry.sqlite_recovery`), the
ids still readable in it are copied into a fresh store (so they stay
refused), and :attr:`ReplayGuard.recovery` says so for the site's alarm.
Ids that could not be read are forgotten: a captured copy of such a command
could be replayed until it expires.

A store that cannot record (a full disk, an I/O error) raises
:class:`ReplayStoreError`: the command must then be refused, not executed.
"""

from __future__ import annotations

import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from telemetry.commands import Command, CommandRefused
from telemetry.sqlite_recovery import Recovery, check_columns, open_store, read_damaged

PURGE_MARGIN_S = 3600.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    id TEXT PRIMARY KEY,
    expires_at REAL NOT NULL,   -- [s] unix time; the row may go after this
    received_at REAL NOT NULL,  -- [s] unix time
    issued_by TEXT NOT NULL,
    ack TEXT                    -- JSON of the ack sent, once there is one
);
CREATE INDEX IF NOT EXISTS seen_expiry ON seen (expires_at);
"""
_COLUMNS = {"seen": "id, expires_at, received_at, issued_by, ack"}


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _prepare(db: sqlite3.Connection) -> None:
    check_columns(db, _COLUMNS)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")  # a power cut must not forget an accepted id
    db.executescript(_SCHEMA)


def _salvage(damaged: Path, db: sqlite3.Connection) -> int:
    """Copy the seen ids still readable in a damaged file, so they stay refused."""
    rows = [r for r in read_damaged(damaged, f"SELECT {_COLUMNS['seen']} FROM seen")
            if isinstance(r[0], str) and 0 < len(r[0]) <= 64 and isinstance(r[1], (int, float))
            and isinstance(r[2], (int, float)) and isinstance(r[3], str) and (r[4] is None or isinstance(r[4], str))]
    if rows:
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany("INSERT OR IGNORE INTO seen (id, expires_at, received_at, issued_by, ack) "
                           "VALUES (?, ?, ?, ?, ?)", rows)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
    return len(rows)


class ReplayStoreError(Exception):
    """The replay store cannot record a command id (full disk, I/O error): refuse the command."""


class ReplayGuard:
    """Seen command ids of one site, in ``path`` (SQLite, WAL, synchronous FULL).

    now: UTC time for the name of a damaged file moved aside; recovery: set
    when the file was damaged at start (see the module docstring).  Raises
    sqlite3.Error or OSError when the store cannot be opened for another
    reason (locked, no permission).
    """

    def __init__(self, path: str | Path, purge_every: int = 100, now: Callable[[], datetime] = _utcnow):
        self.path = Path(path)
        self.recovery: Recovery | None
        self._db, _, self.recovery = open_store(self.path, _prepare, what="command replay store", now=now,
                                                salvage=_salvage)
        self._lock = threading.Lock()
        self._purge_every = purge_every
        self._since_purge = 0

    def record(self, cmd: Command) -> None:
        """Record ``cmd.id`` as seen; raise CommandRefused('replayed') if it was seen before, and
        ReplayStoreError (naming the command and the cause) if it cannot be recorded."""
        now = cmd.received_at.timestamp()
        with self._lock:
            try:
                self._since_purge += 1
                if self._since_purge >= self._purge_every:
                    self._purge_locked(now)
                try:
                    self._db.execute("INSERT INTO seen (id, expires_at, received_at, issued_by) VALUES (?, ?, ?, ?)",
                                     (cmd.id, cmd.expires_at.timestamp(), now, cmd.issued_by))
                    return
                except sqlite3.IntegrityError:
                    first = self._db.execute("SELECT received_at, ack FROM seen WHERE id = ?", (cmd.id,)).fetchone()
            except (sqlite3.Error, OSError) as exc:
                raise ReplayStoreError(f"cannot record command {cmd.id}: {exc}") from exc
        when = datetime.fromtimestamp(first[0], timezone.utc).isoformat() if first else "earlier"
        refusal = CommandRefused("replayed", f"id {cmd.id!r} was already received at {when}", cmd.id, cmd.kind)
        refusal.original_ack = first[1] if first else None
        raise refusal

    def store_ack(self, command_id: str, ack_json: str) -> None:
        """Keep the ack sent for ``command_id`` (not fsynced: losing it only costs a nicer redelivery answer)."""
        with self._lock:
            self._db.execute("PRAGMA synchronous=NORMAL")
            try:
                self._db.execute("UPDATE seen SET ack = ? WHERE id = ?", (ack_json, command_id))
            finally:
                self._db.execute("PRAGMA synchronous=FULL")

    def seen(self, command_id: str) -> bool:
        """True if ``command_id`` is on record."""
        with self._lock:
            return self._db.execute("SELECT 1 FROM seen WHERE id = ?", (command_id,)).fetchone() is not None

    def purge(self, now: datetime | None = None) -> int:
        """Forget ids whose command has expired; returns how many."""
        with self._lock:
            return self._purge_locked((now or datetime.now(timezone.utc)).timestamp())

    def _purge_locked(self, now_s: float) -> int:
        self._since_purge = 0
        # Keep an hour beyond expiry, so a clock that steps back a little cannot revive a purged id.
        return self._db.execute("DELETE FROM seen WHERE expires_at < ?", (now_s - PURGE_MARGIN_S,)).rowcount

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM seen").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
