"""History for the charts from a real InfluxDB 1.x, written in the telemetry schema the edge uses."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
import urllib3

from devices.readings import BatteryReading, MeterReading, PVReading
from ems.central.history import HistoryError, InfluxHistory, LocalHistory, step_for
from telemetry.schema import PlanSlot, mode_point, plan_points, reading_point, site_point
from tests.servers import InfluxDB1Server

T0 = datetime(2025, 7, 1, 0, 0, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def influx(tmp_path_factory):
    with InfluxDB1Server(tmp_path_factory.mktemp("influx")) as server:
        server.create_database("ems")
        points = []
        for k in range(120):  # two hours, one point a minute
            t = T0 + timedelta(minutes=k)
            points += [
                reading_point("hall-01", BatteryReading(device_id="battery", time=t, soc_pct=40 + k / 4,
                                                        power_w=-2000.0), area="3120100"),
                reading_point("hall-01", MeterReading(device_id="meter", time=t, power_w=500.0), area="3120100"),
                reading_point("hall-01", PVReading(device_id="pv", time=t, power_w=3000.0), area="3120100"),
                site_point("hall-01", t, area="3120100", hours_left_h=k / 10),
                reading_point("hall-02", BatteryReading(device_id="battery", time=t, soc_pct=99.0, power_w=1.0)),
            ]
        points += plan_points("hall-01", "p1", T0, [PlanSlot(T0 + timedelta(minutes=30 * j), battery_w=-1500.0,
                                                             soc_pct=50.0 + j, price_jpy_per_kwh=8.5 + j)
                                                    for j in range(4)], "optimizer")
        points.append(mode_point("hall-01", T0 + timedelta(minutes=61), "disaster_reserve", "大雨警報 'quoted'", "vpp"))
        body = "\n".join(p.to_line() for p in points).encode()
        r = urllib3.request("POST", f"{server.url}/write?db=ems&precision=ns", body=body)
        assert r.status == 204, r.data
        yield server


def test_series_from_influx(influx):
    hist = InfluxHistory(influx.url, "ems").series("hall-01", T0, T0 + timedelta(hours=2))
    assert hist.step_s == step_for(T0, T0 + timedelta(hours=2)) == 30
    soc = hist.series["soc_pct"]
    assert soc[0] == (T0, 40.0) and len(soc) == 120 and soc[-1][1] == pytest.approx(40 + 119 / 4)
    assert {v for _, v in hist.series["battery_w"]} == {-2000.0}
    assert {v for _, v in hist.series["grid_w"]} == {500.0} and {v for _, v in hist.series["pv_w"]} == {3000.0}
    assert hist.series["hours_left_h"][10][1] == pytest.approx(1.0)
    assert [v for _, v in hist.series["price_jpy_per_kwh"]] == [8.5, 9.5, 10.5, 11.5]
    assert [v for _, v in hist.series["plan_soc_pct"]] == [50.0, 51.0, 52.0, 53.0]
    assert hist.modes == [{"time": T0 + timedelta(minutes=61), "mode": "disaster_reserve",
                           "reason": "大雨警報 'quoted'", "previous": "vpp"}]
    # The other hall's data does not leak in; a quote in the site name cannot break out of the query.
    assert InfluxHistory(influx.url, "ems").series("hall-02' OR site='hall-01", T0, T0 + timedelta(hours=2)).series[
        "soc_pct"] == []


def test_wide_range_is_bucketed(influx):
    hist = InfluxHistory(influx.url, "ems").series("hall-01", T0 - timedelta(days=6), T0 + timedelta(days=1))
    assert hist.step_s == step_for(T0 - timedelta(days=6), T0 + timedelta(days=1)) >= 2000
    assert 1 <= len(hist.series["soc_pct"]) <= 5


def test_influx_errors_are_history_errors(influx):
    with pytest.raises(HistoryError, match="database 'nope'"):
        InfluxHistory(influx.url, "nope").series("hall-01", T0, T0 + timedelta(hours=1))
    with pytest.raises(HistoryError, match="127.0.0.1:1"):
        InfluxHistory("http://127.0.0.1:1", "ems", timeout_s=2).series("hall-01", T0, T0 + timedelta(hours=1))


def test_history_api_answers_502_when_the_backend_is_down(api, env):
    env.service.history = InfluxHistory("http://127.0.0.1:1", "ems", timeout_s=2)
    r = api.bearer("vera").get("/api/sites/hall-01/history?range=1h")
    assert r.status_code == 502 and "history backend" in r.json()["detail"]


def test_local_history_thins_and_survives_bad_values(tmp_path):
    h = LocalHistory(tmp_path / "h.sqlite", min_interval_s=10)
    for s in range(0, 60, 2):
        h.record_state("hall-01", {"time": (T0 + timedelta(seconds=s)).isoformat(), "soc_pct": float(s),
                                   "battery_w": "garbage", "hours_left": float("nan"), "mode": {"effective": "vpp"}},
                       T0)
    got = h.series("hall-01", T0, T0 + timedelta(minutes=1))
    assert [v for _, v in got.series["soc_pct"]] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0]
    assert got.series["battery_w"] == [] and got.series["hours_left_h"] == []
    assert [m["mode"] for m in got.modes] == ["vpp"]
    h.close()
    # Reopened: the last mode is remembered, so no duplicate mode change is written.
    h = LocalHistory(tmp_path / "h.sqlite")
    h.record_state("hall-01", {"time": (T0 + timedelta(minutes=5)).isoformat(), "mode": {"effective": "vpp"}}, T0)
    assert len(h.series("hall-01", T0, T0 + timedelta(hours=1)).modes) == 1
