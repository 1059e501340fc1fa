"""The reserve policy of a hall, beside the guard: how high the floor is, and bringing the battery back to it.

The guard (:mod:`ems.gateway.guard`) only narrows the allowed power range:
it forbids discharging below the reserve floor.  Two decisions come before
it and live here:

* the floor itself: energy for the forecast critical load over the next H
  hours, looking :attr:`ReservePolicy.FLOOR_LOOKAHEAD_H` ahead for a rising
  need (evening lighting), computed by the same function as the optimizer
  (:func:`optimizer.reserve.reserve_floor_wh` through
  :func:`ems.gateway.guard.reserve_floor_for`);
* restoring the reserve: in vpp a battery found below the floor charges back
  up to it within :attr:`ReservePolicy.RESTORE_WITHIN_H`, whatever the plan
  asked.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta

from ems.gateway.guard import reserve_floor_for
from ems.gateway.modes import Mode
from ems.gateway.snapshot import SiteSnapshot
from optimizer.forecast import configured_critical_w
from optimizer.reserve import SafetyPolicy


class ReservePolicy:
    """Reserve floor [Wh] and restore request [W] of one site.

    critical_w: the site's configured critical load [W] (its daily profile
    follows :func:`optimizer.forecast.configured_critical_w`); slot_h [h]:
    the forecast step.
    """

    #: How far ahead [h] the floor looks for a rising need (night lighting).
    FLOOR_LOOKAHEAD_H = 2.0
    #: Time [h] in which a battery found below its reserve floor in vpp is brought back up to it.
    RESTORE_WITHIN_H = 0.5

    def __init__(self, policy: SafetyPolicy, critical_w: float, slot_h: float):
        self.policy = policy
        self.critical_w = critical_w
        self.slot_h = slot_h

    def critical_forecast(self, now: datetime) -> tuple[list[float], list[float]]:
        """Critical load and PV forecasts [W] per slot from ``now``, for the reserve and hours left.

        The critical load follows its daily profile (more lighting at night):
        a flat average would under-reserve exactly when an earthquake at
        night needs the energy.  PV counts as zero here; the policy's
        pv_pessimism share of the clear-sky forecast is for the optimizer.
        Slots start at ``now`` (not at the market slot) so the reserve covers
        exactly the next H hours; about 50 µs a cycle.
        """
        slot = timedelta(hours=self.slot_h)
        hours = max(self.policy.reserve_hours.values(), default=0.0)
        n = int(math.ceil(max(hours, 24.0) / self.slot_h)) + 1
        times = [now + k * slot for k in range(n)]
        return [float(x) for x in configured_critical_w(times, self.critical_w, slot)], [0.0]

    def floor_wh(self, mode: Mode, critical: list[float], pv: list[float]) -> float:
        """Reserve floor [Wh]: the largest of the floors now and over the next FLOOR_LOOKAHEAD_H hours.

        The energy needed for the next H hours grows into the evening, when
        the shelter's lights come on.  A battery allowed down to today's
        floor would start a night outage short of H hours (the earthquake
        drill saw 3.7 h of 4 h), so it stops at the highest floor ahead.
        """
        steps = int(self.FLOOR_LOOKAHEAD_H / self.slot_h)
        return max(reserve_floor_for(self.policy, mode, critical[k:] or critical[-1:], pv, self.slot_h)
                   for k in range(steps + 1))

    def restore(self, snap: SiteSnapshot, mode: Mode, floor_wh: float, requested_w: float,
                reason: str) -> tuple[float, str]:
        """In vpp, a battery below its reserve floor [Wh] charges back up to it, whatever was requested [W].

        The guard only forbids discharging below the floor; a floor that rose
        (evening lighting, a longer H) or an overshoot would otherwise leave
        the shelter short until the plan happened to charge.  The reserve is
        a promise, so it is restored within RESTORE_WITHIN_H [h].  Returns
        the (possibly replaced) request [W] and its reason.
        """
        stored = snap.stored_wh(self.policy.capacity_wh)
        if mode is not Mode.VPP or stored is None or stored >= floor_wh:
            return requested_w, reason
        deficit = floor_wh - stored
        charge_w = min(self.policy.max_charge_w, deficit / self.policy.charge_efficiency / self.RESTORE_WITHIN_H)
        if requested_w <= -charge_w:
            return requested_w, reason
        return -charge_w, f"restoring the reserve: {deficit:.0f} Wh below the floor ({reason})"
