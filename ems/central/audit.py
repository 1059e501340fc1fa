"""Audit log: append-only, hash-chained, in SQLite; signed with a key kept outside it.

Each record's ``hash`` is SHA-256 over the canonical JSON of its fields and
the previous record's hash (the first record chains to 64 zeros), so editing,
inserting or deleting a record in the middle breaks every later link and
:meth:`AuditLog.verify` names the first bad ``seq``.  SQLite triggers refuse
UPDATE and DELETE through SQL as a second fence; someone with the file can
drop them.

A SHA chain alone does not stop the holder of the file: he can edit a record
and compute every later hash again, or cut the newest records.  Two things
kept outside the database do:

* the **key** (``audit.key_file`` in central.yaml, at least 32 characters,
  readable by the service only): every record's ``mac`` is
  HMAC-SHA256(key, seq | hash | previous record's mac), so a record changed
  without the key fails at its own seq, and every later record, even with
  all SHA hashes computed again;
* the **head log** (``audit.head_log``), a text file the service only ever
  opens with O_APPEND and writes one line to per signed record
  (``seq<TAB>mac<TAB>time``).  Put it where the database's holder cannot
  rewrite it (``chattr +a`` on it, another disk, a log shipper).  Records
  cut off the end, or cut and written again, show as a head the database
  no longer has.

:meth:`AuditLog.verify` reports what was changed (the first seq whose hash
or MAC does not verify) and what was cut (the head log knows seq N, the
database ends at M < N).  Records appended without the key (``ems users
--audit-db``) carry no MAC; they are listed, and the next signed record
covers their content through its hash chain.
"""

from __future__ import annotations

import csv
import fcntl
import hashlib
import hmac
import json
import logging
import os
import secrets
import sqlite3
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any, Iterator

from ems.central.sqlite_recovery import OnRecovered, Recovery
from ems.central.users import SqliteStore

log = logging.getLogger(__name__)

GENESIS_HASH = "0" * 64
#: Shortest key accepted [characters of the key file's first line].
MIN_KEY_CHARS = 32
#: First words of the head log's first line.
HEAD_LOG_MAGIC = "# ems audit head log v1"
#: First words of the line the service writes when it starts a new database (the old one was corrupt).
HEAD_LOG_NEW_DATABASE = "# new database"
#: The remark written after a line that a crash cut short.
HEAD_LOG_TORN = "# the line above is incomplete: the service stopped while writing it"
#: Problems of one kind listed in a verify report before "... and N more".
_LIST_MAX = 10


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
CREATE TABLE IF NOT EXISTS audit_mac (
    seq       INTEGER PRIMARY KEY,
    mac       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_action ON audit (action, seq);
CREATE INDEX IF NOT EXISTS audit_target ON audit (target, seq);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_mac_no_update BEFORE UPDATE ON audit_mac
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_mac_no_delete BEFORE DELETE ON audit_mac
BEGIN SELECT RAISE(ABORT, 'audit log is append-only'); END;
"""

_COLUMNS = "seq, time, actor, action, target, reason, details, prev_hash, hash"
# Records with their MAC (kept in a table of their own: the audit table is as it was before records
# were signed, and a record without a row there is unsigned).
_SIGNED = ("SELECT a.seq, a.time, a.actor, a.action, a.target, a.reason, a.details, a.prev_hash, a.hash, m.mac "
           "FROM audit a LEFT JOIN audit_mac m ON m.seq = a.seq")
CSV_FIELDS = ["seq", "time", "actor", "action", "target", "reason", "details", "prev_hash", "hash"]


@dataclass(frozen=True)
class AuditRecord:
    """One audit entry. ``time`` is tz-aware UTC; ``details`` a JSON object; hashes are hex SHA-256;
    ``mac`` hex HMAC-SHA256 (None when appended without the key)."""

    seq: int
    time: datetime
    actor: str
    action: str
    target: str
    reason: str
    details: dict[str, Any] = field(default_factory=dict)
    prev_hash: str = GENESIS_HASH
    hash: str = ""
    mac: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-ready values (time as ISO 8601 UTC)."""
        d = asdict(self)
        d["time"] = _time_text(self.time)
        return d


@dataclass(frozen=True)
class VerifyResult:
    """Outcome of :meth:`AuditLog.verify`.

    ``checked`` records read; ``first_bad_seq`` the first seq that is wrong
    (changed, missing or cut) and ``problem`` what is wrong (all problems,
    joined).  ``changed_seq``: the first record whose hash or MAC does not
    verify.  ``cuts``: records the head log knows that the database no
    longer has, each ``{"kind": "tail" | "rewritten" | "replaced", ...,
    "missing": n}``.  ``last_seq``: the database's last seq; ``head_seq``:
    the last seq the head log knows (None without a head log); ``signed``:
    MACs were checked with the key; ``unsigned``: records without a MAC;
    ``notes``: things worth knowing that are not tampering.
    """

    ok: bool
    checked: int
    first_bad_seq: int | None
    problem: str
    changed_seq: int | None = None
    cuts: tuple[dict[str, Any], ...] = ()
    last_seq: int = 0
    head_seq: int | None = None
    signed: bool = False
    unsigned: int = 0
    head_log: str | None = None
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready report (``GET /api/audit/verify``)."""
        d = asdict(self)
        d["cuts"], d["notes"] = [dict(c) for c in self.cuts], list(self.notes)
        return d


class AuditKeyError(ValueError):
    """The audit key or head log cannot be used (missing, unreadable, too short); the message names the file,
    ``field`` the config field (``key_file`` or ``head_log``)."""

    def __init__(self, message: str, field: str = "key_file") -> None:
        super().__init__(message)
        self.field = field


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


def record_mac(key: bytes, seq: int, digest: str, prev_mac: str | None) -> str:
    """HMAC-SHA256 hex of a record: over its ``seq``, its SHA-256 ``digest`` (which covers every field and
    the previous record's hash) and the previous record's MAC ('' when that one has none)."""
    message = f"ems-audit-v1|{seq}|{digest}|{prev_mac or ''}".encode("ascii")
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def key_id(key: bytes) -> str:
    """A short name of ``key`` that does not reveal it (written in the head log, shown by verify)."""
    return hmac.new(key, b"ems-audit-key-id", hashlib.sha256).hexdigest()[:16]


def load_key(path: str | Path) -> bytes:
    """The HMAC key: the first line of ``path`` (at least MIN_KEY_CHARS characters, e.g. 64 hex digits);
    AuditKeyError naming the file and what is wrong."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise AuditKeyError(f"key file {path} does not exist; create it once with "
                            f"'umask 077; python3 -c \"import secrets; print(secrets.token_hex(32))\" > {path}' "
                            "(`ems deploy init` writes one), and keep it: records signed with it verify only with it"
                            ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise AuditKeyError(f"key file {path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from None
    text = text.splitlines()[0].strip() if text else ""
    if len(text) < MIN_KEY_CHARS:
        raise AuditKeyError(f"key file {path}: the key must be at least {MIN_KEY_CHARS} characters "
                            f"(e.g. 64 hex digits), it has {len(text)}")
    if path.stat().st_mode & 0o077:
        log.warning("audit key file %s can be read by other users: chmod 600 it", path)
    return text.encode("utf-8")


def create_key_file(path: str | Path) -> bool:
    """Write a new random key (64 hex digits, mode 0600) to ``path`` unless it exists; True if written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secrets.token_hex(32) + "\n")
    return True


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


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


# ---------------------------------------------------------------------------------------------
# The head log
# ---------------------------------------------------------------------------------------------

class HeadLog:
    """The append-only file of chain heads (see the module docstring): opened once with O_APPEND, one
    ``seq<TAB>mac<TAB>time`` line per signed record, each written and fsynced after the record is
    committed.  ``#`` lines are remarks: the first names the key (:func:`key_id`); ``# new database``
    marks where the service started a new database because the old one was corrupt."""

    def __init__(self, path: str | Path, key: bytes) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        except OSError as exc:
            raise AuditKeyError(f"head log {self.path}: cannot open for appending: {exc.strerror}",
                                "head_log") from None
        size = os.fstat(self._fd).st_size
        if size == 0:
            self._write(f"{HEAD_LOG_MAGIC}\tkey-id={key_id(key)}\tcreated={_time_text(datetime.now(timezone.utc))}")
        elif not self._ends_with_newline():
            # The last run stopped while writing a line: end it, and say so, so that the next line
            # is not glued to the fragment (verify notes the fragment instead of calling it tampering).
            self._write(f"\n{HEAD_LOG_TORN}")

    def _ends_with_newline(self) -> bool:
        try:
            with open(self.path, "rb") as f:
                f.seek(-1, os.SEEK_END)
                return f.read(1) == b"\n"
        except OSError:  # not readable by us: leave it as it is
            return True

    def _write(self, line: str) -> None:
        os.write(self._fd, (line + "\n").encode("utf-8"))
        os.fsync(self._fd)

    def record(self, seq: int, mac: str) -> None:
        """Note that record ``seq`` with ``mac`` is committed."""
        self._write(f"{seq}\t{mac}\t{_time_text(datetime.now(timezone.utc))}")

    def new_database(self, note: str) -> None:
        """Note that the service starts a new, empty database (why, where the old one went)."""
        self._write(f"{HEAD_LOG_NEW_DATABASE}\t{_time_text(datetime.now(timezone.utc))}\t{_one_line(note)}")

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Hold an exclusive lock on the file, so appenders in other processes write their lines in seq order."""
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


@dataclass
class _Epoch:
    """The head log's lines about one database (a new one starts at a ``# new database`` line)."""

    line: int
    note: str = ""
    at: str = ""
    entries: int = 0
    last_seq: int | None = None
    last_mac: str = ""
    max_seq: int = 0
    rewrites: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class _HeadState:
    epochs: list[_Epoch]
    key_ids: set[str]
    bad_lines: list[str]
    torn_tail: bool


def read_head_log(path: Path) -> _HeadState:
    """Parse the head log line by line (memory: a few numbers per database, not per record)."""
    epochs = [_Epoch(line=1)]
    key_ids: set[str] = set()
    bad: list[str] = []
    torn = False
    with open(path, "rb") as f:
        number = 0
        for raw_line in f:
            number += 1
            complete = raw_line.endswith(b"\n")
            text = raw_line.decode("utf-8", "replace").rstrip("\n")
            if text.startswith("#"):
                parts = text.split("\t")
                if text == HEAD_LOG_TORN and bad and bad[-1].startswith(f"line {number - 1}:"):
                    bad.pop()
                    torn = True
                elif text.startswith(HEAD_LOG_MAGIC):
                    key_ids.update(p[len("key-id="):] for p in parts if p.startswith("key-id="))
                elif text.startswith(HEAD_LOG_NEW_DATABASE):
                    epochs.append(_Epoch(line=number, at=parts[1] if len(parts) > 1 else "",
                                         note=parts[2] if len(parts) > 2 else ""))
                continue
            parts = text.split("\t")
            try:
                seq, mac = int(parts[0]), parts[1]
                if seq < 1 or len(mac) != 64 or len(parts) != 3:
                    raise ValueError
                int(mac, 16)
            except (ValueError, IndexError):
                if not complete:  # the last line, cut short by a crash while writing it
                    torn = True
                elif len(bad) < _LIST_MAX:
                    bad.append(f"line {number}: {text[:80]!r}")
                continue
            ep = epochs[-1]
            if ep.last_seq is not None and seq <= ep.last_seq:
                ep.rewrites.append({"line": number, "head_seq": ep.last_seq, "continued_at": seq})
            ep.entries += 1
            ep.last_seq, ep.last_mac, ep.max_seq = seq, mac, max(ep.max_seq, seq)
    return _HeadState(epochs, key_ids, bad, torn)


def open_audit_log(db_path: str | Path, key_file: str | Path | None = None, head_log: str | Path | None = None,
                   on_recovered: OnRecovered | None = None) -> "AuditLog":
    """The service's audit log: signed with the key in ``key_file`` and its heads appended to ``head_log``
    (both or neither).  AuditKeyError naming the file when the key cannot be read or the head log not
    opened.  Without a key the log is only hash-chained, and a warning says what that cannot show."""
    if key_file is None:
        log.warning("audit log %s is not signed (no audit.key_file in the config): an edit with every later "
                    "hash computed again, or cut-off newest records, cannot be detected", db_path)
        return AuditLog(db_path, on_recovered=on_recovered)
    return AuditLog(db_path, load_key(key_file), head_log, on_recovered)


# ---------------------------------------------------------------------------------------------
# The log
# ---------------------------------------------------------------------------------------------

class AuditLog(SqliteStore):
    """The audit log in the SQLite file ``db_path`` (created if missing). Thread-safe, multi-process safe.

    ``key``: the HMAC key (:func:`load_key`); None appends records without a MAC (the SHA chain only).
    ``head_log``: the append-only head file (needs ``key``); None: cuts of the newest records cannot be seen.
    """

    def __init__(self, db_path: str | Path, key: bytes | None = None, head_log: str | Path | None = None,
                 on_recovered: OnRecovered | None = None) -> None:
        if head_log is not None and key is None:
            raise ValueError("an audit head log needs the key")
        if key is not None and len(key) < MIN_KEY_CHARS:
            raise AuditKeyError(f"the audit key must be at least {MIN_KEY_CHARS} characters")
        self.db_path = Path(db_path)
        self._key = key
        self._head: HeadLog | None = None
        self._head_failing = False
        recovered: list[Recovery] = []
        self._open(self.db_path, _SCHEMA, "audit log", recovered.append)
        if head_log is not None:
            try:
                self._head = HeadLog(head_log, key)  # type: ignore[arg-type]
            except BaseException:
                super().close()
                raise
        for recovery in recovered:
            # The records of the damaged file are not in the fresh one: the head log says why, and
            # verify reports the earlier database's records as cut (they are in the moved file).
            if self._head is not None:
                self._head.new_database(f"the database was damaged ({recovery.problem}); "
                                        f"kept as {recovery.moved_to}")
            if on_recovered is not None:
                on_recovered(recovery)

    @property
    def signed(self) -> bool:
        """True when records are signed with a key."""
        return self._key is not None

    @property
    def head_log_path(self) -> Path | None:
        return self._head.path if self._head is not None else None

    def close(self) -> None:
        """Close the database and the head log."""
        super().close()
        if self._head is not None:
            self._head.close()

    @contextmanager
    def _head_locked(self) -> Iterator[None]:
        if self._head is None:
            yield
        else:
            with self._head.locked():
                yield

    def append(self, actor: str, action: str, target: str, reason: str = "",
               details: dict[str, Any] | None = None, time: datetime | None = None) -> AuditRecord:
        """Add one record chained (and signed, with a key) to the last one and return it; ValueError for
        unusable fields.

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
        # The write lock is taken before reading the head, so two processes appending at once cannot
        # both chain to the same record; the head log's lock (taken first) keeps its lines in seq order.
        with self._lock, self._head_locked():
            db = self._conn
            db.execute("BEGIN IMMEDIATE")
            try:
                row = db.execute("SELECT a.seq, a.hash, m.mac FROM audit a LEFT JOIN audit_mac m ON m.seq = a.seq "
                                 "ORDER BY a.seq DESC LIMIT 1").fetchone()
                seq, prev, prev_mac = (row[0] + 1, row[1], row[2]) if row else (1, GENESIS_HASH, None)
                digest = record_hash(seq, time_text, actor, action, target, reason, details, prev)
                mac = record_mac(self._key, seq, digest, prev_mac) if self._key is not None else None
                db.execute(f"INSERT INTO audit ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (seq, time_text, actor, action, target, reason, details_text, prev, digest))
                if mac is not None:
                    # OR REPLACE: a MAC left behind by records someone deleted must not block appending
                    # (the cut itself shows in the head log).
                    db.execute("INSERT OR REPLACE INTO audit_mac (seq, mac) VALUES (?, ?)", (seq, mac))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
            if self._head is not None and mac is not None:
                self._note_head(seq, mac)
        return AuditRecord(seq=seq, time=datetime.fromisoformat(time_text), actor=actor, action=action,
                           target=target, reason=reason, details=details, prev_hash=prev, hash=digest, mac=mac)

    def _note_head(self, seq: int, mac: str) -> None:
        # The record is committed: a head log that cannot be written must not undo it or fail the
        # operation that is audited.  Verify shows signed records the head log does not know.
        assert self._head is not None
        try:
            self._head.record(seq, mac)
        except OSError as exc:
            if not self._head_failing:
                log.error("audit head log %s: cannot append (seq %d and later are not in it until this is "
                          "fixed): %s", self._head.path, seq, exc.strerror)
            self._head_failing = True
            return
        if self._head_failing:
            log.warning("audit head log %s: writing again from seq %d", self._head.path, seq)
            self._head_failing = False

    @staticmethod
    def _record(row: tuple) -> AuditRecord:
        seq, time_text, actor, action, target, reason, details, prev_hash, digest, mac = row
        return AuditRecord(seq=seq, time=datetime.fromisoformat(time_text), actor=actor, action=action,
                           target=target, reason=reason, details=json.loads(details), prev_hash=prev_hash,
                           hash=digest, mac=mac)

    def _query(self, since_seq: int, limit: int | None, action: str | None, target: str | None,
               actor: str | None, newest_first: bool, signed: bool = False) -> list[tuple]:
        where, args = ["a.seq > ?"], [int(since_seq)]
        for col, value in (("action", action), ("target", target), ("actor", actor)):
            if value is not None:
                where.append(f"a.{col} = ?")
                args.append(value)
        select = _SIGNED if signed else f"SELECT {_COLUMNS} FROM audit a"
        sql = f"{select} WHERE {' AND '.join(where)} ORDER BY a.seq {'DESC' if newest_first else 'ASC'}"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(0, int(limit)))
        with self._lock:
            return self._conn.execute(sql, args).fetchall()

    def records(self, since_seq: int = 0, limit: int = 1000, action: str | None = None,
                target: str | None = None, actor: str | None = None,
                newest_first: bool = False) -> list[AuditRecord]:
        """Records with seq > ``since_seq``, oldest first (``newest_first`` for a UI list), filtered exactly."""
        return [self._record(r) for r in self._query(since_seq, limit, action, target, actor, newest_first,
                                                     signed=True)]

    def head(self) -> tuple[int, str]:
        """(seq, hash) of the last record; (0, 64 zeros) when empty."""
        with self._lock:
            row = self._conn.execute("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        return (row[0], row[1]) if row else (0, GENESIS_HASH)

    # -- verification ----------------------------------------------------------------------------
    def verify(self) -> VerifyResult:
        """Check the whole log: the SHA chain, every MAC (with the key) and the database against the head
        log.  The first record that does not fit is reported by seq; records the head log knows and the
        database lacks are reported as cut."""
        with self._lock:
            # A separate connection streams the rows, so a long log is not held in memory at once
            # and appends from other threads only wait for this lock, not for the whole scan.
            reader = sqlite3.connect(f"{self.db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=5.0)
        try:
            # One read transaction: the head comparison sees the same rows as the walk.
            reader.execute("BEGIN")
            rows = reader.execute(f"{_SIGNED} ORDER BY a.seq")
            chain = self._walk(rows, self._key)
            row = reader.execute("SELECT MAX(seq) FROM audit").fetchone()
            last_seq = int(row[0] or 0)
            head = self._check_head(reader, last_seq) if self._head is not None else None
        finally:
            reader.close()
        return self._report(chain, last_seq, head)

    @staticmethod
    def _walk(rows, key: bytes | None = None) -> "_Chain":
        chain = _Chain()
        expected_seq, prev, prev_mac = 1, GENESIS_HASH, None
        for seq, time_text, actor, action, target, reason, details_text, prev_hash, digest, mac in rows:
            chain.checked += 1
            if seq != expected_seq:
                return chain.bad(seq, f"seq {seq} follows {expected_seq - 1}: records missing")
            if prev_hash != prev:
                return chain.bad(seq, f"seq {seq}: prev_hash does not match the hash of seq {seq - 1}")
            try:
                details = json.loads(details_text)
                canonical = _canonical(details) == details_text
            except (TypeError, ValueError):
                return chain.bad(seq, f"seq {seq}: details are not valid JSON")
            fields_ok = all(isinstance(v, str) for v in (time_text, actor, action, target, reason))
            if not fields_ok or not canonical or record_hash(seq, time_text, actor, action, target, reason,
                                                             details, prev_hash) != digest:
                return chain.bad(seq, f"seq {seq}: content does not match its hash (edited)")
            if key is not None:
                if mac is None:
                    chain.unsigned(seq)
                elif not isinstance(mac, str) or not hmac.compare_digest(mac, record_mac(key, seq, digest, prev_mac)):
                    return chain.bad(seq, f"seq {seq}: its MAC does not verify with the key (edited, and the hashes "
                                          f"computed again{' — or this is not the key it was signed with' if chain.signed == 0 else ''})")
                else:
                    chain.signed += 1
            expected_seq, prev, prev_mac = seq + 1, digest, mac
        return chain

    def _check_head(self, reader: sqlite3.Connection, last_seq: int) -> "_HeadCheck":
        assert self._head is not None and self._key is not None
        out = _HeadCheck()
        path = self._head.path
        try:
            state = read_head_log(path)
        except OSError as exc:
            out.problems.append(f"head log {path}: cannot read: {exc.strerror}")
            return out
        mine = key_id(self._key)
        if state.key_ids and mine not in state.key_ids:
            out.problems.append(f"head log {path} was started with key id {', '.join(sorted(state.key_ids))}; "
                                f"the configured key is {mine}: a different key file")
        for text in state.bad_lines:
            out.problems.append(f"head log {path}: unreadable {text} (written by something else than the service)")
        if state.torn_tail:
            out.notes.append(f"head log {path}: a line is incomplete (the service stopped while writing it)")
        for ep, successor in zip(state.epochs, state.epochs[1:]):
            if ep.entries:
                out.cuts.append({"kind": "replaced", "head_seq": ep.max_seq, "db_seq": None, "missing": ep.max_seq,
                                 "line": successor.line, "at": successor.at, "note": successor.note})
        current = state.epochs[-1]
        for rw in current.rewrites[:_LIST_MAX]:
            out.cuts.append({"kind": "rewritten", "head_seq": rw["head_seq"], "db_seq": rw["continued_at"] - 1,
                             "missing": rw["head_seq"] - rw["continued_at"] + 1, "line": rw["line"]})
        if current.last_seq is None:
            out.head_seq = 0
            row = reader.execute("SELECT COUNT(*) FROM audit_mac").fetchone()
            if row[0]:
                out.problems.append(f"head log {path} knows no record, but the database has {row[0]} signed "
                                    "record(s): the head log was replaced or emptied")
            return out
        n, mac = current.last_seq, current.last_mac
        out.head_seq = n
        if n > last_seq:
            out.cuts.append({"kind": "tail", "head_seq": n, "db_seq": last_seq, "missing": n - last_seq})
        else:
            row = reader.execute("SELECT m.mac FROM audit a JOIN audit_mac m ON m.seq = a.seq WHERE a.seq = ?",
                                 (n,)).fetchone()
            if row is None or row[0] is None or not hmac.compare_digest(row[0], mac):
                out.problems.append(f"seq {n}: the database's record is not the one the head log recorded "
                                    "(the log was replaced or rewritten)")
                out.first_bad = n
            later = reader.execute("SELECT COUNT(*) FROM audit a JOIN audit_mac m ON m.seq = a.seq WHERE a.seq > ?",
                                   (n,)).fetchone()[0]
            if later:
                out.notes.append(f"{later} signed record(s) after seq {n} are not in the head log yet "
                                 "(could it be written?)")
        return out

    def _report(self, chain: "_Chain", last_seq: int, head: "_HeadCheck | None") -> VerifyResult:
        problems = [chain.problem] if chain.problem else []
        notes = list(chain.notes())
        cuts: list[dict[str, Any]] = []
        first_bad = chain.first_bad
        head_seq = None
        if head is not None:
            head_seq = head.head_seq
            cuts = head.cuts
            for cut in cuts:
                problems.append(_cut_text(cut))
                if first_bad is None and cut["kind"] != "replaced":
                    first_bad = cut["db_seq"] + 1
            problems += head.problems
            notes += head.notes
            if first_bad is None and head.first_bad is not None:
                first_bad = head.first_bad
        elif self._key is not None:
            notes.append("no head log: records cut off the end cannot be seen")
        else:
            notes.append("not signed (no audit key configured): a record edited with every later hash "
                         "computed again, or the newest records cut off, cannot be seen")
        return VerifyResult(ok=not problems, checked=chain.checked, first_bad_seq=first_bad,
                            problem="; ".join(problems), changed_seq=chain.first_bad, cuts=tuple(cuts),
                            last_seq=last_seq, head_seq=head_seq, signed=self._key is not None,
                            unsigned=chain.unsigned_count,
                            head_log=str(self._head.path) if self._head is not None else None, notes=tuple(notes))

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


@dataclass
class _Chain:
    """What the walk over the database found."""

    checked: int = 0
    first_bad: int | None = None
    problem: str = ""
    signed: int = 0
    unsigned_count: int = 0
    unsigned_ranges: list[list[int]] = field(default_factory=list)

    def bad(self, seq: int, problem: str) -> "_Chain":
        self.first_bad, self.problem = seq, problem
        return self

    def unsigned(self, seq: int) -> None:
        self.unsigned_count += 1
        if self.unsigned_ranges and self.unsigned_ranges[-1][1] == seq - 1:
            self.unsigned_ranges[-1][1] = seq
        else:
            self.unsigned_ranges.append([seq, seq])

    def notes(self) -> list[str]:
        if not self.unsigned_count:
            return []
        ranges = ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in self.unsigned_ranges[:_LIST_MAX])
        more = f" and {len(self.unsigned_ranges) - _LIST_MAX} more ranges" if len(self.unsigned_ranges) > _LIST_MAX else ""
        return [f"{self.unsigned_count} record(s) carry no MAC (written before the key was configured, or by "
                f"'ems users --audit-db'): seq {ranges}{more}; a later signed record covers their content"]


@dataclass
class _HeadCheck:
    """What the comparison with the head log found."""

    head_seq: int | None = None
    cuts: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    first_bad: int | None = None


def _cut_text(cut: dict[str, Any]) -> str:
    if cut["kind"] == "tail":
        return (f"cut: the head log knows seq {cut['head_seq']}, the database ends at seq {cut['db_seq']}: "
                f"{cut['missing']} record(s) missing")
    if cut["kind"] == "rewritten":
        return (f"cut and written again: the head log knew seq {cut['head_seq']}, then the database went on from "
                f"seq {cut['db_seq'] + 1} (head log line {cut['line']}): {cut['missing']} record(s) cut")
    return (f"database replaced at {cut['at'] or '?'} ({cut['note'] or 'no reason given'}): the head log knew "
            f"seq {cut['head_seq']} of the earlier database, which is not in this one")
