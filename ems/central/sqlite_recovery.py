"""Open a central SQLite store, and start it afresh when its file is damaged.

The central service keeps users and sessions (``users.sqlite``), the audit
log, alarms, local history and the JMA seen set in SQLite files.  One
damaged file (a disk error, a full disk during a checkpoint, a stray copy
over it) must not keep the service, and with it the municipal disaster
switch, from starting.  Every store opens its file here: a file that is not
a database, fails ``PRAGMA quick_check`` or has a layout the store cannot
use is moved aside as ``<name>.corrupt-<UTC time>`` (with its -wal/-shm/
-journal, for inspection), a fresh one is started, the problem is logged
naming the file, and ``on_recovered`` hears of it (the service raises a
central alarm, see :meth:`ems.central.alarmbook.AlarmBook.raise_central`).
Errors that are not damage (locked, no permission, disk full) are raised as
before: moving the file would not help them.

The checking and moving is :func:`telemetry.sqlite_recovery.open_store`,
the same code the gateway's outbox and replay stores use.
"""

from __future__ import annotations

import logging
import sqlite3
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Sequence

from telemetry.sqlite_recovery import Recovery, open_store

__all__ = ["OnRecovered", "Recovery", "open_sqlite_or_recover", "raise_store_alarms", "store_alarm"]

log = logging.getLogger(__name__)

#: Told when a damaged store was replaced by a fresh one.
OnRecovered = Callable[[Recovery], None]

#: Pragmas of the stores that many threads and processes use.
WAL = ("journal_mode=WAL", "busy_timeout=5000")


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def open_sqlite_or_recover(path: str | Path, schema: str, *, what: str, on_recovered: OnRecovered | None = None,
                           pragmas: Sequence[str] = WAL, timeout: float = 5.0) -> sqlite3.Connection:
    """A connection to the store ``path`` (shared by threads under the store's lock, autocommit) with
    ``pragmas`` set and ``schema`` (CREATE ... IF NOT EXISTS statements) applied.

    A damaged file is moved aside and a fresh store started (see the module docstring); ``what`` names
    the store in the log line, ``on_recovered(recovery)`` is then called.  sqlite3.Error or OSError for
    problems that are not damage.
    """

    def prepare(db: sqlite3.Connection) -> None:
        for pragma in pragmas:
            db.execute(f"PRAGMA {pragma}")
        db.executescript(schema)

    db, _, recovery = open_store(Path(path), prepare, what=what, now=_utcnow, timeout=timeout)
    if recovery is not None and on_recovered is not None:
        on_recovered(recovery)
    return db


#: What a fresh store means, by file name: (severity, what the operator should know).
_CONSEQUENCES = {
    "users.sqlite": ("critical", "there are NO USERS now and every session and API token is gone: create the "
                                 "first admin with  ems users add --db {path} --roles admin NAME  (then the others)"),
    "audit.sqlite": ("critical", "the audit records before this are in the moved file; GET /api/audit/verify "
                                 "reports them as cut from this log"),
    "alarms.sqlite": ("warning", "the alarm history and acknowledgements are in the moved file; the halls' "
                                 "active alarms come back with their next state messages"),
    "history.sqlite": ("warning", "the charts start empty; the earlier history is in the moved file"),
    "jma-seen.sqlite": ("warning", "JMA reports still in the feed are read again, as at a first start"),
    "operations.sqlite": ("warning", "the operations list starts empty and commands the previous run sent "
                                     "without an answer are not sent again: check the halls' modes"),
}

#: Alarm code of a damaged store replaced by a fresh one.
STORE_RECOVERED = "store_recovered"


def store_alarm(recovery: Recovery) -> tuple[str, str]:
    """(severity, message) of the central alarm for ``recovery``: what happened and what it means."""
    severity, consequence = _CONSEQUENCES.get(recovery.path.name, ("warning", "its earlier content is in the "
                                                                              "moved file"))
    return severity, (f"{recovery.path} was damaged ({recovery.problem}); moved aside as {recovery.moved_to.name} "
                      f"and a fresh one started: " + consequence.format(path=recovery.path))


def raise_store_alarms(alarms: Any, audit: Any, recoveries: Sequence[Recovery], now: datetime) -> None:
    """Raise a central alarm (``alarms.raise_central``) and write an audit record for each recovery, and
    log it once more, loudly, naming the file (the dashboard shows the alarm once someone can log in)."""
    for recovery in recoveries:
        severity, message = store_alarm(recovery)
        (log.critical if severity == "critical" else log.error)("%s", message)
        alarms.raise_central(STORE_RECOVERED, message, now, severity=severity,
                             key=f"{recovery.path.name}:{recovery.at.strftime('%Y%m%dT%H%M%SZ')}")
        try:
            audit.append("central", STORE_RECOVERED, str(recovery.path), reason=recovery.problem[:4000],
                         details={"moved_to": str(recovery.moved_to), "at": recovery.at.isoformat()})
        except Exception:  # the alarm and the log line are what matter; the audit store had its own say
            log.exception("could not audit the recovery of %s", recovery.path)
