"""Telemetry bookkeeping of a :class:`ems.sim.runtime.FleetRuntime`: a local history store and counted outboxes.

When no InfluxDB is configured, every hall's outbox is shipped by the real
:class:`telemetry.shipper.InfluxShipper` into a :class:`HistoryStore`: a
small SQLite file that implements the shipper's ``LineWriter`` protocol and,
like InfluxDB, stores a re-sent point only once (same line, same point).

:class:`CountingOutbox` is the real :class:`telemetry.outbox.Outbox` that
also remembers a digest of every line it committed, so a drill can prove
"zero lost points" by counting: every line produced is in the store, still
waiting in an outbox, or was counted as dropped/rejected by the outbox.
"""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

from telemetry.outbox import Outbox
from telemetry.schema import Priority, TelemetryPoint

_SCHEMA = """
CREATE TABLE IF NOT EXISTS points (
    digest BLOB PRIMARY KEY,      -- sha1 of the line: a re-sent point is stored once
    measurement TEXT NOT NULL,
    line TEXT NOT NULL
) WITHOUT ROWID;
"""


def line_digest(line: str) -> bytes:
    """Digest [20 bytes] identifying one line of line protocol."""
    return hashlib.sha1(line.encode("utf-8")).digest()


def _measurement(line: str) -> str:
    end = len(line)
    for sep in (",", " "):
        i = line.find(sep)
        if 0 <= i < end:
            end = i
    return line[:end]


class HistoryStore:
    """SQLite history of line-protocol points (a ``LineWriter``); thread-safe, one file for the fleet."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.writes = 0

    def write(self, lines: Sequence[str]) -> None:
        """Store a batch (all or nothing); an already stored line is ignored, as InfluxDB overwrites it."""
        rows = [(line_digest(line), _measurement(line), line) for line in lines]
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.executemany("INSERT OR IGNORE INTO points (digest, measurement, line) VALUES (?, ?, ?)",
                                     rows)
                self._db.execute("COMMIT")
            except sqlite3.Error:
                self._db.execute("ROLLBACK")
                raise
            self.writes += 1

    def count(self, measurement: str | None = None) -> int:
        """Points stored (of one measurement, or all)."""
        with self._lock:
            if measurement is None:
                return self._db.execute("SELECT COUNT(*) FROM points").fetchone()[0]
            return self._db.execute("SELECT COUNT(*) FROM points WHERE measurement = ?", (measurement,)).fetchone()[0]

    def digests(self) -> set[bytes]:
        """Digests of every stored line."""
        with self._lock:
            return {row[0] for row in self._db.execute("SELECT digest FROM points")}

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CountingOutbox(Outbox):
    """An :class:`Outbox` that remembers the digest of every line it committed (``produced``)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.produced: set[bytes] = set()
        self.produced_count = 0

    def put(self, points: Iterable[TelemetryPoint | str | tuple[str, Priority]]) -> int:
        rows: list[tuple[str, Priority]] = []
        for p in points:
            if isinstance(p, TelemetryPoint):
                rows.append((p.to_line(), p.priority))
            elif isinstance(p, str):
                rows.append((p, Priority.NORMAL))
            else:
                rows.append(p)
        n = super().put(rows)  # raises before anything is counted if the disk refuses
        self.produced.update(line_digest(line) for line, _ in rows)
        self.produced_count += n
        return n

    def pending_digests(self) -> set[bytes]:
        """Digests of the lines still waiting in the outbox."""
        return {line_digest(line) for _, line in self.fetch(10**9)}


@dataclass(frozen=True)
class TelemetryCount:
    """Points produced by the halls, stored centrally, still pending, dropped or rejected, and lost.

    lost = produced lines that are neither stored nor pending (dropped and
    rejected lines are part of it: the outbox counted them as not delivered).
    """

    produced: int
    stored: int
    pending: int
    dropped: int
    rejected: int
    lost: int

    def to_dict(self) -> dict[str, int]:
        return {"produced": self.produced, "stored": self.stored, "pending": self.pending,
                "dropped": self.dropped, "rejected": self.rejected, "lost": self.lost}


def count_telemetry(outboxes: Iterable[CountingOutbox], store: HistoryStore) -> TelemetryCount:
    """Compare what the outboxes produced with what the store holds (call after draining)."""
    produced: set[bytes] = set()
    pending: set[bytes] = set()
    dropped = rejected = 0
    for ob in outboxes:
        produced |= ob.produced
        pending |= ob.pending_digests()
        st = ob.stats()
        dropped += st.dropped_points
        rejected += st.rejected_points
    stored = store.digests()
    lost = len(produced - stored - pending)
    return TelemetryCount(produced=len(produced), stored=len(produced & stored), pending=len(pending),
                          dropped=dropped, rejected=rejected, lost=lost)
