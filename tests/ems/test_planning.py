"""The optimizer's plan inside the daemon: re-planning triggers, execution rule, leases."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from devices.readings import BatteryReading, MeterReading
from ems.config import load_fleet
from ems.modes import Mode
from ems.planning import OptimizerPlanSource, slot_start
from ems.snapshot import SiteSnapshot
from optimizer.execution import self_use_setpoint
from optimizer.settings import Commitment

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 11, 22, 1, 5, tzinfo=timezone.utc)  # 10:05 JST


@pytest.fixture(scope="module")
def site():
    return load_fleet(ROOT / "config" / "fleet.yaml").site("hall-02")


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


def test_replans_at_slot_boundaries_and_mode_changes_only(site):
    src = OptimizerPlanSource(site)
    assert src.setpoint_at(snap(T0), Mode.VPP) is not None
    assert src.plans_made == 1 and src.plan.status.value.startswith("optimal")
    src.setpoint_at(snap(T0 + timedelta(minutes=10)), Mode.VPP)
    assert src.plans_made == 1, "same slot, nothing changed: no re-plan"
    src.setpoint_at(snap(slot_start(T0, src.slot) + src.slot), Mode.VPP)
    assert src.plans_made == 2 and src.last_reason == "new slot"
    w, why = src.setpoint_at(snap(slot_start(T0, src.slot) + src.slot + timedelta(minutes=1)),
                             Mode.DISASTER_RESERVE)
    assert src.plans_made == 3 and "disaster_reserve" in src.last_reason
    assert w < 0, f"disaster_reserve charges: {w} W ({why})"


def test_manual_safe_and_islanded_follow_the_rule(site):
    src = OptimizerPlanSource(site)
    for mode in (Mode.MANUAL, Mode.SAFE, Mode.ISLANDED):
        assert src.setpoint_at(snap(T0), mode) is None
    assert src.plans_made == 0


def test_dispatch_lease_enters_the_plan_and_lapses(site):
    src = OptimizerPlanSource(site)
    start = slot_start(T0, src.slot) + 6 * src.slot  # 13:00 JST
    lease = Commitment(start, start + 2 * src.slot, 4000.0, id="d-1")
    src.set_commitments([lease])
    src.setpoint_at(snap(T0, soc=80.0), Mode.VPP)
    i = src.plan.slot_of(start)
    assert src.plan.battery_w[i] == pytest.approx(4000.0, abs=1.0), "the plan delivers the committed output"
    src.setpoint_at(snap(start + 2 * src.slot + timedelta(minutes=1), soc=60.0), Mode.VPP)
    assert src.commitments == (), "the lease lapsed at its end"


def test_solver_failure_gives_a_flagged_rule_plan_and_still_a_setpoint(site):
    from optimizer.planner import SitePlanner
    from tests.optimizer.test_planner import FailingSolver

    src = OptimizerPlanSource(site)
    src.planner = SitePlanner(site.safety_policy(), site_id=site.id, solver_factory=FailingSolver)
    got = src.setpoint_at(snap(T0), Mode.VPP)
    assert got is not None
    assert src.plan.fallback and "fallback" in got[1]


def test_expired_plan_is_replaced(site):
    src = OptimizerPlanSource(site)
    src.setpoint_at(snap(T0), Mode.VPP)
    later = src.plan.expires_at + timedelta(seconds=1)
    assert src.setpoint_at(snap(later), Mode.VPP) is not None
    assert src.plans_made == 2 and src.plan.is_valid_at(later)
