"""Durable outbox between the control cycle and the network (SQLite, WAL mode).

Life of a point: :meth:`Outbox.put` serialises it to line protocol and
commits it locally (that is the moment it counts as produced); the shipper
:meth:`~Outbox.fetch`-es the oldest rows, sends them, and only after the
server acknowledged them calls :meth:`~Outbox.ack`, which deletes them.  A
crash (even ``kill -9``) between send and delete re-sends those rows on the
next start; the server overwrites a point with the same series and
timestamp, so re-sending duplicates nothing.

Bounded disk: the stored bytes (line bytes plus a per-row allowance) never
exceed ``max_bytes`` after a ``put``.  Drop policy when full: delete the
oldest rows of the lowest priority first (raw readings, then decisions, then
the alarm/command audit trail) until the store is at ``low_water`` of the
limit; every drop is counted (persistently), raises :attr:`drop_alarm` and
calls ``on_drop``.

Durability: ``fsync=False`` (default) uses ``synchronous=NORMAL``: a
committed point survives any process crash, a power cut may lose the last
moments.  ``fsync=True`` (``synchronous=FULL``) survives power cuts at the
cost of one fsync per ``put``.

A damaged file (not a database, failing ``PRAGMA quick_check``, a schema
this code cannot use) does not stop the gateway: it is moved aside as
``<name>.corrupt-<UTC time>`` with its -wal/-shm, a fresh outbox is started
and :meth:`Outbox.alarm_conditions` reports it (see
:mod:`telemetry.sqlite_recovery`).  The points in the damaged file are not
sent; the copy is kept for a person to look at.

Thread-safety: one connection guarded by a lock; ``put`` is called from the
control loop, ``fetch``/``ack`` from the shipper's worker thread.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

from telemetry.schema import Priority, TelemetryPoint
from telemetry.sqlite_recovery import (Recovery, StoreCondition, StoreDamaged, check_columns, open_store,
                                        utc_from_unix)

log = logging.getLogger(__name__)

#: Bytes counted per row on top of the line itself (row header, id, priority,
#: time, index entry), so the limit tracks the file size reasonably well.
ROW_OVERHEAD_BYTES = 48

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,  -- AUTOINCREMENT: ids never reused, so ranges stay valid
    priority INTEGER NOT NULL,
    created REAL NOT NULL,                 -- [s] unix time of the put
    nbytes INTEGER NOT NULL,
    line TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS outbox_drop_order ON outbox (priority, id);
CREATE TABLE IF NOT EXISTS rejected (
    id INTEGER PRIMARY KEY,
    rejected_at REAL NOT NULL,
    reason TEXT NOT NULL,
    line TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""

#: Columns the outbox reads and writes, per table (checked at start).
_COLUMNS = {"outbox": "id, priority, created, nbytes, line", "rejected": "id, rejected_at, reason, line",
            "meta": "key, value"}

#: Alarm code: the outbox file was damaged at start, moved aside and replaced by a fresh one.
STORE_RECOVERED = "telemetry_store_recovered"

#: Rows kept in the ``rejected`` table for inspection (oldest removed first).
MAX_REJECTED_ROWS = 10_000


@dataclass(frozen=True, slots=True)
class BacklogStats:
    """What waits in the outbox: points, bytes [bytes], age of the oldest [s], drops and rejects ever."""

    points: int
    bytes: int
    oldest_age_s: float | None
    dropped_points: int
    rejected_points: int
    drop_alarm: bool


@dataclass(frozen=True, slots=True)
class DropEvent:
    """Points deleted unsent because the disk limit was reached, by priority."""

    points: int
    bytes: int
    by_priority: dict[Priority, int]
    at: float  # [s] unix time


def _tables(db: sqlite3.Connection) -> set[str]:
    return {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


class OutboxError(Exception):
    """The outbox database cannot be opened or written."""


class Outbox:
    """A durable FIFO of line-protocol rows (see the module docstring).

    path: SQLite file; max_bytes [bytes]: disk limit; low_water: fraction of
    the limit the drop policy frees down to; on_drop: called (in the thread
    of ``put``) after every drop.
    """

    def __init__(self, path: str | Path, max_bytes: int = 256 * 1024 * 1024, low_water: float = 0.9,
                 fsync: bool = False, on_drop: Callable[[DropEvent], None] | None = None,
                 clock: Callable[[], float] = time.time):
        if max_bytes < 4096:
            raise ValueError(f"max_bytes {max_bytes} is too small (at least 4096)")
        if not 0 < low_water <= 1:
            raise ValueError(f"low_water {low_water} must be in (0, 1]")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.low_water = low_water
        self.on_drop = on_drop
        self._clock = clock
        self._lock = threading.Lock()
        self._listeners: list[Callable[[], None]] = []
        self.recovery: Recovery | None = None
        self._recovery_alarm = False
        try:
            self._db, (count, size, self._dropped, self._rejected), self.recovery = open_store(
                self.path, lambda db: self._prepare(db, fsync), what="telemetry outbox", now=utc_from_unix(clock))
        except (sqlite3.Error, OSError) as exc:
            raise OutboxError(f"{self.path}: cannot open outbox: {exc}") from exc
        self._recovery_alarm = self.recovery is not None
        self._count, self._bytes = count, size
        self.drop_alarm = False

    # -- producer side -------------------------------------------------------------------
    def put(self, points: Iterable[TelemetryPoint | str | tuple[str, Priority]]) -> int:
        """Commit ``points`` (TelemetryPoint, line, or (line, priority)) to disk; returns how many.

        Cheap enough for every control cycle (15-20 µs per point, serialising included); never
        talks to the network.  Raises ValueError for a point that cannot be
        serialised (nothing of that call is stored) and OutboxError when the
        disk refuses the write.
        """
        now = self._clock()
        rows = []
        for p in points:
            if isinstance(p, TelemetryPoint):
                line, prio = p.to_line(), p.priority
            elif isinstance(p, str):
                line, prio = p, Priority.NORMAL
            else:
                line, prio = p
            if not line or "\n" in line:
                raise ValueError(f"not one line of line protocol: {line[:80]!r}")
            rows.append((int(prio), now, len(line.encode()) + ROW_OVERHEAD_BYTES, line))
        if not rows:
            return 0
        added = sum(r[2] for r in rows)
        drop = None
        with self._lock:
            saved = (self._count, self._bytes, self._dropped)
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT INTO outbox (priority, created, nbytes, line) VALUES (?, ?, ?, ?)", rows)
                self._count += len(rows)
                self._bytes += added
                if self._bytes > self.max_bytes:
                    drop = self._drop_locked(now)
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback_locked()
                self._count, self._bytes, self._dropped = saved
                raise OutboxError(f"{self.path}: cannot store {len(rows)} points: {exc}") from exc
            listeners = list(self._listeners)
        if drop is not None:
            log.warning("outbox %s full: dropped %d points (%s)", self.path, drop.points,
                        ", ".join(f"{p.name.lower()} {n}" for p, n in drop.by_priority.items()))
            if self.on_drop is not None:
                self.on_drop(drop)
        for notify in listeners:
            notify()
        return len(rows)

    def _drop_locked(self, now: float) -> DropEvent:
        target = int(self.max_bytes * self.low_water)
        by_prio: dict[Priority, int] = {}
        freed_points = freed_bytes = 0
        for prio in sorted(Priority):
            if self._bytes - freed_bytes <= target:
                break
            cur = self._db.execute("SELECT id, nbytes FROM outbox WHERE priority = ? ORDER BY id", (int(prio),))
            last_id, n = None, 0
            for row_id, nbytes in cur:
                last_id = row_id
                n += 1
                freed_bytes += nbytes
                if self._bytes - freed_bytes <= target:
                    break
            cur.close()
            if last_id is not None:
                self._db.execute("DELETE FROM outbox WHERE priority = ? AND id <= ?", (int(prio), last_id))
                by_prio[prio] = n
                freed_points += n
        self._count -= freed_points
        self._bytes -= freed_bytes
        self._dropped += freed_points
        self._set_meta("dropped_points", self._dropped)
        self.drop_alarm = True
        return DropEvent(freed_points, freed_bytes, by_prio, now)

    def add_listener(self, notify: Callable[[], None]) -> None:
        """Call ``notify()`` (in the producer's thread) after every successful put."""
        self._listeners.append(notify)

    def remove_listener(self, notify: Callable[[], None]) -> None:
        """Stop calling ``notify``."""
        if notify in self._listeners:
            self._listeners.remove(notify)

    # -- shipper side --------------------------------------------------------------------
    def fetch(self, limit: int) -> list[tuple[int, str]]:
        """Up to ``limit`` oldest rows as (id, line), in id order (contiguous ids)."""
        with self._lock:
            return self._db.execute("SELECT id, line FROM outbox ORDER BY id LIMIT ?", (limit,)).fetchall()

    def ack(self, first_id: int, last_id: int) -> int:
        """Delete the rows ``first_id..last_id`` the server acknowledged; returns how many were still there.

        Safe after a drop removed some of them meanwhile: only what is still
        there is counted.
        """
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                n, size = self._db.execute("SELECT COUNT(*), COALESCE(SUM(nbytes), 0) FROM outbox "
                                           "WHERE id BETWEEN ? AND ?", (first_id, last_id)).fetchone()
                self._db.execute("DELETE FROM outbox WHERE id BETWEEN ? AND ?", (first_id, last_id))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback_locked()
                raise OutboxError(f"{self.path}: cannot delete sent rows: {exc}") from exc
            self._count -= n
            self._bytes -= size
            return n

    def reject(self, row_ids: Sequence[int], reason: str) -> int:
        """Move rows the server refused as malformed to the ``rejected`` table (kept for inspection)."""
        if not row_ids:
            return 0
        now = self._clock()
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                marks = ",".join("?" * len(row_ids))
                rows = self._db.execute(f"SELECT id, nbytes, line FROM outbox WHERE id IN ({marks})",
                                        list(row_ids)).fetchall()
                self._db.executemany("INSERT OR REPLACE INTO rejected (id, rejected_at, reason, line) "
                                     "VALUES (?, ?, ?, ?)", [(r[0], now, reason[:500], r[2]) for r in rows])
                self._db.execute(f"DELETE FROM outbox WHERE id IN ({marks})", list(row_ids))
                self._db.execute("DELETE FROM rejected WHERE id NOT IN "
                                 "(SELECT id FROM rejected ORDER BY id DESC LIMIT ?)", (MAX_REJECTED_ROWS,))
                self._set_meta("rejected_points", self._rejected + len(rows))
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback_locked()
                raise OutboxError(f"{self.path}: cannot move rejected rows: {exc}") from exc
            self._rejected += len(rows)
            self._count -= len(rows)
            self._bytes -= sum(r[1] for r in rows)
        return len(rows)

    def rejected_lines(self, limit: int = 100) -> list[tuple[str, str]]:
        """The most recently rejected (line, reason) pairs."""
        with self._lock:
            return self._db.execute("SELECT line, reason FROM rejected ORDER BY id DESC LIMIT ?",
                                    (limit,)).fetchall()

    # -- status --------------------------------------------------------------------------
    def stats(self) -> BacklogStats:
        """Backlog size and age, drops and rejects (cheap: no table scan)."""
        with self._lock:
            row = self._db.execute("SELECT created FROM outbox ORDER BY id LIMIT 1").fetchone()
            count, size = self._count, self._bytes
        age = max(0.0, self._clock() - row[0]) if row else None
        return BacklogStats(count, size, age, self._dropped, self._rejected, self.drop_alarm)

    def __len__(self) -> int:
        return self._count

    def clear_drop_alarm(self) -> None:
        """The operator saw the drop alarm; the count stays."""
        self.drop_alarm = False

    def alarm_conditions(self) -> list[StoreCondition]:
        """The outbox's conditions for the site's alarms, as telemetry-level tuples
        (code, active, severity 'warning'|'critical', message); inactive ones clear the alarm.

        ``telemetry_store_recovered`` (warning): the file was damaged at start and
        replaced by a fresh one; stays active until :meth:`clear_recovery_alarm`
        or the next start.  (The drop alarm is reported by the gateway's link.)
        """
        r = self.recovery
        message = (r.describe("telemetry outbox") + "; the points it held were not sent") if r else ""
        return [StoreCondition(STORE_RECOVERED, self._recovery_alarm, "warning", message)]

    def clear_recovery_alarm(self) -> None:
        """The operator saw the recovery alarm (the damaged copy stays on disk)."""
        self._recovery_alarm = False

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> "Outbox":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- internals -----------------------------------------------------------------------
    def _prepare(self, db: sqlite3.Connection, fsync: bool) -> tuple[int, int, int, int]:
        """Check the layout, set pragmas, create the schema; returns what the outbox reads at start:
        (points, bytes, dropped, rejected).  A layout this code cannot use raises before anything is
        written (see telemetry.sqlite_recovery)."""
        check_columns(db, _COLUMNS)
        if "meta" in _tables(db):
            counters = dict(db.execute("SELECT key, value FROM meta").fetchall())
            if any(not isinstance(v, int) for v in counters.values()):
                raise StoreDamaged("unusable: counters in meta are not integers")
        db.execute("PRAGMA journal_mode=WAL")
        db.execute(f"PRAGMA synchronous={'FULL' if fsync else 'NORMAL'}")
        db.execute("PRAGMA journal_size_limit=16777216")  # keep the WAL file at most 16 MiB after checkpoints
        db.executescript(_SCHEMA)
        count, size = db.execute("SELECT COUNT(*), COALESCE(SUM(nbytes), 0) FROM outbox").fetchone()
        if not isinstance(size, int):
            raise StoreDamaged("unusable: row sizes are not integers")
        counters = dict(db.execute("SELECT key, value FROM meta").fetchall())
        return count, size, counters.get("dropped_points", 0), counters.get("rejected_points", 0)

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def _rollback_locked(self) -> None:
        try:
            self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass
