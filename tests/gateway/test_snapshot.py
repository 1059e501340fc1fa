"""Snapshot: derived values with units, freshness and plausibility checks."""

from __future__ import annotations

import math
from dataclasses import FrozenInstanceError
from datetime import datetime
from types import SimpleNamespace

import pytest

from devices.readings import BatteryState, PVReading
from ems.gateway.snapshot import CycleStats, SiteSnapshot, check_data, implausible, is_stale, stale_after_s

from .helpers import T0, at, battery, meter, snap


def test_net_load_and_stored_energy():
    s = snap(soc=40.0, battery_w=1500.0, meter_w=-500.0)
    assert s.net_load_w == 1000.0  # battery covers 1.5 kW, 0.5 kW still exported
    assert s.stored_wh(15000.0) == 6000.0
    assert snap(no_meter=True).net_load_w is None
    assert snap(no_battery=True).net_load_w is None and snap(no_battery=True).stored_wh(1) is None


def test_snapshot_is_frozen_and_carries_health_and_stats():
    health = {"battery": SimpleNamespace(ok=True, last_ok_at=T0, last_latency_ms=3.2,
                                         consecutive_failures=0, total_failures=1)}
    s = SiteSnapshot(time=T0, site_id="hall-01", device_health=health,
                     stats=CycleStats(last_cycle_ms=4.5, cycle_count=10, overruns=1),
                     pv=PVReading("pv", T0, 3000.0))
    assert s.device_health["battery"].last_latency_ms == 3.2 and s.stats.overruns == 1
    with pytest.raises(FrozenInstanceError):
        s.site_id = "x"  # type: ignore[misc]
    assert s.with_mode("m").mode == "m" and s.mode is None  # type: ignore[arg-type]


def test_snapshot_time_must_be_aware():
    with pytest.raises(ValueError):
        SiteSnapshot(time=datetime(2025, 1, 1), site_id="hall-01")


def test_staleness():
    assert stale_after_s(1.0, 5) == 5.0
    with pytest.raises(ValueError):
        stale_after_s(0, 5)
    with pytest.raises(ValueError):
        stale_after_s(1.0, 0)
    r = battery(time=T0)
    assert not is_stale(r, at(5.0), 5.0)
    assert is_stale(r, at(5.01), 5.0)
    assert is_stale(r, at(-6), 5.0)  # stamped in the future
    assert is_stale(None, T0, 5.0)
    assert snap(t=10, age_s=3).age_s(snap(t=10, age_s=3).battery) == 3.0


def test_check_data_reports_each_problem():
    assert check_data(snap(), 5.0).ok
    c = check_data(snap(no_meter=True), 5.0)
    assert c.missing == ("no meter reading",) and not c.ok
    c = check_data(snap(t=10, age_s=7), 5.0)
    assert len(c.stale) == 2 and "7.0 s old" in c.stale[0]
    c = check_data(snap(bat_kw=dict(state=BatteryState.FAULT)), 5.0)
    assert c.fault and "FAULT" in c.fault


@pytest.mark.parametrize("kw, word", [
    (dict(soc=-1.0), "SoC"), (dict(soc=100.5), "SoC"), (dict(soc=math.nan), "SoC"),
    (dict(battery_w=math.inf), "not a number"), (dict(battery_w=10001.0), "beyond 2"),
    (dict(meter_w=math.nan), "meter"), (dict(bat_kw=dict(max_charge_w=-5.0)), "max_charge_w"),
])
def test_implausible_values(kw, word):
    problems = implausible(snap(**kw), max_power_w=5000.0)
    assert len(problems) == 1 and word in problems[0]


def test_plausible_edges():
    assert implausible(snap(soc=0.0, battery_w=10000.0), max_power_w=5000.0) == []
    assert implausible(snap(soc=100.0, battery_w=1e6)) == []  # no rating: no power check
    assert meter(1.0).grid_ok
