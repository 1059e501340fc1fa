"""Damaged store files at the gateway: each store moves the file aside, starts afresh, raises an alarm
condition and loses nothing else; problems that are not damage (a locked file) are still raised."""

from __future__ import annotations

import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from telemetry.commands import Command, CommandRefused, SetpointPayload
from telemetry.edge_mqtt import COMMAND_STORE_RECOVERED, EdgeMqtt
from telemetry.mqtt_client import MqttSettings
from telemetry.outbox import STORE_RECOVERED, Outbox, OutboxError
from telemetry.replay import ReplayGuard
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


# -- the command replay store -----------------------------------------------------------------

NOW = datetime(2025, 7, 1, tzinfo=timezone.utc)


def cmd(command_id: str) -> Command:
    payload = SetpointPayload(power_w=100)
    return Command(command_id, "hall-01", "op", NOW, NOW + timedelta(hours=1), "setpoint", payload, NOW)


def seen_store(path: Path, n: int) -> None:
    ReplayGuard(path, now=lambda: NOW).close()  # its schema
    db = sqlite3.connect(path)
    t = NOW.timestamp()
    db.executemany("INSERT INTO seen (id, expires_at, received_at, issued_by) VALUES (?, ?, ?, 'op')",
                   [(f"c-{i:05d}", t + 3600, t) for i in range(n)])
    db.commit()
    db.close()


def damage_last_page(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-4096:] = b"\xa5" * 4096
    path.write_bytes(bytes(data))


def wrong_replay_schema(path: Path) -> None:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE seen (id TEXT PRIMARY KEY, at REAL)")
    db.commit()
    db.close()


@pytest.mark.parametrize("damage", [garbage, wrong_replay_schema])
def test_damaged_replay_store_is_moved_aside_and_commands_are_recorded_again(tmp_path, damage):
    path = tmp_path / "commands-hall-01.sqlite"
    damage(path)
    before = path.read_bytes()
    guard = ReplayGuard(path, now=lambda: NOW)
    try:
        assert guard.recovery is not None and guard.recovery.moved_to.name == f"{path.name}.corrupt-{STAMP}"
        assert guard.recovery.moved_to.read_bytes() == before
        guard.record(cmd("c-new"))
        with pytest.raises(CommandRefused, match="replayed"):
            guard.record(cmd("c-new"))
    finally:
        guard.close()
    again = ReplayGuard(path, now=lambda: NOW)
    assert again.recovery is None and again.seen("c-new")
    again.close()


def test_ids_still_readable_in_a_damaged_replay_store_stay_refused(tmp_path):
    path = tmp_path / "commands-hall-01.sqlite"
    seen_store(path, 3000)
    damage_last_page(path)
    guard = ReplayGuard(path, now=lambda: NOW)
    try:
        r = guard.recovery
        assert r is not None and "quick_check" in r.problem and "\n" not in r.problem and 1000 < r.salvaged <= 3000
        assert f"{r.salvaged} record(s) salvaged" in r.describe("command replay store")
        assert len(guard) == r.salvaged
        with pytest.raises(CommandRefused, match="replayed"):
            guard.record(cmd("c-00000"))
    finally:
        guard.close()


def test_edge_reports_a_recovered_replay_store_as_an_alarm_condition(tmp_path):
    garbage(tmp_path / "commands-hall-01.sqlite")
    edge = EdgeMqtt("hall-01", MqttSettings("127.0.0.1", 1), tmp_path, clock=lambda: NOW)  # never connected
    try:
        (cond,) = [c for c in edge.alarm_conditions() if c.code == COMMAND_STORE_RECOVERED]
        assert cond.active and cond.severity == "warning"
        assert f"commands-hall-01.sqlite.corrupt-{STAMP}" in cond.message and "replayed" in cond.message
        edge.clear_recovery_alarm()
        assert not any(c.active for c in edge.alarm_conditions())
    finally:
        edge.replay.close()


# -- the gateway's caches: market state (market-<site>.json) and forecaster history (history-<site>.csv) --

MARKET_NOW = datetime(2026, 12, 7, 5, 0, tzinfo=timezone.utc)
MARKET_STAMP = "20261207T050000Z"


def market(state_dir: Path):
    from ems.gateway.config import PricesSection, WeatherSection
    from ems.gateway.inputs import MarketInputs

    return MarketInputs(PricesSection(), WeatherSection(), site_id="hall-01", jepx_area="chugoku",
                        area_code="3120100", state_dir=state_dir, clock=lambda: MARKET_NOW)


def market_state(prices: bytes) -> bytes:
    return (b'{"version": 1, "site": "hall-01", "jepx_area": "chugoku", "area_code": "3120100", '
            b'"last_central_at": null, "batches": [{"id": 1, "kind": "central", "source": "x", '
            b'"published_at": null, "received_at": "2026-12-07T05:00:00+00:00"}], '
            b'"prices": [["2026-12-07T05:00:00+00:00", ' + prices + b', 30, 1]], "weather": []}')


@pytest.mark.parametrize("content", [
    b"[" * 100_000 + b"]" * 100_000,  # the JSON parser recursed until RecursionError
    market_state(b"1" + b"0" * 400),  # an integer too large for a float: OverflowError
    market_state(b'"cheap"'),  # refused before too, but then overwritten by the next save
], ids=["nested", "huge-int", "word-price"])
def test_a_damaged_market_state_file_is_moved_aside_and_the_gateway_starts(tmp_path, caplog, content):
    state = tmp_path / "state"
    state.mkdir()
    path = state / "market-hall-01.json"
    path.write_bytes(content)
    with caplog.at_level("WARNING", logger="ems.gateway.inputs"):
        inp = market(state)
    moved = state / f"market-hall-01.json.corrupt-{MARKET_STAMP}"
    assert moved.read_bytes() == content and not path.exists()  # kept for a person, not overwritten
    assert str(path) in caplog.text and moved.name in caplog.text
    times = [MARKET_NOW + timedelta(minutes=30 * k) for k in range(2)]
    assert inp.prices(times).source.startswith("tariff") and inp.last_central_at is None


def history_file(tmp_path: Path, middle: str) -> Path:
    from ems.gateway.history_store import COLUMNS

    path = tmp_path / "history-hall-01.csv"
    path.write_text(",".join(COLUMNS) + "\n"
                    "2026-12-07T05:00:00+00:00,1000.0,500.0,300.0,0.8000\n"
                    + middle +
                    "2026-12-07T06:00:00+00:00,1100.0,400.0,300.0,0.8000\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("middle, words", [
    ('"' + "x" * 200_000 + '",1,1,1,0.5\n', "field larger than field limit"),  # csv.Error before
    ("2026-12-07T05:30:00+00:00,1,1,1,0.5,extra\n", "6 cells"),
])
def test_a_damaged_history_file_keeps_the_good_lines(tmp_path, middle, words):
    from ems.gateway.history_store import load_history

    path = history_file(tmp_path, middle)
    rows, problems = load_history(path)
    assert rows[0][1] == 1000.0 and rows[-1][1] == 1100.0 and len(rows) == 2
    assert len(problems) == 1 and problems[0].startswith(f"{path}:3: ") and words in problems[0]


def test_a_history_file_with_a_damaged_header_means_learning_afresh(tmp_path):
    from ems.gateway.history_store import load_history

    path = tmp_path / "history-hall-01.csv"
    path.write_text('"' + "x" * 200_000 + '"\n2026-12-07T05:00:00+00:00,1,1,1,0.5\n', encoding="utf-8")
    assert load_history(path) == ([], [f"{path}:1: field larger than field limit (131072)"])
