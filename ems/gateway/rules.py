"""The rule-based plan: used until the optimizer lands and whenever it fails.

The rule only says what the site would like; the guard (ems/gateway/guard.py)
decides what is allowed.  That is why vpp can simply ask for the net load:
the reserve floor, SoC limits and grid limits are enforced downstream.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from ems.gateway.modes import Mode
from ems.gateway.snapshot import SiteSnapshot
from optimizer.reserve import SafetyPolicy


@dataclass(frozen=True, slots=True)
class RulePlan:
    """Requested battery setpoint [W] (+ discharge, − charge) and why."""

    setpoint_w: float
    reason: str


def rule_setpoint(snap: SiteSnapshot, mode: Mode | str, policy: SafetyPolicy,
                  manual_setpoint_w: float | None = None) -> RulePlan:
    """Setpoint [W] the rule asks for in ``mode``.

    vpp: self-consumption, setpoint = net load [W] (cover the hall's load,
    charge from surplus PV); disaster_reserve: charge at the policy maximum
    (−max_charge_w [W]); manual: ``manual_setpoint_w`` [W]; safe, islanded: 0
    (islanded: the grid-forming inverter ignores the setpoint).
    """
    mode = Mode(mode)
    if mode is Mode.VPP:
        net = snap.net_load_w
        if net is None or not math.isfinite(net):
            return RulePlan(0.0, "vpp self-consumption: net load unknown (no meter or battery data), idle")
        return RulePlan(float(net), f"vpp self-consumption: net load {net:.0f} W")
    if mode is Mode.DISASTER_RESERVE:
        return RulePlan(-policy.max_charge_w,
                        f"disaster_reserve: charge at the maximum {policy.max_charge_w:.0f} W and hold")
    if mode is Mode.MANUAL:
        if manual_setpoint_w is None or not math.isfinite(manual_setpoint_w):
            return RulePlan(0.0, "manual: no valid setpoint, idle")
        return RulePlan(float(manual_setpoint_w), f"manual setpoint {manual_setpoint_w:.0f} W")
    if mode is Mode.ISLANDED:
        return RulePlan(0.0, "islanded: inverter is grid-forming, setpoint not used")
    return RulePlan(0.0, "safe: battery idle")
