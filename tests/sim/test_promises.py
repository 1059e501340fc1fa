"""The promise logic on hand-made traces: what is owed in an outage, acks from the audit log, disaster mode
held, fault alarms, lost telemetry, VPP revenue."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from types import SimpleNamespace

import pytest

from ems.sim.drill import promises as pr
from ems.sim.drill.recorder import DrillClock, HallTrace, Mark
from ems.sim.drill.scenario import Scenario
from ems.sim.telemetry_count import TelemetryCount

T0 = datetime(2025, 9, 15, 0, 0, tzinfo=timezone.utc)
STEP = timedelta(minutes=6)


def scenario(**kw) -> Scenario:
    return Scenario.model_validate({"name": "t", "start": T0, "duration_h": 48, **kw})


def trace(hours: float, *, requested="vpp", hours_left=13.0, unserved_at: datetime | None = None,
          switch_at: datetime | None = None, stored=14000.0) -> HallTrace:
    """A hall sampled every 6 min: critical load unserved from ``unserved_at`` on (100 Wh per sample)."""
    tr = HallTrace()
    t, unserved = T0, 0.0
    while t <= T0 + timedelta(hours=hours):
        if unserved_at is not None and t >= unserved_at:
            unserved += 100.0
        req = "disaster_reserve" if switch_at is not None and t >= switch_at else requested
        tr.t.append(t)
        tr.soc.append(80.0)
        tr.stored_wh.append(stored)
        tr.grid.append(True)
        tr.served_wh.append(0.0)
        tr.unserved_wh.append(unserved)
        tr.shed_wh.append(0.0)
        tr.import_wh.append(0.0)
        tr.export_wh.append(0.0)
        tr.charged_wh.append(0.0)
        tr.discharged_wh.append(0.0)
        tr.mode.append(req)
        tr.requested.append(req)
        tr.hours.append(hours_left)
        tr.alarms.append(())
        tr.fault.append(False)
        t += STEP
    return tr


def rec(traces: dict[str, HallTrace], marks: list[Mark] | None = None):
    return SimpleNamespace(traces=traces, marks=marks or [])


def outage(site: str, start_h: float, length_h: float) -> dict:
    start = T0 + timedelta(hours=start_h)
    return {"site": site, "start": start, "end": start + timedelta(hours=length_h), "planned_h": length_h}


def switch_cmd(site: str, at_h: float, mode: str = "disaster_reserve", status: str = "ok",
               delay_s: float | None = 0.1) -> pr.CommandResult:
    sent = T0 + timedelta(hours=at_h)
    acked = sent + timedelta(seconds=delay_s * 3600) if delay_s is not None else None
    return pr.CommandResult("op", "disaster", "user:mika", site, mode, "why", sent, acked, status,
                            delay_s * 3600 if delay_s is not None else None, delay_s)


def test_vpp_hall_owes_h_vpp_hours(fleet):
    s = scenario()
    # 10-hour outage from hour 10; the light goes out after 3 h: less than H_vpp (4 h) -> broken.
    halls = pr.hall_results(s, fleet, rec({"hall-01": trace(24, unserved_at=T0 + timedelta(hours=13))}), [],
                            [outage("hall-01", 10, 10)])
    o = halls["hall-01"].outages[0]
    assert o.guaranteed_h == 4 and "H_vpp" in o.basis
    assert o.served_h == pytest.approx(3.0, abs=0.1) and not o.ok
    # Out after 5 h: more than owed -> kept, even though energy went unserved later.
    halls = pr.hall_results(s, fleet, rec({"hall-01": trace(24, unserved_at=T0 + timedelta(hours=15))}), [],
                            [outage("hall-01", 10, 10)])
    o = halls["hall-01"].outages[0]
    assert o.ok and o.unserved_wh > 0 and o.served_h == pytest.approx(5.0, abs=0.1)


def test_short_outage_must_be_served_whole(fleet):
    halls = pr.hall_results(scenario(), fleet, rec({"hall-01": trace(24, unserved_at=T0 + timedelta(hours=12.5))}),
                            [], [outage("hall-01", 10, 3)])
    o = halls["hall-01"].outages[0]
    assert not o.ok and o.length_h == 3


def test_switched_hall_owes_h_disaster_after_the_deadline(fleet):
    s = scenario(promises={"reserve_deadline_h": 6})
    tr = trace(40, switch_at=T0 + timedelta(hours=2), hours_left=13.0, unserved_at=T0 + timedelta(hours=20))
    halls = pr.hall_results(s, fleet, rec({"hall-01": tr}), [switch_cmd("hall-01", 2)], [outage("hall-01", 10, 14)])
    h = halls["hall-01"]
    assert h.time_to_reserve_h == 0.0  # 13 h when the warning came: nothing to charge
    o = h.outages[0]
    assert o.guaranteed_h == 12 and "H_disaster" in o.basis
    assert not o.ok  # 10 h served of 12 owed


def test_late_switch_without_reserve_owes_only_h_vpp(fleet):
    s = scenario(promises={"reserve_deadline_h": 6})
    tr = trace(40, switch_at=T0 + timedelta(hours=9), hours_left=5.0, unserved_at=T0 + timedelta(hours=16))
    halls = pr.hall_results(s, fleet, rec({"hall-01": tr}), [switch_cmd("hall-01", 9)], [outage("hall-01", 10, 14)])
    h = halls["hall-01"]
    assert h.time_to_reserve_h is None
    o = h.outages[0]
    assert o.guaranteed_h == 4 and "only 1.0 h before" in o.basis and o.ok


def test_dead_battery_is_no_reserve(fleet):
    tr = trace(10, switch_at=T0 + timedelta(hours=1), hours_left=13.0)
    tr.fault = [True] * len(tr.t)
    halls = pr.hall_results(scenario(), fleet, rec({"hall-01": tr}), [switch_cmd("hall-01", 1)], [])
    assert halls["hall-01"].time_to_reserve_h is None and halls["hall-01"].battery_failed
    obs = pr._observations(scenario(), halls, [], None, [])
    assert any("never reached" in o and "battery failed" in o for o in obs)


def test_disaster_mode_must_be_held_until_a_return_command(fleet):
    tr = trace(10, switch_at=T0 + timedelta(hours=1))
    for i, t in enumerate(tr.t):
        if t >= T0 + timedelta(hours=5):
            tr.requested[i] = "vpp"
    checks = pr._held_checks(rec({"hall-01": tr}), [switch_cmd("hall-01", 1)])
    assert [c.ok for c in checks] == [False] and "without a return command" in checks[0].detail
    checks = pr._held_checks(rec({"hall-01": tr}), [switch_cmd("hall-01", 1), switch_cmd("hall-01", 4.9, "vpp")])
    assert [c.ok for c in checks] == [True]


def test_fault_alarm_must_reach_the_hall_and_the_central_book():
    tr = trace(5)
    tr.alarms = [("device_fault",) if t >= T0 + timedelta(hours=2) else () for t in tr.t]
    marks = [Mark(T0 + timedelta(hours=1.9), "battery_failure", ("hall-09",), "fault")]
    ok = pr._fault_checks(rec({"hall-09": tr}, marks), [{"site": "hall-09", "code": "device_fault"}])
    assert [c.ok for c in ok] == [True]
    missing = pr._fault_checks(rec({"hall-09": tr}, marks), [{"site": "hall-08", "code": "device_fault"}])
    assert [c.ok for c in missing] == [False] and "central alarm book: NO" in missing[0].detail


def _clock() -> DrillClock:
    clock = DrillClock(T0, 3600)
    clock.release()
    clock.released_wall = datetime(2026, 1, 1, tzinfo=timezone.utc)
    return clock


def test_commands_come_from_the_audit_even_when_the_operation_is_gone():
    clock = _clock()
    wall = clock.released_wall
    audit = [
        {"action": "mode_switch", "actor": "mika", "target": "hall-01", "reason": "typhoon",
         "time": (wall + timedelta(seconds=10)).isoformat(),
         "details": {"mode": "disaster_reserve", "command_id": "c1", "operation": "op-1"}},
        {"action": "ack", "actor": "site:hall-01", "target": "hall-01", "reason": "",
         "time": (wall + timedelta(seconds=12.5)).isoformat(), "details": {"command_id": "c1", "status": "ok"}},
        {"action": "mode_switch", "actor": "jma-warning-service", "target": "hall-02", "reason": "JMA",
         "time": (wall + timedelta(seconds=20)).isoformat(),
         "details": {"mode": "disaster_reserve", "command_id": "c2", "operation": "op-2"}},
    ]
    cmds = pr.command_results({}, audit, clock)  # the central restarted: no operations in memory
    c1, c2 = cmds
    assert c1.sent_at == T0 + timedelta(hours=10) and c1.status == "ok"
    assert c1.delay_wall_s == pytest.approx(2.5) and c1.delay_sim_s == pytest.approx(9000)
    assert c2.status == "sent" and c2.acked_at is None and c2.op_kind == "jma_warning"
    # With the operation known, its (simulated) times win.
    ops = {"op-1": {"id": "op-1", "kind": "disaster", "commands": [
        {"command_id": "c1", "sent_at": (T0 + timedelta(hours=10)).isoformat(), "status": "ok",
         "acked_at": (T0 + timedelta(hours=10, seconds=36)).isoformat()}]}}
    c1 = pr.command_results(ops, audit, clock)[0]
    assert c1.delay_sim_s == pytest.approx(36) and c1.delay_wall_s == pytest.approx(0.01) and c1.op_kind == "disaster"


def test_evaluate_breaks_on_missing_ack_lost_points_and_a_crash(fleet):
    s = scenario(promises={"ack_within_s": 5})
    r = rec({"hall-01": trace(4)})
    clock = _clock()
    wall = clock.released_wall
    audit = [{"action": "mode_switch", "actor": "mika", "target": "hall-01", "reason": "x",
              "time": (wall + timedelta(seconds=1)).isoformat(),
              "details": {"mode": "disaster_reserve", "command_id": "c1", "operation": "op-1"}}]
    out = pr.evaluate(s, fleet, clock, r, {}, audit, [], [], TelemetryCount(10, 9, 0, 0, 0, 1),
                      {"dead_tasks": ["daemon-hall-01: RuntimeError()"], "stalled_halls": [], "central_ok": True},
                      [], 1.0)
    broken = {c.promise for c in out.broken}
    assert broken == {"switch_acked", "telemetry", "no_crash"}
    assert out.exit_code == 1
    good = pr.evaluate(s, fleet, clock, r, {}, [], [], [], TelemetryCount(10, 10, 0, 0, 0, 0),
                       {"dead_tasks": [], "stalled_halls": [], "central_ok": True}, [], 1.0)
    assert good.exit_code == 0 and not good.broken


def test_late_ack_breaks_the_promise(fleet):
    clock = _clock()
    wall = clock.released_wall
    audit = [{"action": "mode_switch", "actor": "mika", "target": "hall-01", "reason": "x",
              "time": wall.isoformat(), "details": {"mode": "vpp", "command_id": "c1", "operation": "o"}},
             {"action": "ack", "actor": "site:hall-01", "target": "hall-01", "reason": "",
              "time": (wall + timedelta(seconds=40)).isoformat(), "details": {"command_id": "c1", "status": "ok"}}]
    out = pr.evaluate(scenario(promises={"ack_within_s": 30}), fleet, clock, rec({"hall-01": trace(2)}), {}, audit,
                      [], [], None, {"central_ok": True}, [], 1.0)
    assert [c.promise for c in out.broken] == ["switch_acked"]
    assert "40.00 s wall" in out.broken[0].detail
    assert "telemetry went to InfluxDB" in " ".join(out.observations)


def test_vpp_revenue_counts_what_the_battery_saved(fleet):
    site = fleet.site("hall-01")
    tr = trace(2)
    n = len(tr.t)
    # Without the battery the hall would import 1 kWh per sample; the battery supplies half of it.
    tr.import_wh = [500.0 * i for i in range(n)]
    tr.discharged_wh = [500.0 * i for i in range(n)]
    saved = pr.vpp_revenue_jpy(site, tr, tr.t[-1], 30)
    assert saved > 0
    # Charging from the grid with nothing to show for it costs money.
    tr.import_wh = [1500.0 * i for i in range(n)]
    tr.discharged_wh = [0.0] * n
    tr.charged_wh = [500.0 * i for i in range(n)]
    assert pr.vpp_revenue_jpy(site, tr, tr.t[-1], 30) < 0
    assert pr.vpp_revenue_jpy(site, tr, T0 - timedelta(hours=1), 30) == 0.0


def test_reserve_by_arrival_kept_unreachable_or_broken(fleet):
    """A hall a typhoon forecast reaches: reserve reached before the arrival (kept), too little charging power
    for the time left (unreachable, with the figures: not broken), time enough but not reached, or never
    switched (broken)."""
    site = fleet.sites[0]  # 5.9 kW battery and inverter, critical load site.loads.critical_w

    def hall(warned_h, to_reserve_h, hours_at_warning):
        h = pr.HallResult(site.id, site.name, site.battery.capacity_wh, site.loads.critical_w, site.reserve.h_vpp,
                          site.reserve.h_disaster)
        h.warned_at = None if warned_h is None else T0 + timedelta(hours=warned_h)
        h.time_to_reserve_h, h.hours_at_warning = to_reserve_h, hours_at_warning
        return h

    arrival = T0 + timedelta(hours=10)
    actions = [{"kind": "typhoon_forecast", "t": T0, "arrivals": {site.id: arrival}}]

    def check(h):
        [c] = pr._arrival_checks(fleet, {site.id: h}, actions)
        return c

    kept = check(hall(0, 4.0, 6.0))
    assert kept.ok and "6.0 h before the forecast arrival" in kept.detail
    missing_h = site.reserve.h_disaster - 0.5
    policy = site.safety_policy()
    need_h = missing_h * site.loads.critical_w / (min(policy.max_charge_w, policy.grid_import_limit_w)
                                                  * policy.charge_efficiency)
    late = check(hall(10 - need_h / 2, None, 0.5))  # half the charging time needed is left
    assert late.ok and late.detail.startswith("unreachable:") and "kWh missing" in late.detail, late.detail
    broken = check(hall(0, 12.0, 6.0))  # 10 h were enough for 6 h of missing reserve, reached only after 12 h
    assert not broken.ok and "reachable" in broken.detail and "after 12.0 h" in broken.detail
    never = check(hall(None, None, None))
    assert not never.ok and "not switched" in never.detail
