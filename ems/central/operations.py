"""Operations: what a person (or the JMA service) asked of several halls, and each hall's answer.

A disaster switch, a return to VPP or a VPP dispatch becomes one
:class:`Operation` with one :class:`SiteCommand` per command sent.  Acks
coming back over MQTT are matched by command id; commands without an answer
after the ack timeout are marked ``timeout`` (a late ack still counts).
Kept in memory, bounded: the audit log is the durable record.
"""

from __future__ import annotations

import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

#: Statuses of one command: sent → ok | refused | failed; timeout while no ack came in time.
FINAL = ("ok", "refused", "failed")
KEPT_OPERATIONS = 500


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

    def to_dict(self) -> dict[str, Any]:
        return {"site": self.site, "command_id": self.command_id, "kind": self.kind, "payload": self.payload,
                "sent_at": self.sent_at.isoformat(), "status": self.status,
                "acked_at": self.acked_at.isoformat() if self.acked_at else None,
                "code": self.code, "error": self.error, "outcome": self.outcome}


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


class OperationLog:
    """Recent operations and the command id → operation index (thread-safe)."""

    def __init__(self, ack_timeout: timedelta = timedelta(seconds=30)):
        self.ack_timeout = ack_timeout
        self._lock = threading.Lock()
        self._ops: OrderedDict[str, Operation] = OrderedDict()
        self._by_command: dict[str, tuple[str, int]] = {}

    @staticmethod
    def new_id(now: datetime) -> str:
        return f"op-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(3)}"

    def add(self, op: Operation) -> None:
        with self._lock:
            self._ops[op.id] = op
            for i, c in enumerate(op.commands):
                self._by_command[c.command_id] = (op.id, i)
            while len(self._ops) > KEPT_OPERATIONS:
                _, old = self._ops.popitem(last=False)
                for c in old.commands:
                    self._by_command.pop(c.command_id, None)

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
            status = ack.get("status")
            cmd.status = status if status in FINAL else "failed"
            cmd.acked_at = now
            cmd.code, cmd.error, cmd.outcome = ack.get("code"), ack.get("error"), ack.get("outcome")
            return op, cmd

    def expire(self, now: datetime) -> list[tuple[Operation, SiteCommand]]:
        """Mark commands without an ack after the timeout as ``timeout``; returns those newly marked."""
        out = []
        with self._lock:
            for op in self._ops.values():
                for c in op.commands:
                    if c.status == "sent" and now - c.sent_at > self.ack_timeout:
                        c.status = "timeout"
                        out.append((op, c))
        return out

    def get(self, op_id: str) -> Operation | None:
        with self._lock:
            return self._ops.get(op_id)

    def recent(self, limit: int = 20, kind: str | None = None) -> list[Operation]:
        """Newest first."""
        with self._lock:
            ops = [o for o in reversed(self._ops.values()) if kind is None or o.kind == kind]
        return ops[:limit]
