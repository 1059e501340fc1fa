"""Damaged store files at the gateway: each store moves the file aside, starts afresh, raises an alarm
condition and loses nothing else; problems that are not damage (a locked file) are still raised."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timezone
from pathlib import Path

import pytest

from telemetry.outbox import STORE_RECOVERED, Outbox, OutboxError
from telemetry.sqlite_recovery import open_store

T0 = 1_751_328_000.0  # 2025-07-01T00:00:00Z
STAMP = "20250701T000000Z"


def lines(n, start=0):
    return [f"m,site=a v={i} {i}" for i in range(start, start + n)]


def good_outbox(path: Path, n: int = 3) -> None:
    with Outbox(path, clock=lambda: T0) as ob:
        ob.put(lines(n))


def damage_pages(path: Path) -> None:
    """Keep the SQLite header, overwrite the rest: the kind of damage a torn write leaves."""
    data = bytearray(path.read_bytes())
    data[100:] = b"\xa5" * (len(data) - 100)
    path.write_bytes(bytes(data))


def garbage(path: Path) -> None:
    path.write_bytes(b"this is not sqlite at all\n" * 500)


def wrong_schema(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY, payload BLOB)")  # an older or foreign layout
    db.commit()
    db.close()


def strings_in_meta(path: Path) -> None:
    good_outbox(path)
    db = sqlite3.connect(path)
    db.execute("UPDATE meta SET value = 'lots' WHERE 1")
    db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('dropped_points', 'lots')")
    db.commit()
    db.close()


def one_stored(ob: Outbox) -> None:
    ob.put(lines(2, start=100))
    assert [line for _, line in ob.fetch(10)] == lines(2, start=100)


@pytest.mark.parametrize("damage", [garbage, damage_pages, wrong_schema, strings_in_meta])
def test_damaged_outbox_is_moved_aside_and_a_fresh_one_takes_points(tmp_path, damage):
    path = tmp_path / "outbox.sqlite"
    if damage is damage_pages:
        good_outbox(path, 400)
    damage(path)
    before = path.read_bytes()
    with Outbox(path, clock=lambda: T0) as ob:
        moved = tmp_path / f"outbox.sqlite.corrupt-{STAMP}"
        assert moved.read_bytes() == before  # kept as it was, for a person to look at
        assert ob.recovery is not None and ob.recovery.moved_to == moved
        (cond,) = ob.alarm_conditions()
        code, active, severity, message = cond
        assert (code, active, severity) == (STORE_RECOVERED, True, "warning")
        assert str(path) in message and moved.name in message
        assert len(ob) == 0
        one_stored(ob)
        ob.clear_recovery_alarm()
        assert [c.active for c in ob.alarm_conditions()] == [False]
    with Outbox(path, clock=lambda: T0) as again:  # the fresh file is a good one: no new recovery
        assert again.recovery is None and len(again) == 2
        assert [c.active for c in again.alarm_conditions()] == [False]


def test_wal_and_shm_move_with_the_damaged_file(tmp_path):
    path = tmp_path / "outbox.sqlite"
    garbage(path)
    Path(f"{path}-wal").write_bytes(b"stale wal " * 100)
    Path(f"{path}-shm").write_bytes(b"stale shm " * 100)
    with Outbox(path, clock=lambda: T0) as ob:
        one_stored(ob)
    moved = f"{path}.corrupt-{STAMP}"
    assert Path(f"{moved}-wal").read_bytes() == b"stale wal " * 100
    assert Path(f"{moved}-shm").exists()  # SQLite rebuilds the shm index: only the WAL's content matters


def test_a_second_damage_in_the_same_second_gets_its_own_name(tmp_path):
    path = tmp_path / "outbox.sqlite"
    for _ in range(2):
        garbage(path)
        Outbox(path, clock=lambda: T0).close()
    assert sorted(p.name for p in tmp_path.glob("outbox.sqlite.corrupt-*")) == \
        [f"outbox.sqlite.corrupt-{STAMP}", f"outbox.sqlite.corrupt-{STAMP}-2"]


def test_a_good_outbox_keeps_its_points_and_raises_nothing(tmp_path):
    path = tmp_path / "outbox.sqlite"
    good_outbox(path)
    with Outbox(path) as ob:
        assert len(ob) == 3 and ob.recovery is None
        assert [c.active for c in ob.alarm_conditions()] == [False]
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_a_locked_store_is_not_damage_and_is_not_moved(tmp_path):
    path = tmp_path / "s.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE t (x)")
    db.commit()
    db.execute("BEGIN EXCLUSIVE")  # another process holds it
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            open_store(path, lambda c: c.execute("SELECT x FROM t").fetchall(), what="test store",
                       now=lambda: datetime.now(timezone.utc), timeout=0.1)
    finally:
        db.rollback()
        db.close()
    assert not list(tmp_path.glob("*.corrupt-*"))


def test_an_outbox_that_cannot_be_opened_at_all_still_says_so(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(OutboxError, match="cannot open outbox"):
        Outbox(tmp_path / "file" / "outbox.sqlite")
