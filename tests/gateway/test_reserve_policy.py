"""ems.gateway.reserve_policy: the floor's look-ahead and restoring the reserve, beside the guard."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from devices.readings import BatteryReading, MeterReading
from ems.gateway.modes import Mode
from ems.gateway.reserve_policy import ReservePolicy
from ems.gateway.snapshot import SiteSnapshot
from tests.gateway.test_daemon import fast_site


def _policy(site_id: str = "hall-04") -> tuple[object, ReservePolicy]:
    site = fast_site(site_id)
    return site, ReservePolicy(site.safety_policy(), site.loads.critical_w, 0.5)


def test_below_the_floor_in_vpp_the_battery_charges_back_whatever_the_plan():
    site, reserve = _policy()
    t = datetime.now(timezone.utc)
    snap = SiteSnapshot(t, site.id, battery=BatteryReading("battery", t, soc_pct=30.0, power_w=0.0),
                        meter=MeterReading("meter", t, power_w=500.0))
    floor = 0.40 * site.battery.capacity_wh
    w, why = reserve.restore(snap, Mode.VPP, floor, 2000.0, "plan: discharge for the evening peak")
    assert w < 0 and "restoring the reserve" in why
    # Within the restore time, not faster than the battery may charge.
    deficit = floor - 0.30 * site.battery.capacity_wh
    policy = site.safety_policy()
    expected = min(policy.max_charge_w, deficit / policy.charge_efficiency / ReservePolicy.RESTORE_WITHIN_H)
    assert -w == expected
    # A plan that already charges harder is kept.
    assert reserve.restore(snap, Mode.VPP, floor, -expected - 1, "p") == (-expected - 1, "p")
    # Above the floor, or outside vpp, the plan stands.
    assert reserve.restore(snap, Mode.VPP, 0.2 * site.battery.capacity_wh, 2000.0, "p") == (2000.0, "p")
    assert reserve.restore(snap, Mode.MANUAL, floor, 2000.0, "p") == (2000.0, "p")


def test_the_floor_looks_ahead_to_the_evening_need():
    """In the late afternoon the floor already holds the energy the night's lighting will need."""
    site, reserve = _policy()
    # 16:30 JST: the critical load rises at dusk, within the 2 h look-ahead.
    afternoon = datetime(2026, 12, 7, 7, 30, tzinfo=timezone.utc)
    critical, pv = reserve.critical_forecast(afternoon)
    now_only = ReservePolicy(reserve.policy, reserve.critical_w, 0.5)
    now_only.FLOOR_LOOKAHEAD_H = 0.0
    ahead = reserve.floor_wh(Mode.VPP, critical, pv)
    plain = now_only.floor_wh(Mode.VPP, critical, pv)
    assert ahead >= plain
    # The look-ahead floor is the highest of the plain floors over the next 2 h of start times.
    plain_later = [now_only.floor_wh(Mode.VPP, *reserve.critical_forecast(afternoon + timedelta(minutes=30 * k)))
                   for k in range(0, 5)]
    assert abs(ahead - max(plain_later)) < 1e-6
    assert max(plain_later) > plain  # and it is higher than now's: the test's hour has a rising need
    # disaster_reserve holds more than vpp (12 h against h_vpp).
    assert reserve.floor_wh(Mode.DISASTER_RESERVE, critical, pv) > ahead


def test_a_reserve_the_battery_cannot_hold_from_a_night_start_is_an_alarm_with_the_figures():
    """The floor is capped at a full battery, so a promise larger than it must be seen on the dashboard."""
    site, reserve = _policy("hall-01")
    now = datetime(2026, 12, 7, 3, 0, tzinfo=timezone.utc)
    conditions = {c.code: c for c in reserve.shortfall_alarms(now)}
    usable = reserve.policy.max_energy_wh - reserve.policy.min_energy_wh
    short = reserve.shortfall(Mode.DISASTER_RESERVE, now)
    if short is None:  # the hall's battery holds it: no alarm
        assert not conditions["reserve_short_disaster"].active
    else:
        hours, carried, need = short
        assert need > usable and carried < hours
        c = conditions["reserve_short_disaster"]
        assert c.active and f"{need / 1000:.1f} kWh" in c.message and f"{carried:.1f} h" in c.message
    # A hall whose critical load is small enough keeps the promise from any start: no alarm.
    small = ReservePolicy(reserve.policy, 100.0, 0.5)
    assert not any(c.active for c in small.shortfall_alarms(now))
    # And a huge one cannot, in both modes.
    huge = ReservePolicy(reserve.policy, 5000.0, 0.5)
    assert all(c.active for c in huge.shortfall_alarms(now))
