"""The optimizer's plan inside the daemon: re-planning triggers, execution rule, leases."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

import numpy as np

from devices.readings import BatteryReading, MeterReading, PVReading
from ems.config import load_fleet
from ems.gateway.history_store import history_path, load_history
from ems.gateway.modes import Mode
from ems.gateway.planning import OptimizerPlanSource, SlotMeans, slot_start
from ems.gateway.snapshot import SiteSnapshot
from optimizer.execution import self_use_setpoint
from optimizer.forecast import configured_load_w
from optimizer.settings import Commitment

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 22, 1, 5, tzinfo=timezone.utc)  # 10:05 JST


@pytest.fixture(scope="module")
def site():
    return load_fleet(ROOT / "config" / "fleet.yaml").site("hall-02")


@pytest.fixture
def new_source():
    """OptimizerPlanSource(site, **kw), its worker stopped after the test."""
    made: list[OptimizerPlanSource] = []

    def make(site, **kw) -> OptimizerPlanSource:
        made.append(OptimizerPlanSource(site, **kw))
        return made[-1]

    yield make
    for src in made:
        asyncio.run(src.aclose())


def settled(src: OptimizerPlanSource, s: SiteSnapshot, mode: Mode):
    """setpoint_at, then wait for the re-plan it may have started and ask again: the answer with that plan."""
    src.setpoint_at(s, mode)
    assert src.wait_idle(30.0), "the planning worker did not finish"
    return src.setpoint_at(s, mode)


def snap(t: datetime, soc: float = 50.0, battery_w: float = 0.0, grid_w: float = 500.0) -> SiteSnapshot:
    return SiteSnapshot(
        time=t, site_id="hall-02",
        battery=BatteryReading("battery", t, soc_pct=soc, power_w=battery_w),
        meter=MeterReading("meter", t, power_w=grid_w),
    )


def test_self_use_takes_surplus_covers_load_but_never_discharges_to_export():
    # More PV than forecast: the battery charges the surplus beyond the planned 1 kW export.
    assert self_use_setpoint(0.0, 0.0, 1000.0, -1000.0, -3000.0) == -2000.0
    # Less PV while the plan exported 10 kW: the battery must not discharge to keep exporting.
    assert self_use_setpoint(0.0, 0.0, 10_000.0, -10_000.0, -2_900.0) == 0.0
    # Unexpected load with no planned import: cover it down to zero grid flow only.
    assert self_use_setpoint(500.0, 0.0, 0.0, 500.0, 1_700.0) == 1_700.0
    # The plan imports anyway: keep the plan, the grid takes the error.
    assert self_use_setpoint(0.0, 2_000.0, 0.0, 2_000.0, 3_000.0) == 0.0


def test_self_use_charges_only_what_would_be_exported():
    # The plan grid-charges 3 kW at night (import 3.5 kW); the load is 300 W lower:
    # the import simply falls, the battery does not charge more from the grid.
    assert self_use_setpoint(-3000.0, 3500.0, 0.0, 3500.0, 3200.0) == -3000.0
    # The plan imports 500 W; PV is 2 kW above forecast: 500 W of the error only
    # lowers the import, the 1.5 kW that would flow out is charged.
    assert self_use_setpoint(0.0, 500.0, 0.0, 500.0, -1500.0) == -1500.0
    # The plan discharges 2 kW to cover the load; the load is 1.2 kW lower: the battery
    # discharges less rather than exporting stored energy.
    assert self_use_setpoint(2000.0, 0.0, 0.0, 2000.0, 800.0) == 800.0
    # ... but keeps a planned 1 kW export (the plan chose to sell at this price).
    assert self_use_setpoint(3000.0, 0.0, 1000.0, 2000.0, 800.0) == 1800.0


def test_replans_at_slot_boundaries_and_mode_changes_only(site, new_source):
    src = new_source(site, deviation_w=1e9)  # snap()'s fixed 500 W import would be a deviation from any plan
    assert src.setpoint_at(snap(T0), Mode.VPP) is None, "no plan yet (the worker is making it): the rule decides"
    assert settled(src, snap(T0), Mode.VPP) is not None
    assert src.plans_made == 1 and src.plan.status.value.startswith("optimal")
    assert src.last_reason == "first plan"
    settled(src, snap(T0 + timedelta(minutes=10)), Mode.VPP)
    assert src.plans_made == 1, "same slot, nothing changed: no re-plan"
    settled(src, snap(slot_start(T0, src.slot) + src.slot), Mode.VPP)
    assert src.plans_made == 2 and src.last_reason == "new slot"
    w, why = settled(src, snap(slot_start(T0, src.slot) + src.slot + timedelta(minutes=1)), Mode.DISASTER_RESERVE)
    assert src.plans_made == 3 and "disaster_reserve" in src.last_reason
    assert w < 0, f"disaster_reserve charges: {w} W ({why})"


def test_manual_safe_and_islanded_follow_the_rule(site, new_source):
    src = new_source(site)
    for mode in (Mode.MANUAL, Mode.SAFE, Mode.ISLANDED):
        assert src.setpoint_at(snap(T0), mode) is None
    assert src.wait_idle(1.0) and src.plans_made == 0


def test_dispatch_lease_enters_the_plan_and_lapses(site, new_source):
    src = new_source(site)
    start = slot_start(T0, src.slot) + 6 * src.slot  # 13:00 JST
    lease = Commitment(start, start + 2 * src.slot, 4000.0, id="d-1")
    src.set_commitments([lease])
    settled(src, snap(T0, soc=80.0), Mode.VPP)
    i = src.plan.slot_of(start)
    assert src.plan.battery_w[i] == pytest.approx(4000.0, abs=1.0), "the plan delivers the committed output"
    settled(src, snap(start + 2 * src.slot + timedelta(minutes=1), soc=60.0), Mode.VPP)
    assert src.commitments == (), "the lease lapsed at its end"
    assert src.plan.slot_of(start + 2 * src.slot) == 0, "re-planned from the lapse on"


def test_solver_failure_gives_a_flagged_rule_plan_and_still_a_setpoint(site, new_source):
    from optimizer.planner import SitePlanner
    from tests.optimizer.test_planner import FailingSolver

    src = new_source(site, planner=SitePlanner(site.safety_policy(), site_id=site.id, solver_factory=FailingSolver))
    got = settled(src, snap(T0), Mode.VPP)
    assert got is not None
    assert src.plan.fallback and "fallback" in got[1]
    assert src.plan_info["fallback"] is True and src.plan_info["status"] == "fallback"


def test_expired_plan_is_replaced(site, new_source):
    src = new_source(site)
    settled(src, snap(T0), Mode.VPP)
    later = src.plan.expires_at + timedelta(seconds=1)
    assert src.setpoint_at(snap(later), Mode.VPP) is None, "the expired plan is not followed while re-planning"
    assert settled(src, snap(later), Mode.VPP) is not None
    assert src.plans_made == 2 and src.plan.is_valid_at(later) and src.last_reason == "plan expired"


def metered(t: datetime, load_w: float, pv_w: float, battery_w: float = 0.0, age_s: float = 0.0) -> SiteSnapshot:
    """A snapshot of a hall drawing ``load_w`` with ``pv_w`` of PV: meter = load − PV − battery."""
    seen = t - timedelta(seconds=age_s)
    return SiteSnapshot(
        time=t, site_id="hall-02",
        battery=BatteryReading("battery", seen, soc_pct=60.0, power_w=battery_w),
        meter=MeterReading("meter", seen, power_w=load_w - pv_w - battery_w),
        pv=PVReading("pv", seen, power_w=pv_w),
    )


def test_slot_means_average_load_and_pv_and_skip_thin_or_stale_slots():
    means = SlotMeans(timedelta(minutes=30), has_pv=True)
    start = datetime(2026, 11, 22, 0, 0, tzinfo=timezone.utc)
    out = [means.add(metered(start + timedelta(minutes=m), 1000 + 10 * m, 400, battery_w=300)) for m in range(0, 30, 5)]
    assert out == [None] * 6
    done = means.add(metered(start + timedelta(minutes=31), 0, 0))
    assert done == (start, pytest.approx(1125.0), pytest.approx(400.0)), "load = meter + battery + PV"
    # The next slot: only its last 5 minutes were seen (a restart): not a slot to learn from.
    assert means.add(metered(start + timedelta(minutes=85), 900, 0)) is None
    assert means.add(metered(start + timedelta(minutes=95), 900, 0)) is None
    # Stale readings are not samples.
    stale = [means.add(metered(start + timedelta(minutes=m), 5000, 0, age_s=600)) for m in range(95, 125, 5)]
    assert stale == [None] * 6
    assert means.add(metered(start + timedelta(minutes=126), 900, 0)) is None


def test_slot_means_skip_meter_and_battery_readings_of_different_moments():
    """A battery reading from before it began charging at 15 kW, paired with the meter's import of now,
    would teach a 15.7 kW load: such samples are skipped; readings close together still count."""
    means = SlotMeans(timedelta(minutes=30), has_pv=False, max_age_s=60.0)
    start = datetime(2026, 11, 22, 0, 0, tzinfo=timezone.utc)
    for m in range(0, 30, 5):
        t = start + timedelta(minutes=m)
        good = metered(t, 700, 0, battery_w=-15_000)
        mismatched = SiteSnapshot(time=t, site_id="hall-02", meter=good.meter,
                                  battery=BatteryReading("battery", t - timedelta(seconds=40), soc_pct=60.0, power_w=0.0))
        means.add(mismatched)
        nearby = SiteSnapshot(time=t, site_id="hall-02", meter=good.meter,
                              battery=BatteryReading("battery", t - timedelta(seconds=20), soc_pct=60.0,
                                                     power_w=-15_000))
        means.add(nearby)
    # The slot's mean (returned when the next slot starts) is the check: only the nearby readings count.
    assert means.add(metered(start + timedelta(minutes=31), 0, 0)) == (start, pytest.approx(700.0), None)


def test_the_daemons_forecaster_learns_the_hall_it_measures(site, new_source):
    """A hall drawing 1.6× its configured profile: after three days the plans forecast that, not the configuration."""
    src = new_source(site)
    t = _run_hall(src, site, days=3, factor=1.6)
    assert src.forecaster.load_model != "configured", src.forecaster.skill_w
    times = [slot_start(t, src.slot) + k * src.slot for k in range(48)]
    configured = configured_load_w(times, site.loads.base_w, site.loads.peak_w)
    learnt = src.forecaster.forecast(times, np.zeros(48), np.zeros(48)).load_w
    assert np.mean(learnt) == pytest.approx(1.6 * np.mean(configured), rel=0.05)


def _run_hall(src: OptimizerPlanSource, site, days: int, factor: float,
              start: datetime = datetime(2026, 11, 16, 15, 0, tzinfo=timezone.utc)) -> datetime:
    """Snapshots every 10 min of a hall drawing ``factor`` × its configured profile; returns the last time."""
    for m in range(0, days * 24 * 60, 10):
        t = start + timedelta(minutes=m)
        load = factor * float(configured_load_w([slot_start(t, src.slot)], site.loads.base_w, site.loads.peak_w)[0])
        src.setpoint_at(metered(t, load, 0.0), Mode.VPP)
        # Days pass here in milliseconds: let each re-plan finish, as it would within a real cycle (the
        # worker forecasts under the forecaster's lock; a slot finished meanwhile would wait for a later call).
        assert src.wait_idle(30.0)
    return t


def test_what_was_learnt_survives_a_restart(site, tmp_path, new_source):
    first = new_source(site, state_dir=tmp_path)
    t = _run_hall(first, site, days=3, factor=1.6)
    again = new_source(site, state_dir=tmp_path)
    settled(again, metered(t + timedelta(minutes=10), 1000.0, 0.0), Mode.VPP)  # restores on its first snapshot
    assert again.forecaster.load_model == first.forecaster.load_model != "configured"
    times = [slot_start(t, first.slot) + k * first.slot for k in range(48)]
    np.testing.assert_allclose(again.forecaster.forecast(times, np.zeros(48), np.zeros(48)).load_w,
                               first.forecaster.forecast(times, np.zeros(48), np.zeros(48)).load_w, rtol=0.01)


def test_a_damaged_history_file_keeps_its_good_lines_and_names_the_bad(site, tmp_path, caplog, new_source):
    path = history_path(tmp_path, site.id)
    path.write_text("start,load_w,pv_w,critical_w,weather\n"
                    "2026-11-16T15:00:00+00:00,1200.0,0.0,,0.8\n"
                    "2026-11-16T15:30:00,1200.0,0.0,,0.8\n"
                    "2026-11-16T16:00:00+00:00,-5,0.0,,0.8\n"
                    "2026-11-16T16:30:00+00:00,abc,0.0,,0.8\n"
                    "2026-11-16T17:00:00+00:00,1100.0\n"
                    "2026-11-16T17:30:00+00:00,1150.0,0.0,,0.8\n")
    rows, problems = load_history(path)
    assert [r[1] for r in rows] == [1200.0, 1150.0]
    assert [p.removeprefix(f"{path}:").split(":")[0] for p in problems] == ["3", "4", "5", "6"]
    assert "no UTC offset" in problems[0] and "load_w '-5'" in problems[1] and "not a number" in problems[2]
    with caplog.at_level("WARNING"):
        src = new_source(site, state_dir=tmp_path)
        settled(src, metered(datetime(2026, 11, 16, 18, 5, tzinfo=timezone.utc), 1000.0, 0.0), Mode.VPP)
    assert len(src.forecaster.history()) == 2 and "line skipped" in caplog.text
    path.write_text("when,what\n1,2\n")
    assert load_history(path)[0] == [] and "header" in load_history(path)[1][0]


def test_islanded_load_is_not_learnt(site, new_source):
    src = new_source(site)
    start = datetime(2026, 11, 16, 15, 0, tzinfo=timezone.utc)
    for m in range(0, 2 * 24 * 60, 10):
        src.setpoint_at(metered(start + timedelta(minutes=m), 200.0, 0.0), Mode.ISLANDED)
    assert not src.forecaster.history()


def test_a_sleeping_inverter_at_night_still_lets_the_load_be_learnt():
    dark = SlotMeans(timedelta(minutes=30), has_pv=True, is_dark=lambda t: True)
    day = SlotMeans(timedelta(minutes=30), has_pv=True, is_dark=lambda t: False)
    start = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)  # 21:00 JST
    for means in (dark, day):
        for m in range(0, 30, 5):
            snap = metered(start + timedelta(minutes=m), 700, 0)
            means.add(SiteSnapshot(time=snap.time, site_id=snap.site_id, battery=snap.battery, meter=snap.meter))
    assert dark.add(metered(start + timedelta(minutes=31), 0, 0)) == (start, pytest.approx(700.0), 0.0)
    assert day.add(metered(start + timedelta(minutes=31), 0, 0)) is None, "by day a silent inverter is unknown PV"


def test_history_rows_from_a_clock_that_ran_fast_are_not_restored(site, tmp_path, new_source):
    path = history_path(tmp_path, site.id)
    path.write_text("start,load_w,pv_w,critical_w,weather\n"
                    "2026-11-16T15:00:00+00:00,1200.0,0.0,,0.8\n"
                    "2027-06-02T15:00:00+00:00,1200.0,0.0,,0.8\n")
    src = new_source(site, state_dir=tmp_path)
    settled(src, metered(datetime(2026, 11, 16, 18, 5, tzinfo=timezone.utc), 1000.0, 0.0), Mode.VPP)
    assert [r[0].year for r in src.forecaster.history()] == [2026]
