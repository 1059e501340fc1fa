"""Operations: what a person (or the JMA service) asked of several halls, and each hall's answer.

A disaster switch, a return to VPP or a VPP dispatch becomes one
:class:`Operation` with one :class:`SiteCommand` per command sent.  Acks
coming back over MQTT are matched by command id; commands without an answer
after the ack timeout are marked ``timeout`` (a late ack still counts).

The log is bounded (the latest :data:`KEPT_OPERATIONS`); the audit log is
the permanent record.  Given a file, it is also kept in SQLite, with each
command's envelope as sent, so that a restarted central service still shows
the operations of the event in progress, matches their late acks, and sends
again what may never have reached the broker (:meth:`OperationLog.undelivered`):
a command published while the broker was away waits in the MQTT client's
memory, and a restart in that time would lose it without a trace.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ems.central.sqlite_recovery import OnRecovered, open_sqlite_or_recover

log = logging.getLogger(__name__)

#: Statuses of one command: sent → ok | refused | failed; timeout while no ack came in time.
FINAL = ("ok", "refused", "failed")
#: Command kinds that set a hall's requested mode: a later one replaces an earlier one.
MODE_KINDS = ("mode", "setpoint")
KEPT_OPERATIONS = 500

_SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL UNIQUE,
                                       head TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS commands (op_seq INTEGER NOT NULL REFERENCES operations (seq) ON DELETE CASCADE,
                                     idx INTEGER NOT NULL, body TEXT NOT NULL, PRIMARY KEY (op_seq, idx));
"""


@dataclass
class SiteCommand:
    """One command of an operation: site, command id, kind, payload; status and the ack's details."""

    site: str
    command_id: str
    kind: str
    payload: dict[str, Any]
    sent_at: datetime
    status: str = "sent"
    acked_at: datetime | None = None
    code: str | None = None
    error: str | None = None
    outcome: Any = None
    #: The envelope as published (JSON text) and when it expires: what a restarted service sends again.
    envelope: str = ""
    expires_at: datetime | None = None
    #: Times it was sent again after a restart of the central service.
    resent: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"site": self.site, "command_id": self.command_id, "kind": self.kind, "payload": self.payload,
                "sent_at": self.sent_at.isoformat(), "status": self.status,
                "acked_at": self.acked_at.isoformat() if self.acked_at else None,
                "code": self.code, "error": self.error, "outcome": self.outcome, "resent": self.resent}

    def stored(self) -> dict[str, Any]:
        """:meth:`to_dict` plus what only the store needs (the envelope and its expiry)."""
        return {**self.to_dict(), "envelope": self.envelope,
                "expires_at": self.expires_at.isoformat() if self.expires_at else None}

    @classmethod
    def from_stored(cls, d: dict[str, Any]) -> "SiteCommand":
        return cls(d["site"], d["command_id"], d["kind"], d["payload"], datetime.fromisoformat(d["sent_at"]),
                   d["status"], datetime.fromisoformat(d["acked_at"]) if d.get("acked_at") else None,
                   d.get("code"), d.get("error"), d.get("outcome"), d.get("envelope") or "",
                   datetime.fromisoformat(d["expires_at"]) if d.get("expires_at") else None, int(d.get("resent") or 0))

    def unanswered(self, now: datetime) -> bool:
        """No final ack yet and the site would still take the envelope (not expired)."""
        return (self.status not in FINAL and bool(self.envelope) and self.expires_at is not None
                and now < self.expires_at)


@dataclass
class Operation:
    """kind: disaster | return_to_vpp | dispatch | jma_warning; actor: who asked; reason: why."""

    id: str
    kind: str
    actor: str
    reason: str
    created_at: datetime
    scope: dict[str, Any]
    commands: list[SiteCommand] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)

    def counts(self) -> dict[str, int]:
        out = {"sent": 0, "ok": 0, "refused": 0, "failed": 0, "timeout": 0}
        for c in self.commands:
            out[c.status] = out.get(c.status, 0) + 1
        return out

    @property
    def done(self) -> bool:
        return all(c.status in FINAL for c in self.commands)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "actor": self.actor, "reason": self.reason,
                "created_at": self.created_at.isoformat(), "scope": self.scope, "counts": self.counts(),
                "done": self.done, "commands": [c.to_dict() for c in self.commands], "details": self.details}

    def stored_head(self) -> str:
        """The operation without its commands as JSON text (written once; each command has its own row).
        ValueError for a value that is not JSON (the store then logs it and keeps the operation in memory)."""
        return json.dumps({k: v for k, v in self.to_dict().items() if k not in ("commands", "counts", "done")},
                          allow_nan=False)

    @classmethod
    def from_stored(cls, head: str, commands: list[str]) -> "Operation":
        d = json.loads(head)
        return cls(d["id"], d["kind"], d["actor"], d["reason"], datetime.fromisoformat(d["created_at"]),
                   d["scope"], [SiteCommand.from_stored(json.loads(c)) for c in commands], d.get("details") or {})


def _window(cmd: SiteCommand) -> tuple[datetime, datetime] | None:
    try:
        return datetime.fromisoformat(cmd.payload["start"]), datetime.fromisoformat(cmd.payload["end"])
    except (KeyError, TypeError, ValueError):
        return None


def _replaces(newer: SiteCommand, older: SiteCommand) -> bool:
    """Whether ``newer``, taken by the hall after ``older``, replaces what ``older`` asked for."""
    if older.kind in MODE_KINDS:
        return newer.kind in MODE_KINDS
    if older.kind == "dispatch" and newer.kind == "dispatch":
        a, b = _window(older), _window(newer)
        return a is None or b is None or (b[0] < a[1] and a[0] < b[1])
    return False


class OperationLog:
    """Recent operations and the command id → operation index (thread-safe); kept in the SQLite file
    ``db_path`` too when one is given (a damaged file is moved aside and started afresh, see
    ems.central.sqlite_recovery; a row that cannot be read is skipped with a log line naming it)."""

    def __init__(self, ack_timeout: timedelta = timedelta(seconds=30), db_path: str | Path | None = None,
                 on_recovered: OnRecovered | None = None):
        self.ack_timeout = ack_timeout
        self._lock = threading.Lock()
        self._ops: OrderedDict[str, Operation] = OrderedDict()
        self._by_command: dict[str, tuple[str, int]] = {}
        self._read_back: set[str] = set()  # ids of the operations read from the store (a previous run's)
        self._seq: dict[str, int] = {}  # operation id -> its row in the store
        self._db = None
        if db_path is not None:
            self._db = open_sqlite_or_recover(db_path, _SCHEMA, what="operation log", on_recovered=on_recovered)
            self._load()

    def _load(self) -> None:
        assert self._db is not None
        self._db.execute("PRAGMA foreign_keys = ON")
        heads = self._db.execute("SELECT seq, id, head FROM (SELECT seq, id, head FROM operations ORDER BY seq DESC "
                                 "LIMIT ?) ORDER BY seq", (KEPT_OPERATIONS,)).fetchall()
        bodies: dict[int, list[str]] = {}
        if heads:  # every kept operation's commands in one query
            for op_seq, body in self._db.execute("SELECT op_seq, body FROM commands WHERE op_seq >= ? "
                                                 "ORDER BY op_seq, idx", (heads[0][0],)):
                bodies.setdefault(op_seq, []).append(body)
        for seq, op_id, head in heads:
            try:
                op = Operation.from_stored(head, bodies.get(seq, []))
            except (ValueError, KeyError, TypeError, IndexError) as exc:
                log.error("operation log: operation %s cannot be read (%s: %s); skipped", op_id, type(exc).__name__,
                          exc)
                continue
            self._index(op)
            self._seq[op.id] = seq
            self._read_back.add(op.id)
        if heads:
            try:
                self._db.execute("DELETE FROM operations WHERE seq < ?", (heads[0][0],))
            except Exception as exc:  # a full disk must not keep the service from starting
                log.error("operation log: cannot delete old operations (%s)", exc)

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    # Writes run under self._lock.  A store that cannot be written (full disk) must not lose the command in
    # memory or stop the ack from counting: the operation stays here, only a restart would forget it.
    def _insert(self, op: Operation) -> None:
        if self._db is None:
            return
        try:
            with self._db:
                cur = self._db.execute("INSERT INTO operations (id, head) VALUES (?, ?)", (op.id, op.stored_head()))
                self._seq[op.id] = cur.lastrowid
                self._db.executemany("INSERT INTO commands (op_seq, idx, body) VALUES (?, ?, ?)",
                                     [(cur.lastrowid, i, json.dumps(c.stored(), allow_nan=False))
                                      for i, c in enumerate(op.commands)])
        except Exception as exc:
            log.error("operation log: cannot store %s (%s); it is kept in memory only", op.id, exc)

    def _update(self, op: Operation, idx: int) -> None:
        """Write command ``idx`` of ``op`` again (its status, ack or resend count changed): one small row."""
        seq = self._seq.get(op.id)
        if self._db is None or seq is None:
            return
        try:
            self._db.execute("UPDATE commands SET body = ? WHERE op_seq = ? AND idx = ?",
                             (json.dumps(op.commands[idx].stored(), allow_nan=False), seq, idx))
        except Exception as exc:
            log.error("operation log: cannot store command %s of %s (%s)", op.commands[idx].command_id, op.id, exc)

    def _index(self, op: Operation) -> list[str]:
        """Add ``op`` to memory; returns the ids of operations dropped to stay within the bound."""
        self._ops[op.id] = op
        for i, c in enumerate(op.commands):
            self._by_command[c.command_id] = (op.id, i)
        dropped = []
        while len(self._ops) > KEPT_OPERATIONS:
            _, old = self._ops.popitem(last=False)
            dropped.append(old.id)
            self._read_back.discard(old.id)
            for c in old.commands:
                self._by_command.pop(c.command_id, None)
        return dropped

    @staticmethod
    def new_id(now: datetime) -> str:
        return f"op-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"

    def add(self, op: Operation) -> None:
        with self._lock:
            dropped = self._index(op)
            self._insert(op)
            gone = [self._seq.pop(i) for i in dropped if i in self._seq]
            if self._db is not None and gone:
                try:
                    self._db.executemany("DELETE FROM operations WHERE seq = ?", [(g,) for g in gone])
                except Exception as exc:
                    log.error("operation log: cannot delete old operations (%s)", exc)

    def on_ack(self, ack: dict[str, Any], now: datetime) -> tuple[Operation, SiteCommand] | None:
        """Record an ack; returns (operation, command) if it answers one of ours, else None."""
        cid = ack.get("command_id")
        with self._lock:
            where = self._by_command.get(cid) if isinstance(cid, str) else None
            if where is None:
                return None
            op = self._ops[where[0]]
            cmd = op.commands[where[1]]
            if ack.get("site") not in (None, cmd.site):
                return None  # an ack for our id from another site is not an answer
            if ack.get("code") == "replayed" or (cmd.resent and cmd.status in FINAL):
                # "replayed": a second copy of a command the site had already taken (our resend after a
                # restart, or a broker that restarted from a persistence file older than its delivery and
                # sent it again as new); the site's answer to the first copy is the outcome (it came
                # already or waits in the broker for us).  Command ids are random, so such a refusal is never
                # the answer to a command of ours.  And once a resent command's outcome is known, a refusal
                # of the copy (expired while the hall was away) does not undo it.
                return None
            status = ack.get("status")
            cmd.status = status if status in FINAL else "failed"
            cmd.acked_at = now
            cmd.code, cmd.error, cmd.outcome = ack.get("code"), ack.get("error"), ack.get("outcome")
            self._update(op, where[1])
            return op, cmd

    def expire(self, now: datetime) -> list[tuple[Operation, SiteCommand]]:
        """Mark commands without an ack after the timeout as ``timeout``; returns those newly marked."""
        out = []
        with self._lock:
            for op in self._ops.values():
                for i, c in enumerate(op.commands):
                    if c.status == "sent" and now - c.sent_at > self.ack_timeout:
                        c.status = "timeout"
                        out.append((op, c))
                        self._update(op, i)
        return out

    def undelivered(self, now: datetime) -> list[tuple[Operation, SiteCommand]]:
        """Commands of the operations read from the store (the previous run's) without a final ack whose
        envelope has not expired, oldest first: what may never have left the previous process."""
        with self._lock:
            return [(op, c) for op in self._ops.values() if op.id in self._read_back
                    for c in op.commands if c.unanswered(now)]

    def superseded_by(self, cmd: SiteCommand) -> SiteCommand | None:
        """The latest command that replaces ``cmd`` at its hall, or None: one to the same hall in a later
        operation (the order they were added in, across restarts) that was not refused or failed there,
        and either sets the mode (``cmd`` a mode or setpoint command) or holds a dispatch lease whose time
        overlaps ``cmd``'s (the hall drops an overlapping lease for the newer one).  Sending ``cmd`` again
        after it would undo a newer decision; a refused one changed nothing, so it replaces nothing."""
        with self._lock:
            later, seen = [], False
            for op in self._ops.values():
                if seen:
                    later += [c for c in op.commands if c.site == cmd.site and c.status not in ("refused", "failed")
                              and _replaces(c, cmd)]
                seen = seen or any(c is cmd for c in op.commands)
        return later[-1] if later else None

    def mark_resent(self, op: Operation, cmd: SiteCommand) -> None:
        """``cmd`` was published again (a "replayed" refusal of it is then not its outcome)."""
        with self._lock:
            cmd.resent += 1
            where = self._by_command.get(cmd.command_id)
            if where is not None:  # not dropped by the bound meanwhile
                self._update(op, where[1])

    def get(self, op_id: str) -> Operation | None:
        with self._lock:
            return self._ops.get(op_id)

    def recent(self, limit: int = 20, kind: str | None = None) -> list[Operation]:
        """Newest first."""
        with self._lock:
            ops = [o for o in reversed(self._ops.values()) if kind is None or o.kind == kind]
        return ops[:limit]
