"""Audit log: append-only, hash-chained, in SQLite.

Each record's ``hash`` is SHA-256 over the canonical JSON of its fields and
the previous record's hash (the first record chains to 64 zeros), so editing,
inserting or deleting a record in the middle breaks every later link and
:meth:`AuditLog.verify` names the first bad ``seq``.  SQLite triggers refuse
UPDATE and DELETE through SQL as a second fence; someone with the file can
drop them, which the chain still reveals.  Cutting records off the end is
only visible against a head (seq, hash) kept elsewhere: :meth:`AuditLog.head`
gives it, e.g. for a daily note in the operators' log book.
"""

from __future__ import annotations

import csv
import hashlib
import json
import sqlite3
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

from ems.central.users import SqliteStore

GENESIS_HASH = "0" * 64


class Actions:
    """Action names used across the service (other strings are allowed, these are the known ones)."""

    LOGIN = "login"
    LOGIN_FAILED = "login_failed"
    LOGOUT = "logout"
    MODE_SWITCH = "mode_switch"
    DISPATCH = "dispatch"
    ACK = "ack"
    ALARM_ACK = "alarm_ack"
    USER_ADDED = "user_added"
    USER_CHANGED = "user_changed"
    TOKEN_CREATED = "token_created"
    TOKEN_REVOKED = "token_revoked"
    JMA_WARNING = "jma_warning"
    JMA_CANCELLED = "jma_cancelled"


_SCHEMA = """
CREATE TABLE IF NOT EXISTS audit (
    seq       INTEGER PRIMARY KEY,
    time      TEXT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL,
    target    TEXT NOT NULL,
    reason    TEXT NOT NULL,
    details   TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash      TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_action ON audit (action, seq);
CREATE INDEX IF NOT EXISTS audit_target ON audit (target, seq);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""

_COLUMNS = "seq, time, actor, action, target, reason, details, prev_hash, hash"
CSV_FIELDS = ["seq", "time", "actor", "action", "target", "reason", "details", "prev_hash", "hash"]


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry. ``time`` is tz-aware UTC; ``details`` a JSON object; hashes are hex SHA-256."""

    seq: int
    time: datetime
    actor: str
    action: str
    target: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS_HASH
    hash: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values (time as ISO 8601 UTC)."""
        d = asdict(self)
        d["time"] = _time_text(self.time)
        return d


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :meth:`AuditLog.verify`: ``checked`` records read, the first bad seq and what is wrong."""

    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str


def _time_text(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat(timespec="microseconds")


def _canonical(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False)


def record_hash(seq: int, time_text: str, actor: str, action: str, target: str, reason: str,
                details: dict[str, Any], prev_hash: str) -> str:
    """SHA-256 hex of the canonical JSON of the record fields and ``prev_hash`` (how the chain is built)."""
    body = {"seq": seq, "time": time_text, "actor": actor, "action": action, "target": target,
            "reason": reason, "details": details, "prev_hash": prev_hash}
    return hashlib.sha256(_canonical(body).encode("utf-8")).hexdigest()


def _text(name: str, value: Any, max_len: int, required: bool) -> str:
    if not isinstance(value, str):
        raise ValueError(f"audit {name}: text required, got {type(value).__name__}")
    if required and not value.strip():
        raise ValueError(f"audit {name}: must not be empty")
    if len(value) > max_len:
        raise ValueError(f"audit {name}: longer than {max_len} characters")
    return value


def _spreadsheet_safe(value: str) -> str:
    # A cell starting with = + - @ (or a tab/CR) is a formula in Excel/LibreOffice:
    # prefix a quote so an exported reason cannot run anything on an admin's PC.
    return "'" + value if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


class AuditLog(SqliteStore):
    """The audit log in the SQLite file ``db_path`` (created if missing). Thread-safe, multi-process safe."""

    def __init__(self, db_path: str | Path) -> None:
        self.db_path = Path(db_path)
        self._open(self.db_path, _SCHEMA)

    def append(self, actor: str, action: str, target: str, reason: str = "",
               details: dict[str, Any] | None = None, time: datetime | None = None) -> AuditRecord:
        """Add one record chained to the last one and return it; ValueError for unusable fields.

        ``time`` must be tz-aware (default: now); ``details`` a JSON-serialisable dict.
        """
        _text("actor", actor, 200, True)
        _text("action", action, 64, True)
        _text("target", target, 2000, False)
        _text("reason", reason, 4000, False)
        details = dict(details or {})
        try:
            details_text = _canonical(details)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"audit details: not JSON-serialisable ({exc})") from None
        details = json.loads(details_text)  # exactly what a reader will get back
        if time is None:
            time = datetime.now(timezone.utc)
        elif time.tzinfo is None:
            raise ValueError("audit time: must be timezone-aware")
        time_text = _time_text(time)
        # The write lock is taken before reading the head, so two processes
        # appending at once cannot both chain to the same record.
        with self._write_transaction() as db:
            row = db.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
            seq, prev = (row[0] + 1, row[1]) if row else (1, GENESIS_HASH)
            digest = record_hash(seq, time_text, actor, action, target, reason, details, prev)
            db.execute(f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       (seq, time_text, actor, action, target, reason, details_text, prev, digest))
        return AuditRecord(seq=seq, time=datetime.fromisoformat(time_text), actor=actor, action=action,
                           target=target, reason=reason, details=details, prev_hash=prev, hash=digest)

    @staticmethod
    def _record(row: tuple) -> AuditRecord:
        seq, time_text, actor, action, target, reason, details, prev_hash, digest = row
        return AuditRecord(seq=seq, time=datetime.fromisoformat(time_text), actor=actor, action=action,
                           target=target, reason=reason, details=json.loads(details), prev_hash=prev_hash,
                           hash=digest)

    def _query(self, since_seq: int, limit: int | None, action: str | None, target: str | None,
               actor: str | None, newest_first: bool) -> list[tuple]:
        where, args = ["seq > ?"], [int(since_seq)]
        for col, value in (("action", action), ("target", target), ("actor", actor)):
            if value is not None:
                where.append(f"{col} = ?")
                args.append(value)
        sql = f"SELECT {_COLUMNS} FROM audit WHERE {' AND '.join(where)} ORDER BY seq {'DESC' if newest_first else 'ASC'}"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(0, int(limit)))
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def records(self, since_seq: int = 0, limit: int = 1000, action: str | None = None,
                target: str | None = None, actor: str | None = None,
                newest_first: bool = False) -> list[AuditRecord]:
        """Records with seq > ``since_seq``, oldest first (``newest_first`` for a UI list), filtered exactly."""
        return [self._record(r) for r in self._query(since_seq, limit, action, target, actor, newest_first)]

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record; (0, 64 zeros) when empty."""
        with self._lock:
            row = self._conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    def verify(self) -> VerifyResult:
        """Re-compute the whole chain; the first record that does not fit is reported by seq."""
        with self._lock:
            # A separate connection streams the rows, so a long log is not held in memory at once
            # and appends from other threads only wait for this lock, not for the whole scan.
            reader = sqlite3.connect(f"{self.db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            rows = reader.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq")
            return self._walk(rows)
        finally:
            reader.close()

    @staticmethod
    def _walk(rows) -> VerifyResult:
        checked = 0
        expected_seq, prev = 1, GENESIS_HASH
        for seq, time_text, actor, action, target, reason, details_text, prev_hash, digest in rows:
            checked += 1
            if seq != expected_seq:
                return VerifyResult(False, checked, seq, f"seq {seq} follows {expected_seq - 1}: records missing")
            if prev_hash != prev:
                return VerifyResult(False, checked, seq, f"seq {seq}: prev_hash does not match the hash of seq {seq - 1}")
            try:
                details = json.loads(details_text)
                canonical = _canonical(details) == details_text
            except (TypeError, ValueError):
                return VerifyResult(False, checked, seq, f"seq {seq}: details are not valid JSON")
            fields_ok = all(isinstance(v, str) for v in (time_text, actor, action, target, reason))
            if not fields_ok or not canonical or record_hash(seq, time_text, actor, action, target, reason,
                                                             details, prev_hash) != digest:
                return VerifyResult(False, checked, seq, f"seq {seq}: content does not match its hash (edited)")
            expected_seq, prev = seq + 1, digest
        return VerifyResult(True, checked, None, "")

    def export_csv(self, file_obj: IO[str], since_seq: int = 0, action: str | None = None,
                   target: str | None = None, actor: str | None = None,
                   spreadsheet_safe: bool = True) -> int:
        """Write records as CSV (header + one row per record, oldest first) to a text file; returns the count.

        ``spreadsheet_safe`` prefixes a quote to text cells that a spreadsheet would run as a formula
        (the hashes then no longer re-compute from those cells: export with False to re-verify).
        """
        writer = csv.writer(file_obj, lineterminator="\r\n")
        writer.writerow(CSV_FIELDS)
        n = 0
        for row in self._query(since_seq, None, action, target, actor, False):
            values = [str(v) for v in row]
            if spreadsheet_safe:
                values = [values[0]] + [_spreadsheet_safe(v) for v in values[1:]]
            writer.writerow(values)
            n += 1
        return n
