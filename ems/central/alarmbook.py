"""The central service's book of site alarms: what is active, who acknowledged it, and the history.

Sites publish their active alarms in every state message (``alarms``: the
``Alarm.to_dict()`` list) and alarm events on ``.../alarm``.  The book keeps
one row per alarm id in SQLite: an alarm that disappears from a site's
active list is marked cleared.  Acknowledging is a central act (an operator
saw it); it does not clear the condition at the site.

The central service's own alarms (e.g. a damaged store file it replaced at
start) are kept under the pseudo-site :data:`CENTRAL_SITE`, which no hall
can be called; nobody else clears them, so acknowledging one clears it.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from ems.central.sqlite_recovery import OnRecovered, open_sqlite_or_recover

_SCHEMA = """
CREATE TABLE IF NOT EXISTS alarms (
    id TEXT PRIMARY KEY, site TEXT NOT NULL, code TEXT NOT NULL, severity TEXT NOT NULL, message TEXT NOT NULL,
    raised_at TEXT NOT NULL, cleared_at TEXT, acked_by TEXT, acked_at TEXT, ack_note TEXT
);
CREATE INDEX IF NOT EXISTS alarms_open ON alarms (cleared_at, acked_at);
CREATE INDEX IF NOT EXISTS alarms_site ON alarms (site, raised_at);
"""

SEVERITIES = ("info", "warning", "critical")
#: Site name of the central service's own alarms (a hall id cannot start with '_').
CENTRAL_SITE = "_central"


@dataclass(frozen=True)
class AlarmRecord:
    """One alarm as the center knows it (times ISO 8601 UTC; cleared_at / acked_* None while not)."""

    id: str
    site: str
    code: str
    severity: str
    message: str
    raised_at: str
    cleared_at: str | None
    acked_by: str | None
    acked_at: str | None
    ack_note: str | None

    @property
    def active(self) -> bool:
        return self.cleared_at is None

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "active": self.active}


class AlarmAlreadyAcked(Exception):
    """The alarm was acknowledged before (by ``record.acked_by``)."""

    def __init__(self, record: AlarmRecord):
        super().__init__(f"alarm {record.id} was already acknowledged by {record.acked_by}")
        self.record = record


def _iso(t: datetime) -> str:
    return t.astimezone(timezone.utc).isoformat()


def _clean(site: str, alarm: Any, now: datetime) -> tuple | None:
    """Row values from an alarm dict as a site sends it; None if it is not one."""
    if not isinstance(alarm, dict) or not isinstance(alarm.get("code"), str):
        return None
    raised = alarm.get("raised_at") if isinstance(alarm.get("raised_at"), str) else _iso(now)
    alarm_id = alarm.get("id") if isinstance(alarm.get("id"), str) and alarm.get("id") else f"{site}:{alarm['code']}:{raised}"
    severity = alarm.get("severity") if alarm.get("severity") in SEVERITIES else "warning"
    cleared = alarm.get("cleared_at") if isinstance(alarm.get("cleared_at"), str) else None
    return (f"{site}/{alarm_id}"[:200], site, alarm["code"][:100], severity, str(alarm.get("message") or "")[:1000],
            raised, cleared)


class AlarmBook:
    """Alarms of the whole fleet in SQLite (thread-safe)."""

    def __init__(self, db_path: str | Path, on_recovered: OnRecovered | None = None):
        self._lock = threading.Lock()
        self._db = open_sqlite_or_recover(db_path, _SCHEMA, what="alarm book", on_recovered=on_recovered)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def sync_active(self, site: str, active: Iterable[Any], now: datetime) -> list[str]:
        """Make the book match the site's list of active alarms; returns ids newly seen."""
        rows = [r for r in (_clean(site, a, now) for a in active) if r is not None]
        ids = {r[0] for r in rows}
        new = []
        with self._lock:
            known = {i for (i,) in self._db.execute("SELECT id FROM alarms WHERE site = ? AND cleared_at IS NULL",
                                                    (site,))}
            for r in rows:
                if self._db.execute("SELECT 1 FROM alarms WHERE id = ?", (r[0],)).fetchone() is None:
                    self._db.execute("INSERT INTO alarms (id, site, code, severity, message, raised_at, cleared_at) "
                                     "VALUES (?, ?, ?, ?, ?, ?, NULL)", r[:6])
                    new.append(r[0])
            for gone in known - ids:
                self._db.execute("UPDATE alarms SET cleared_at = ? WHERE id = ?", (_iso(now), gone))
        return new

    def event(self, site: str, alarm: Any, now: datetime) -> str | None:
        """One alarm event from ``.../alarm`` (raised, or cleared when ``cleared_at`` or ``active: false``)."""
        row = _clean(site, alarm, now)
        if row is None:
            return None
        cleared = row[6] or (_iso(now) if alarm.get("active") is False else None)
        with self._lock:
            if self._db.execute("SELECT 1 FROM alarms WHERE id = ?", (row[0],)).fetchone() is None:
                self._db.execute("INSERT INTO alarms (id, site, code, severity, message, raised_at, cleared_at) "
                                 "VALUES (?, ?, ?, ?, ?, ?, ?)", (*row[:6], cleared))
            elif cleared:
                self._db.execute("UPDATE alarms SET cleared_at = COALESCE(cleared_at, ?) WHERE id = ?", (cleared, row[0]))
        return row[0]

    def raise_central(self, code: str, message: str, now: datetime, severity: str = "critical",
                      key: str = "") -> str:
        """Raise an alarm of the central service itself (site :data:`CENTRAL_SITE`); it stays active until
        acknowledged.  ``key`` tells alarms of the same code apart (default: the time).  Returns its id."""
        alarm_id = f"{code}:{key or _iso(now)}"
        self.event(CENTRAL_SITE, {"id": alarm_id, "code": code, "severity": severity, "message": message,
                                  "raised_at": _iso(now)}, now)
        return f"{CENTRAL_SITE}/{alarm_id}"[:200]

    def ack(self, alarm_id: str, user: str, note: str, now: datetime) -> AlarmRecord:
        """Acknowledge an alarm (a central one is cleared too); KeyError if unknown, AlarmAlreadyAcked if
        done before."""
        with self._lock:
            rec = self._get(alarm_id)
            if rec is None:
                raise KeyError(alarm_id)
            if rec.acked_at is not None:
                raise AlarmAlreadyAcked(rec)
            self._db.execute("UPDATE alarms SET acked_by = ?, acked_at = ?, ack_note = ? WHERE id = ?",
                             (user, _iso(now), note, alarm_id))
            if rec.site == CENTRAL_SITE:
                self._db.execute("UPDATE alarms SET cleared_at = COALESCE(cleared_at, ?) WHERE id = ?",
                                 (_iso(now), alarm_id))
            return self._get(alarm_id)  # type: ignore[return-value]

    def get(self, alarm_id: str) -> AlarmRecord | None:
        with self._lock:
            return self._get(alarm_id)

    def _get(self, alarm_id: str) -> AlarmRecord | None:
        row = self._db.execute("SELECT * FROM alarms WHERE id = ?", (alarm_id,)).fetchone()
        return AlarmRecord(*row) if row else None

    def list(self, state: str = "open", site: str | None = None, limit: int = 500) -> list[AlarmRecord]:
        """Alarms newest first.  state: ``open`` (active or not yet acknowledged), ``active``, ``all``."""
        where, args = [], []
        if state == "open":
            where.append("(cleared_at IS NULL OR acked_at IS NULL)")
        elif state == "active":
            where.append("cleared_at IS NULL")
        elif state != "all":
            raise ValueError(f"state must be open, active or all, not {state!r}")
        if site is not None:
            where.append("site = ?")
            args.append(site)
        sql = "SELECT * FROM alarms" + (f" WHERE {' AND '.join(where)}" if where else "")
        sql += " ORDER BY raised_at DESC LIMIT ?"
        with self._lock:
            return [AlarmRecord(*r) for r in self._db.execute(sql, (*args, limit))]

    def active_counts(self) -> dict[str, int]:
        """Number of active alarms per site."""
        with self._lock:
            return dict(self._db.execute("SELECT site, COUNT(*) FROM alarms WHERE cleared_at IS NULL GROUP BY site"))
