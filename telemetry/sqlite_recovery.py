"""Open a gateway's SQLite store, and start it afresh when the file is damaged.

A gateway runs unattended: one damaged store file (a power cut on cheap
flash, a full disk during a checkpoint, a stray copy) must not keep it from
starting.  :func:`open_store` opens the file, checks it and runs the store's
``prepare`` (pragmas, schema, a probe of what the store reads).  When the
file is *damaged* it is moved aside as ``<name>.corrupt-<UTC time>`` together
with its ``-wal``/``-shm``/``-journal`` (so SQLite can still open the copy
for inspection, and so an old WAL is never replayed into the fresh file), a
fresh store is created in its place, and a :class:`Recovery` says what
happened, for the store's alarm.

Damaged means: not a database (SQLITE_NOTADB), corrupt (SQLITE_CORRUPT, or
``PRAGMA quick_check`` reports a problem), or a schema the store cannot use
(SQLITE_ERROR/SQLITE_MISMATCH while preparing, or :class:`StoreDamaged`
raised by ``prepare``).  Anything else (locked by another process, no
permission, an I/O error, a full disk) is *not* damage: moving the file would
not help and could throw good data away, so that error is raised as before.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, NamedTuple, Sequence, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

#: SQLite primary result codes that mean "this file is damaged or not ours".
_DAMAGE_CODES = {1: "SQLITE_ERROR", 11: "SQLITE_CORRUPT", 20: "SQLITE_MISMATCH", 26: "SQLITE_NOTADB"}
#: Files SQLite keeps beside a database; they move with it.
SIDE_SUFFIXES = ("-wal", "-shm", "-journal")


class StoreCondition(NamedTuple):
    """An alarm condition of a telemetry-level part (telemetry does not import ems): code, active,
    severity ('warning' or 'critical', the values of ems.gateway.alarms.Severity) and message.
    The gateway adapts it to its own AlarmCondition."""

    code: str
    active: bool
    severity: str
    message: str


class StoreDamaged(Exception):
    """The store file is damaged or its schema unusable (raised by ``prepare`` for its own checks)."""


@dataclass(frozen=True, slots=True)
class Recovery:
    """A damaged store was replaced by a fresh one.

    path: the store; moved_to: where the damaged file now is; problem: what
    was wrong; at: when (UTC); salvaged: rows the store copied from the
    damaged file (0 when it does not try).
    """

    path: Path
    moved_to: Path
    problem: str
    at: datetime
    salvaged: int = 0

    def describe(self, what: str) -> str:
        """One line for the alarm and the log, ``what`` naming the store."""
        kept = f", {self.salvaged} record(s) salvaged from it" if self.salvaged else ""
        return (f"{what} {self.path} was damaged ({self.problem}); kept as {self.moved_to.name}{kept}; "
                f"started a fresh one at {self.at.strftime('%Y-%m-%dT%H:%M:%SZ')}")


def check_columns(db: sqlite3.Connection, tables: dict[str, str]) -> None:
    """Read-only check of existing tables: each of ``tables`` (name → comma-separated columns) that
    exists must have those columns; raises sqlite3.OperationalError (damage) otherwise.  Run it before
    ``CREATE TABLE IF NOT EXISTS`` or any pragma that writes, so a file of another layout is moved
    aside unchanged."""
    existing = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table, columns in tables.items():
        if table in existing:
            db.execute(f"SELECT {columns} FROM {table} LIMIT 0").fetchall()


def is_damage(exc: BaseException) -> bool:
    """True if ``exc`` (an sqlite3 error) says the file is damaged or not a usable database of ours."""
    if isinstance(exc, StoreDamaged):
        return True
    code = getattr(exc, "sqlite_errorcode", None)
    return isinstance(exc, sqlite3.DatabaseError) and code is not None and (code & 0xFF) in _DAMAGE_CODES


def connect(path: Path, timeout: float) -> sqlite3.Connection:
    """The connection every store uses: shared between threads under the store's own lock, autocommit."""
    return sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=timeout)


class _Damaged(Exception):
    """Internal: the file is damaged; ``db`` is still open (closing it would delete the side files)."""

    def __init__(self, problem: str, db: sqlite3.Connection):
        super().__init__(problem)
        self.db = db


def _open_checked(path: Path, prepare: Callable[[sqlite3.Connection], T],
                  timeout: float) -> tuple[sqlite3.Connection, T]:
    db = connect(path, timeout)
    try:
        try:
            rows = db.execute("PRAGMA quick_check").fetchall()
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise _Damaged(str(exc), db) from exc
            raise
        if rows != [("ok",)]:
            found = "; ".join(" ".join(str(r[0]).split()) for r in rows[:3])
            raise _Damaged(f"quick_check: {found}"[:300], db)
        try:
            result = prepare(db)
        except sqlite3.DatabaseError as exc:
            if is_damage(exc):
                raise _Damaged(f"unusable: {exc}", db) from exc
            raise
        except StoreDamaged as exc:
            raise _Damaged(str(exc), db) from exc
    except _Damaged:
        raise
    except BaseException:
        db.close()
        raise
    return db, result


def corrupt_name(path: Path, at: datetime) -> Path:
    """``<name>.corrupt-<UTC time>`` beside ``path``, numbered when that name is taken."""
    stamp = at.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    moved = path.with_name(f"{path.name}.corrupt-{stamp}")
    n = 1
    while any(Path(f"{moved}{s}").exists() for s in ("", *SIDE_SUFFIXES)):
        n += 1
        moved = path.with_name(f"{path.name}.corrupt-{stamp}-{n}")
    return moved


def move_aside(path: Path, at: datetime) -> Path:
    """Move ``path`` and its side files to :func:`corrupt_name`; returns the new path.  Raises OSError
    when the database itself cannot be moved, or a side file can neither be moved nor removed (it
    would be taken for the fresh file's)."""
    moved = corrupt_name(path, at)
    os.replace(path, moved)
    for suffix in SIDE_SUFFIXES:
        side = Path(f"{path}{suffix}")
        try:
            os.replace(side, Path(f"{moved}{suffix}"))
        except FileNotFoundError:
            continue
        except OSError:
            side.unlink()  # never let an old WAL or journal meet the fresh file
    try:
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
    except OSError:
        pass
    return moved


def open_store(path: str | Path, prepare: Callable[[sqlite3.Connection], T], *, what: str,
               now: Callable[[], datetime], timeout: float = 30.0,
               salvage: Callable[[Path, sqlite3.Connection], int] | None = None,
               ) -> tuple[sqlite3.Connection, T, Recovery | None]:
    """Open the store at ``path`` (see the module docstring): (connection, what ``prepare`` returned,
    Recovery or None).

    prepare(db): sets pragmas, creates the schema and reads what the store
    needs at start; it may raise :class:`StoreDamaged`.  salvage(damaged,
    fresh_db): after a recovery, copy what can still be read from the damaged
    file; returns how many rows (its exceptions are logged and ignored).
    Raises sqlite3.Error or OSError for problems that are not damage, and
    when even a fresh file cannot be made.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        db, result = _open_checked(path, prepare, timeout)
        return db, result, None
    except _Damaged as damaged:
        problem = str(damaged)
        at = now()
        try:
            # Moved while the damaged connection is still open: SQLite deletes a WAL and shm it
            # cannot use when the connection closes, and they belong to the evidence.
            moved = move_aside(path, at)
        finally:
            damaged.db.close()
    try:
        db, result = _open_checked(path, prepare, timeout)
    except _Damaged as again:  # not even a fresh file is usable: a bug, not damage
        again.db.close()
        raise sqlite3.DatabaseError(f"{path}: a fresh {what} is unusable too: {again}") from None
    salvaged = 0
    if salvage is not None:
        try:
            salvaged = salvage(moved, db)
        except Exception as exc:  # best effort: the damaged copy stays for a person to look at
            log.warning("%s: nothing salvaged from %s: %s", what, moved, exc)
    recovery = Recovery(path, moved, problem, at, salvaged)
    log.error("%s", recovery.describe(what))
    if salvaged:  # what prepare read at start does not include the salvaged rows: read it again
        result = prepare(db)
    return db, result, recovery


def read_damaged(moved: Path, sql: str, params: Sequence[Any] = ()) -> list[tuple]:
    """Rows of ``sql`` from a damaged copy, read-only; stops quietly at the first unreadable page."""
    rows: list[tuple] = []
    db = sqlite3.connect(f"{moved.as_uri()}?mode=ro", uri=True, timeout=1)
    try:
        cur = db.execute(sql, params)
        while True:
            try:
                row = cur.fetchone()
            except sqlite3.DatabaseError:
                break
            if row is None:
                break
            rows.append(row)
    finally:
        db.close()
    return rows


def utc_from_unix(clock: Callable[[], float]) -> Callable[[], datetime]:
    """A ``now`` for :func:`open_store` from a clock of unix seconds."""
    return lambda: datetime.fromtimestamp(clock(), timezone.utc)
