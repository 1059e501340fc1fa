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

from ems.gateway import alarms as al
from ems.gateway.alarms import AlarmCondition
from ems.gateway.guard import reserve_floor_for
from ems.gateway.modes import Mode
from ems.gateway.snapshot import SiteSnapshot
from optimizer.forecast import configured_critical_w
from optimizer.reserve import SafetyPolicy, hours_of_power, reserve_energy_wh


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

    def shortfall(self, mode: Mode, now: datetime) -> tuple[float, float, float] | None:
        """(hours [h] promised, hours [h] a full battery carries, need [Wh]) at the worst start time of a day
        for ``mode``'s reserve, or None when a full battery keeps the promise from any start.

        The floor is capped at the battery's maximum stored energy, so a promise
        larger than the battery cannot be enforced: the guard holds the battery
        full and the shortfall must be seen, not hidden (the night's lighting
        makes a night start the worst).
        """
        hours = self.policy.hours_for(mode.value)
        if hours <= 0:
            return None
        slot = timedelta(hours=self.slot_h)
        day0 = now.replace(minute=0, second=0, microsecond=0)
        worst: tuple[float, list[float]] | None = None
        for k in range(int(round(24 / self.slot_h))):
            critical, _ = self.critical_forecast(day0 + k * slot)
            need = reserve_energy_wh(critical, [0.0], self.slot_h, hours, self.policy.discharge_efficiency, 0.0)
            if worst is None or need > worst[0]:
                worst = (need, critical)
        assert worst is not None
        usable = self.policy.max_energy_wh - self.policy.min_energy_wh
        if worst[0] <= usable + 1e-6:
            return None
        carried = hours_of_power(self.policy.max_energy_wh, self.policy, worst[1], [0.0], self.slot_h)
        return hours, carried, worst[0]

    def shortfall_alarms(self, now: datetime) -> list[AlarmCondition]:
        """A warning per mode whose reserve a full battery cannot hold from every start time, with the figures."""
        out = []
        usable_kwh = (self.policy.max_energy_wh - self.policy.min_energy_wh) / 1000
        for mode, code in ((Mode.DISASTER_RESERVE, al.RESERVE_SHORT_DISASTER), (Mode.VPP, al.RESERVE_SHORT_VPP)):
            short = self.shortfall(mode, now)
            message = "" if short is None else (
                f"{mode.value}: {short[0]:g} h of critical load need up to {short[2] / 1000:.1f} kWh, the battery "
                f"holds {usable_kwh:.1f} kWh usable: a full battery carries about {short[1]:.1f} h from a night start")
            out.append(AlarmCondition(code, short is not None, al.Severity.WARNING, message))
        return out

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
