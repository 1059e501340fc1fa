"""The drill's figures per hall and its promises, from the recorded traces, the operations and the audit log.

Promises (a broken one makes ``ems drill`` exit with status 1):

* ``critical_load``: during every outage a hall serves its critical load
  without a gap for min(outage length, guaranteed hours).  Guaranteed:
  H_disaster when the hall was in disaster_reserve and had either reached
  H_disaster hours or had ``reserve_deadline_h`` to do so before the outage;
  otherwise H_vpp (the reserve VPP operation always keeps).
* ``switch_acked``: every disaster switch and return command (staff or JMA)
  acked ``ok`` within ``ack_within_s`` wall seconds.
* ``telemetry``: no more than ``max_lost_points`` points produced at the
  halls are missing from the history store after draining.
* ``disaster_held``: a hall in disaster_reserve leaves it only after a
  return-to-VPP command for it (never by itself, a broker or a central outage).
* ``fault_alarmed``: a failed battery raises ``device_fault`` at the hall and
  in the central alarm book.
* ``no_crash``: every daemon, shipper and the central service still run.
* ``reserve_by_arrival``: a hall that a typhoon forecast reaches (the central
  service's forecast arrival of storm-force wind) is switched and holds
  H_disaster hours by that arrival — unless its battery and inverter cannot
  charge that much in the time between the switch and the arrival, which the
  check states with the figures (it is then kept as "unreachable", not broken).

Times are simulated (UTC); "wall" delays are simulated delays ÷ speed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np

from ems.config import FleetConfig, SiteConfig
from ems.sim.drill.recorder import DrillClock, HallTrace, Mark, Recorder
from ems.sim.drill.scenario import Scenario

UNSERVED_EPS_WH = 1.0  # counter noise below this is not a dark shelter
#: The reserve promise holds to within this share of the hours owed: the reserve is sized on the hall's
#: configured critical-load profile, and a real (or simulated) shelter draws a few per cent more or less on a
#: given night.  H hours of the configured load are kept to the minute; the drill states it this way.
LOAD_VARIATION_SHARE = 0.05
HOURS_EPS = 0.05


@dataclass
class CommandResult:
    """One mode command: operation, who, which hall, sent/acked (sim UTC), status, delays [s]."""

    op: str
    op_kind: str
    actor: str
    site: str
    mode: str
    reason: str
    sent_at: datetime
    acked_at: datetime | None
    status: str
    delay_sim_s: float | None
    delay_wall_s: float | None


@dataclass
class OutageResult:
    """One outage at one hall: times, length [h], guaranteed hours [h] and why, reserve at its start,
    hours served without a gap [h], unserved critical and shed non-critical energy [Wh]."""

    site: str
    start: datetime
    end: datetime
    length_h: float
    guaranteed_h: float
    basis: str
    hours_left_at_start: float | None
    soc_at_start: float
    served_h: float
    unserved_wh: float
    shed_wh: float
    ok: bool
    islanded_after_min: float | None = None
    resynced_after_min: float | None = None


@dataclass
class HallResult:
    """Figures of one hall (see the report for their meaning); energies [Wh], hours [h], money [JPY]."""

    site: str
    name: str
    capacity_wh: float
    critical_w: float
    h_vpp: float
    h_disaster: float
    warned_at: datetime | None = None
    warned_by: str | None = None
    energy_at_warning_wh: float | None = None
    hours_at_warning: float | None = None
    time_to_reserve_h: float | None = None
    outages: list[OutageResult] = field(default_factory=list)
    vpp_revenue_jpy: float = 0.0
    revenue_until: datetime | None = None
    final_mode: str = ""
    battery_failed: bool = False


@dataclass
class Check:
    """One promise checked on one subject (hall, command, fleet)."""

    promise: str
    subject: str
    ok: bool
    detail: str


@dataclass
class DrillOutcome:
    """Everything the report needs, and the exit status."""

    scenario: Scenario
    fleet: FleetConfig
    speed: float
    wall_s: float
    halls: dict[str, HallResult]
    commands: list[CommandResult]
    checks: list[Check]
    observations: list[str]
    telemetry: Any
    liveness: dict[str, Any]
    marks: list[Mark]
    traces: dict[str, HallTrace]
    central_alarms: list[dict] = field(default_factory=list)

    @property
    def broken(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    @property
    def exit_code(self) -> int:
        return 1 if self.broken else 0


# -- commands ---------------------------------------------------------------------------------
def _iso(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def command_results(ops: dict[str, dict], audit: list[dict], clock: DrillClock) -> list[CommandResult]:
    """Mode commands from the audit log (complete across central restarts), timed by the operations API
    where it knows them, else by the audit records' wall times mapped onto simulated time."""
    by_cmd = {c["command_id"]: (op, c) for op in ops.values() for c in op.get("commands", [])}
    acks: dict[str, dict] = {}
    for rec in audit:
        if rec["action"] == "ack":
            cid = (rec.get("details") or {}).get("command_id")
            if cid and cid not in acks:
                acks[cid] = rec
    out = []
    for rec in audit:
        if rec["action"] != "mode_switch":
            continue
        d = rec.get("details") or {}
        cid = d.get("command_id")
        op, cmd = by_cmd.get(cid, (None, None))
        sent = _iso(cmd["sent_at"]) if cmd else clock.sim_of_wall(_iso(rec["time"]))
        acked, status = (None, "sent")
        if cmd and cmd.get("acked_at"):
            acked, status = _iso(cmd["acked_at"]), cmd["status"]
        elif cid in acks:
            a = acks[cid]
            acked = clock.sim_of_wall(_iso(a["time"]))
            status = (a.get("details") or {}).get("status") or "ok"
        elif cmd:
            status = cmd["status"]
        delay = (acked - sent).total_seconds() if acked else None
        out.append(CommandResult(
            op=d.get("operation", ""), op_kind=op["kind"] if op else ("jma_warning" if rec["actor"].startswith("jma")
                                                                        else "?"),
            actor=rec["actor"], site=rec["target"], mode=d.get("mode", ""), reason=rec.get("reason", ""),
            sent_at=sent, acked_at=acked, status=status, delay_sim_s=delay,
            delay_wall_s=delay / clock.speed if delay is not None else None))
    return sorted(out, key=lambda c: (c.sent_at, c.site))


# -- per hall -----------------------------------------------------------------------------------
def _hours_between(a: datetime, b: datetime) -> float:
    return (b - a).total_seconds() / 3600.0


def _first_index_from(tr: HallTrace, t: datetime) -> int:
    i = tr.index_at(t)
    return 0 if i is None else i


def vpp_revenue_jpy(site: SiteConfig, tr: HallTrace, until: datetime, slot_minutes: int) -> float:
    """Value of the battery's operation [JPY] from the first sample to ``until``: the grid bill without
    the battery (same load and PV) minus the bill with it, at the prices the halls planned with: the
    synthetic day-ahead prices the simulation's central service publishes (buy = spot + adder)."""
    from ems.gateway.planning import slot_start, synthetic_prices
    from ems.sim.central_server import SIM_PRICE_SEED

    end = tr.index_at(until)
    if end is None or end < 1:
        return 0.0
    n = end + 1
    imp, exp = np.diff(tr.import_wh[:n]), np.diff(tr.export_wh[:n])
    batt = np.diff(tr.discharged_wh[:n]) - np.diff(tr.charged_wh[:n])
    slot = timedelta(minutes=slot_minutes)
    starts = [slot_start(t, slot) for t in tr.t[: n - 1]]
    uniq = sorted(set(starts))
    prices = synthetic_prices(SIM_PRICE_SEED).prices(uniq)
    buy_u, sell_u = prices.buy, prices.sell
    pos = {t: k for k, t in enumerate(uniq)}
    idx = np.array([pos[t] for t in starts])
    buy, sell = buy_u[idx], sell_u[idx]
    net_without = imp - exp + batt  # what the meter would have seen without the battery [Wh]
    sell_without = sell if site.grid.export_limit_w > 0 else np.zeros_like(sell)
    bill_without = np.maximum(net_without, 0) * buy - np.maximum(-net_without, 0) * sell_without
    bill_with = imp * buy - exp * sell
    return float(np.sum(bill_without - bill_with) / 1000.0)


def _outage(site: SiteConfig, tr: HallTrace, o: dict, hall: HallResult, deadline_h: float, tol_h: float,
            rec_times: list[datetime]) -> OutageResult:
    start, end = o["start"], o["end"]
    i0 = _first_index_from(tr, start)
    i1 = tr.index_at(end)
    i1 = len(tr.t) - 1 if i1 is None else min(len(tr.t) - 1, i1 + 1)  # the sample right after the return
    length = _hours_between(start, end)
    base = tr.unserved_wh[i0]
    served_h = length
    for i in range(i0, i1 + 1):
        if tr.unserved_wh[i] - base > UNSERVED_EPS_WH:
            prev = tr.t[max(i0, i - 1)]
            served_h = max(0.0, _hours_between(start, prev + (tr.t[i] - prev) / 2))
            break
    unserved = tr.unserved_wh[i1] - base
    shed = tr.shed_wh[i1] - tr.shed_wh[i0]
    # What was owed: H_disaster if the hall was in disaster_reserve and had its chance to charge.
    guaranteed, basis = site.reserve.h_vpp, "H_vpp (vpp operation)"
    if tr.requested[i0] == "disaster_reserve" and hall.warned_at is not None:
        lead = _hours_between(hall.warned_at, start)
        reached = hall.time_to_reserve_h is not None and hall.time_to_reserve_h <= lead
        if reached or lead >= deadline_h:
            guaranteed = site.reserve.h_disaster
            basis = (f"H_disaster (switched {lead:.1f} h before"
                     + (f", reached after {hall.time_to_reserve_h:.1f} h)" if reached else ")"))
        else:
            basis = f"H_vpp (switched only {lead:.1f} h before, reserve not reached)"
    owed = min(length, guaranteed)
    ok = served_h + tol_h + LOAD_VARIATION_SHARE * owed >= owed or unserved <= UNSERVED_EPS_WH
    result = OutageResult(site.id, start, end, length, guaranteed, basis, tr.hours[i0], tr.soc[i0], served_h,
                          unserved, shed, ok)
    # How long the daemon took to see the outage and to trust the grid again (debounce at this speed).
    seen = next((t for t, m in zip(tr.t[i0:], tr.mode[i0:]) if t >= start and m == "islanded"), None)
    if seen is not None and seen <= end:
        result.islanded_after_min = (seen - start).total_seconds() / 60
        back = next((t for t, m in zip(tr.t[i0:], tr.mode[i0:]) if t >= end and m != "islanded"), None)
        result.resynced_after_min = (back - end).total_seconds() / 60 if back else None
    return result


def hall_results(s: Scenario, fleet: FleetConfig, rec: Recorder, commands: list[CommandResult],
                 outages: list[dict]) -> dict[str, HallResult]:
    out: dict[str, HallResult] = {}
    tol_h = _tolerance_h(rec)
    for site in fleet.sites:
        tr = rec.traces.get(site.id)
        if tr is None or not tr.t:
            continue
        h = HallResult(site.id, site.name, site.battery.capacity_wh, site.loads.critical_w, site.reserve.h_vpp,
                       site.reserve.h_disaster)
        switches = [c for c in commands if c.site == site.id and c.mode == "disaster_reserve"]
        if switches:
            first = switches[0]
            h.warned_at, h.warned_by = first.sent_at, first.actor
            i = _first_index_from(tr, first.sent_at)
            h.energy_at_warning_wh, h.hours_at_warning = tr.stored_wh[i], tr.hours[i]
            for j in range(i, len(tr.t)):
                hours = tr.hours[j]
                if tr.fault[j] or hours is None or hours < site.reserve.h_disaster - HOURS_EPS:
                    continue  # a dead battery's stored energy is no reserve
                if j == i or tr.requested[j] == "disaster_reserve":
                    h.time_to_reserve_h = 0.0 if j == i else max(0.0, _hours_between(first.sent_at, tr.t[j]))
                    break
        h.battery_failed = any(tr.fault)
        mine = sorted((o for o in outages if o["site"] == site.id), key=lambda o: o["start"])
        h.outages = [_outage(site, tr, o, h, s.promises.reserve_deadline_h, tol_h, tr.t) for o in mine]
        events = [t for t in (h.warned_at, mine[0]["start"] if mine else None) if t is not None]
        h.revenue_until = min(events) if events else s.end
        h.vpp_revenue_jpy = vpp_revenue_jpy(site, tr, h.revenue_until, fleet.fleet.slot_minutes)
        h.final_mode = tr.mode[-1]
        out[site.id] = h
    return out


def _tolerance_h(rec: Recorder) -> float:
    """Sampling resolution [h]: a gap shorter than two samples cannot be told apart."""
    tr = next(iter(rec.traces.values()), None)
    if tr is None or len(tr.t) < 3:
        return 0.25
    steps = np.diff([t.timestamp() for t in tr.t]) / 3600.0
    return float(min(0.5, 2 * np.median(steps)))


# -- promises -----------------------------------------------------------------------------------------
def _held_checks(rec: Recorder, commands: list[CommandResult]) -> list[Check]:
    checks = []
    for sid, tr in rec.traces.items():
        returns = sorted(c.sent_at for c in commands if c.site == sid and c.mode == "vpp")
        bad = []
        for i in range(1, len(tr.requested)):
            if tr.requested[i - 1] == "disaster_reserve" and tr.requested[i] not in ("disaster_reserve", ""):
                if not any(r <= tr.t[i] for r in returns):
                    bad.append(f"{tr.requested[i]} at {tr.t[i]:%m-%d %H:%M}Z")
        if any(r == "disaster_reserve" for r in tr.requested):
            checks.append(Check("disaster_held", sid, not bad,
                                "left disaster_reserve without a return command: " + ", ".join(bad) if bad
                                else "stayed in disaster_reserve until told to return"))
    return checks


def _fault_checks(rec: Recorder, central_alarms: list[dict]) -> list[Check]:
    checks = []
    for m in rec.marks:
        if m.kind != "battery_failure":
            continue
        for sid in m.halls:
            tr = rec.traces[sid]
            edge = any("device_fault" in a for t, a in zip(tr.t, tr.alarms) if t >= m.t)
            central = any(a.get("site") == sid and a.get("code") == "device_fault" for a in central_alarms)
            checks.append(Check("fault_alarmed", sid, edge and central,
                                f"device_fault at the hall: {'yes' if edge else 'NO'}, "
                                f"in the central alarm book: {'yes' if central else 'NO'}"))
    return checks


def evaluate(s: Scenario, fleet: FleetConfig, clock: DrillClock, rec: Recorder, ops: dict[str, dict],
             audit: list[dict], outages: list[dict], actions: list[dict], telemetry: Any,
             liveness: dict[str, Any], errors: list[str], wall_s: float,
             central_alarms: list[dict] | None = None) -> DrillOutcome:
    """Compute the figures and check every promise."""
    central_alarms = central_alarms or []
    commands = command_results(ops, audit, clock)
    halls = hall_results(s, fleet, rec, commands, outages)
    checks: list[Check] = []
    for h in halls.values():
        for o in h.outages:
            checks.append(Check("critical_load", h.site, o.ok,
                                f"outage {o.length_h:.1f} h from {o.start:%m-%d %H:%M}Z: served {o.served_h:.1f} h "
                                f"without a gap, owed {min(o.length_h, o.guaranteed_h):.1f} h ({o.basis}); "
                                f"unserved {o.unserved_wh:.0f} Wh"))
    limit = s.promises.ack_within_s
    for c in commands:
        ok = c.status == "ok" and c.delay_wall_s is not None and c.delay_wall_s <= limit
        delay = f"{c.delay_wall_s:.2f} s wall" if c.delay_wall_s is not None else "no ack"
        checks.append(Check("switch_acked", f"{c.site} {c.mode}", ok,
                            f"{c.actor} at {c.sent_at:%m-%d %H:%M}Z: {c.status}, {delay} (limit {limit:g} s)"))
    if telemetry is not None:
        checks.append(Check("telemetry", "fleet", telemetry.lost <= s.promises.max_lost_points,
                            f"{telemetry.produced} points produced, {telemetry.stored} stored, {telemetry.lost} lost"))
    checks += _held_checks(rec, commands)
    checks += _arrival_checks(fleet, halls, actions)
    checks += _fault_checks(rec, central_alarms)
    dead, stalled = liveness.get("dead_tasks", []), liveness.get("stalled_halls", [])
    stuck = liveness.get("stop_timeout", False)
    checks.append(Check("no_crash", "fleet",
                        not dead and not stalled and liveness.get("central_ok", False) and not stuck,
                        f"dead tasks: {dead or 'none'}; halls without recent cycles: {stalled or 'none'}; "
                        f"central answering: {'yes' if liveness.get('central_ok') else 'NO'}"
                        + ("; the runtime did not stop in time" if stuck else "")))
    observations = _observations(s, halls, actions, telemetry, errors)
    return DrillOutcome(s, fleet, clock.speed, wall_s, halls, commands, checks, observations, telemetry, liveness,
                        list(rec.marks), rec.traces, central_alarms)


def _arrival_checks(fleet: FleetConfig, halls: dict[str, HallResult], actions: list[dict]) -> list[Check]:
    """reserve_by_arrival for every hall with a typhoon arrival forecast (its first one)."""
    first: dict[str, datetime] = {}
    for a in actions:
        if a["kind"] == "typhoon_forecast":
            for sid, t in a["arrivals"].items():
                first.setdefault(sid, t)
    sites = {s.id: s for s in fleet.sites}
    checks = []
    for sid, arrival in sorted(first.items()):
        h, site = halls.get(sid), sites.get(sid)
        if h is None or site is None:
            continue
        if h.warned_at is None or h.warned_at > arrival:
            checks.append(Check("reserve_by_arrival", sid, False,
                                f"not switched to disaster_reserve before the forecast arrival {arrival:%m-%d %H:%M}Z"))
            continue
        lead_h = _hours_between(h.warned_at, arrival)
        if h.time_to_reserve_h is not None and h.time_to_reserve_h <= lead_h:
            checks.append(Check("reserve_by_arrival", sid, True,
                                f"{h.h_disaster:g} h reserve reached {h.time_to_reserve_h:.1f} h after the switch, "
                                f"{lead_h - h.time_to_reserve_h:.1f} h before the forecast arrival "
                                f"{arrival:%m-%d %H:%M}Z"))
            continue
        # Could it have? Charging power is limited by the battery, the inverter and the grid connection.
        policy = site.safety_policy()  # the limits the guard enforces
        charge_w = min(policy.max_charge_w, policy.grid_import_limit_w)
        eff = policy.charge_efficiency
        missing_wh = max(0.0, (h.h_disaster - (h.hours_at_warning or 0.0)) * h.critical_w)
        need_h = missing_wh / (charge_w * eff) if charge_w > 0 else float("inf")
        if need_h > lead_h or h.battery_failed:
            why = ("its battery failed" if h.battery_failed else
                   f"{missing_wh / 1000:.1f} kWh missing at the switch needs {need_h:.1f} h at "
                   f"{charge_w / 1000:.1f} kW (battery/inverter/grid limit), only {lead_h:.1f} h to the arrival")
            checks.append(Check("reserve_by_arrival", sid, True, f"unreachable: {why}"))
        else:
            reached = (f"reached only after {h.time_to_reserve_h:.1f} h" if h.time_to_reserve_h is not None
                       else "never reached")
            checks.append(Check("reserve_by_arrival", sid, False,
                                f"reachable ({need_h:.1f} h of charging, {lead_h:.1f} h available) but {reached}"))
    return checks


def _observations(s: Scenario, halls: dict[str, HallResult], actions: list[dict], telemetry: Any,
                  errors: list[str]) -> list[str]:
    out = []
    for h in halls.values():
        if h.warned_at is not None and h.time_to_reserve_h is None:
            out.append(f"{h.site} never reached its {h.h_disaster:g} h reserve after the switch"
                       + (" (battery failed)" if h.battery_failed else ""))
        elif h.time_to_reserve_h is not None and h.time_to_reserve_h > s.promises.reserve_deadline_h:
            out.append(f"{h.site} took {h.time_to_reserve_h:.1f} h to reach its reserve "
                       f"(deadline {s.promises.reserve_deadline_h:g} h)")
    for a in actions:
        if a["kind"] == "typhoon_forecast" and a["arrivals"]:
            out.append(f"typhoon forecast at {a['t']:%m-%d %H:%M}Z: storm-force wind forecast to reach "
                       + ", ".join(f"{sid} at {t:%m-%d %H:%M}Z" for sid, t in sorted(a["arrivals"].items(),
                                                                                  key=lambda p: p[1])))
        if a["kind"] in ("staff_failed", "event_failed"):
            out.append(f"{a['kind']} at {a['t']:%m-%d %H:%M}Z: {a['error']}"[:300])
    if telemetry is None:
        out.append("telemetry went to InfluxDB: points were not counted")
    out += [f"traceback logged: {e}" for e in errors[:20]]
    return out
