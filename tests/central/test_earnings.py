"""Earnings against the cost without a battery, from a real local history store; the reserve outlook of
the disaster panel; the fleet totals and the earnings API (JSON, CSV, errors)."""

from __future__ import annotations

import csv
import io
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from ems.central.earnings import earnings, period_start, site_earnings
from ems.central.fleet_history import fleet_series
from ems.central.history import LocalHistory
from ems.central.outlook import reserve_outlook

# 2026-12-07 00:00 JST
T0 = datetime(2026, 12, 6, 15, 0, tzinfo=timezone.utc)


def fill(hist: LocalHistory, site: str, start: datetime, seconds: int, grid_w: float, battery_w: float,
         step_s: int = 10) -> None:
    for k in range(0, seconds, step_s):
        t = start + timedelta(seconds=k)
        hist.record_state(site, {"time": t.isoformat(), "grid_w": grid_w, "battery_w": battery_w, "soc_pct": 50.0},
                          t)


def prices(hist: LocalHistory, site: str, start: datetime, slots: int, buy: float, sell: float | None) -> None:
    hist.record_plan(site, {"slots": [{"time": (start + timedelta(minutes=30 * j)).isoformat(), "battery_w": 0.0,
                                       "price_jpy_per_kwh": buy, "price_sell_jpy_per_kwh": sell}
                                      for j in range(slots)]})


@pytest.fixture
def hist(tmp_path):
    h = LocalHistory(tmp_path / "history.sqlite", min_interval_s=10)
    yield h
    h.close()


def test_a_charging_hour_costs_and_a_discharging_hour_earns(hist):
    # Hour 1: importing 1 kW while charging 0.5 kW: without the battery only 0.5 kW would be bought.
    fill(hist, "s1", T0, 3600, grid_w=1000.0, battery_w=-500.0)
    # Hour 2: exporting 1 kW while discharging 1.5 kW: without the battery 0.5 kW would be bought.
    fill(hist, "s1", T0 + timedelta(hours=1), 3600, grid_w=-1000.0, battery_w=1500.0)
    prices(hist, "s1", T0, 4, buy=20.0, sell=8.0)
    [day] = site_earnings(hist, "s1", T0, T0 + timedelta(days=1), "day")
    assert day.period == "2026-12-07" and day.site == "s1"
    assert day.import_kwh == pytest.approx(1.0) and day.export_kwh == pytest.approx(1.0)
    assert day.import_kwh_without_battery == pytest.approx(1.0)  # 0.5 kWh in each hour
    assert day.cost_with_battery_jpy == pytest.approx(20.0 - 8.0)
    assert day.cost_without_battery_jpy == pytest.approx(10.0 + 10.0)
    assert day.earnings_jpy == pytest.approx(8.0) and day.priced_share == pytest.approx(1.0)


def test_unpriced_time_silence_and_jst_days(hist):
    fill(hist, "s1", T0 - timedelta(hours=1), 3600, grid_w=1000.0, battery_w=0.0)  # 2026-12-06 JST, no prices
    fill(hist, "s1", T0, 60, grid_w=1000.0, battery_w=0.0)
    # one sample after ten silent minutes holds for 10 s (min_interval_s), the gap is not counted
    fill(hist, "s1", T0 + timedelta(minutes=11), 10, grid_w=1000.0, battery_w=0.0)
    prices(hist, "s1", T0, 1, buy=30.0, sell=None)
    days = site_earnings(hist, "s1", T0 - timedelta(days=1), T0 + timedelta(days=1), "day")
    assert [d.period for d in days] == ["2026-12-06", "2026-12-07"]
    assert days[0].priced_share == 0 and days[0].cost_with_battery_jpy == 0 and days[0].import_kwh == pytest.approx(1.0)
    # six samples 10 s apart: five hold 10 s, the last holds 120 s (max_gap), the lone later one 10 s
    assert days[1].measured_s == pytest.approx(50 + 120 + 10)
    fleet, halls = earnings(hist, ["s1", "s2"], T0 - timedelta(days=1), T0 + timedelta(days=1), "month")
    assert [f.period for f in fleet] == ["2026-12"] and len(halls) == 1


def test_period_start_in_jst():
    now = datetime(2026, 12, 7, 4, 51, tzinfo=timezone.utc)  # 13:51 JST
    assert period_start(now, "day", 1) == datetime(2026, 12, 6, 15, 0, tzinfo=timezone.utc)
    assert period_start(now, "month", 13) == datetime(2025, 11, 30, 15, 0, tzinfo=timezone.utc)


def test_history_file_from_before_sell_prices_is_upgraded(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE plan_slots (site TEXT NOT NULL, t REAL NOT NULL, battery_w REAL, soc_pct REAL, "
               "price_jpy_per_kwh REAL, PRIMARY KEY (site, t))")
    db.commit()
    db.close()
    h = LocalHistory(path)
    prices(h, "s1", T0, 2, buy=12.0, sell=7.0)
    series = h.series("s1", T0, T0 + timedelta(hours=1)).series
    assert [v for _, v in series["price_jpy_per_kwh"]] == [12.0, 12.0]
    assert [v for _, v in series["price_sell_jpy_per_kwh"]] == [7.0, 7.0]
    h.close()


def row(**kw):
    base = {"hours_left": 6.0, "h_disaster": 12.0, "battery_w": -2000.0, "critical_w": 800.0, "mode": "disaster_reserve",
            "grid_ok": True, "online": True, "stale": False}
    return {**base, **kw}


def test_reserve_outlook():
    now = T0
    # 6 h missing x 800 W = 4.8 kWh at 2 kW x 0.96 in: 2.5 h
    o = reserve_outlook(row(), 0.96, now)
    assert o["reserve_status"] == "charging" and o["reserve_at"] == (now + timedelta(hours=2.5)).isoformat()
    assert reserve_outlook(row(hours_left=12.5), 0.95, now)["reserve_status"] == "reached"
    assert reserve_outlook(row(battery_w=300.0), 0.95, now)["reserve_status"] == "not_charging"
    slow = reserve_outlook(row(battery_w=-60.0), 0.95, now)
    assert slow["reserve_status"] == "too_slow" and slow["horizon_until"] == (now + timedelta(hours=48)).isoformat()
    island = reserve_outlook(row(mode="islanded", grid_ok=False, hours_left=9.5), 0.95, now)
    assert island["power_until"] == (now + timedelta(hours=9.5)).isoformat()
    assert reserve_outlook(row(online=False), 0.95, now)["reserve_status"] == "unknown"


def test_fleet_series_sums_the_halls(hist):
    for site in ("s1", "s2"):
        fill(hist, site, T0, 600, grid_w=1000.0, battery_w=-500.0)
    d = fleet_series(hist, [("s1", 10000.0), ("s2", 20000.0)], T0, T0 + timedelta(minutes=10))
    assert {v for _, v in d["series"]["grid_w"]} == {2000.0}
    assert {v for _, v in d["series"]["stored_wh"]} == {15000.0}  # 50 % of 10 + 20 kWh
    assert {v for _, v in d["series"]["halls"]} == {2.0}


def test_earnings_api(api, env):
    h = env.service.history
    now = env.service.clock()
    fill(h, "hall-01", now - timedelta(minutes=30), 1200, grid_w=2000.0, battery_w=-1000.0)
    prices(h, "hall-01", now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1), 4, buy=25.0, sell=9.0)
    c = api.login("vera")
    r = c.get("/api/earnings?period=day")
    assert r.status_code == 200, r.text
    d = r.json()
    assert d["fleet"] and d["fleet"][-1]["cost_with_battery_jpy"] > d["fleet"][-1]["cost_without_battery_jpy"] > 0
    priced = {x["site"] for x in d["halls"] if x["priced_share"] > 0}
    assert priced == {"hall-01"}  # the other halls' states (fed at start) have no prices
    r = c.get("/api/earnings.csv?period=month")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(r.text)))
    assert rows[0]["site"] == "*" and "hall-01" in {x["site"] for x in rows} and float(rows[0]["earnings_jpy"]) < 0
    one = c.get("/api/earnings?period=day&site=hall-01").json()  # a hall's page asks for its own only
    assert [x["site"] for x in one["halls"]] == ["hall-01"] * len(one["fleet"])
    assert one["halls"][-1]["earnings_jpy"] == pytest.approx(
        [x for x in d["halls"] if x["site"] == "hall-01"][-1]["earnings_jpy"])
    assert c.get("/api/earnings?site=no-such-hall").status_code == 404
    r = c.get("/api/earnings?period=week")
    assert r.status_code == 422 and "period" in r.json()["message"]
    assert c.get("/api/earnings?count=0").status_code == 422
    r = c.get("/api/fleet/history?range=1h")
    assert r.status_code == 200 and r.json()["series"]["grid_w"]
    assert c.get("/api/fleet/history?range=2y").status_code == 422
    rows = c.get("/api/fleet").json()["halls"]
    assert {"lat", "lon", "outlook"} <= set(rows[0]) and rows[0]["outlook"]["reserve_status"] == "charging"


def test_fleet_series_leaves_out_buckets_only_some_halls_reported(hist):
    fill(hist, "s1", T0, 600, grid_w=1000.0, battery_w=0.0)
    fill(hist, "s2", T0 + timedelta(minutes=5), 300, grid_w=1000.0, battery_w=0.0)
    d = fleet_series(hist, [("s1", 10000.0), ("s2", 10000.0)], T0, T0 + timedelta(minutes=10))
    assert d["series"]["grid_w"] and {v for _, v in d["series"]["grid_w"]} == {2000.0}


def test_reserve_outlook_against_a_typhoon():
    now = T0
    # 2.5 h to the reserve; the typhoon's storm-force wind in 2 h: cannot reach before it
    o = reserve_outlook(row(), 0.96, now, typhoon_at=now + timedelta(hours=2))
    assert o["reserve_status"] == "too_slow" and o["deadline"] == "typhoon"
    assert o["horizon_until"] == (now + timedelta(hours=2)).isoformat()
    o = reserve_outlook(row(), 0.96, now, typhoon_at=now + timedelta(hours=3))
    assert o["reserve_status"] == "charging" and o["deadline"] == "typhoon"
    assert reserve_outlook(row(), 0.96, now, typhoon_at=now - timedelta(hours=1))["deadline"] == "horizon"


def test_fleet_rows_use_the_jma_typhoon_arrival(env):
    from ems.central.jma.trigger import TyphoonArrival, WarningTrigger
    from ems.central.service import JmaParts

    trigger = WarningTrigger(env.service.fleet.sites)
    now = env.service.clock()
    trigger._arrivals["hall-01"] = TyphoonArrival("2613", "TEST", now + timedelta(minutes=30), now, "暴風警戒域")
    env.service.jma = JmaParts(reader=None, trigger=trigger)
    rows = {r["site"]: r["outlook"] for r in env.service.fleet_rows()}
    assert rows["hall-01"]["deadline"] == "typhoon" and rows["hall-02"]["deadline"] == "horizon"

