"""When a hall reaches its disaster reserve, and until when its power lasts, from its live values.

The disaster panel shows, per hall:

* not islanded: the time it reaches its disaster reserve (``h_disaster``
  hours of critical power) if it keeps charging at the rate it charges now,
  or that it cannot (not charging; or not before ``horizon``);
* islanded (grid lost): the time until which its power lasts, from the
  hours of critical power the hall itself reports.

The energy still missing is ``(h_disaster - hours_left) x critical_w``: the
hall's ``hours_left`` is its own reckoning of stored energy over its
critical load, so the missing hours times the configured average critical
load [W] is the energy [Wh] to add to the battery; charging loses
``1 - charge_efficiency`` of what the inverter takes.  A rough, honest
figure for staff planning a typhoon's arrival, not a forecast: the charge
rate changes with PV and the plan.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

#: Beyond this the panel says "cannot reach before <now + HORIZON>".
HORIZON = timedelta(hours=48)
#: Charging below this [W] counts as not charging (measurement noise, standby).
MIN_CHARGE_W = 50.0


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def reserve_outlook(row: dict[str, Any], charge_efficiency: float, now: datetime,
                    horizon: timedelta = HORIZON, typhoon_at: datetime | None = None) -> dict[str, Any]:
    """``reserve_status``: reached | charging | too_slow | not_charging | unknown; ``reserve_at``
    (ISO, when charging), ``horizon_until`` (ISO: the time it cannot reach the reserve before),
    ``deadline``: ``typhoon`` when that time is the forecast arrival of a typhoon's storm-force wind
    (``typhoon_at``, from the JMA trigger) else ``horizon``; ``power_until`` (ISO, islanded halls only).

    ``row``: a fleet row (hours_left [h], h_disaster [h], battery_w [W] + discharging, critical_w [W],
    mode, grid_ok, online, stale)."""
    until, deadline = now + horizon, "horizon"
    if typhoon_at is not None and now < typhoon_at < until:
        until, deadline = typhoon_at, "typhoon"
    out: dict[str, Any] = {"reserve_status": "unknown", "reserve_at": None, "horizon_until": until.isoformat(),
                           "deadline": deadline, "power_until": None}
    hours, need = _num(row.get("hours_left")), _num(row.get("h_disaster"))
    battery, critical = _num(row.get("battery_w")), _num(row.get("critical_w"))
    if hours is None or need is None or row.get("online") is False or row.get("stale"):
        return out
    if row.get("mode") == "islanded" or row.get("grid_ok") is False:
        out["power_until"] = (now + timedelta(hours=max(0.0, hours))).isoformat()
        return out
    if hours >= need:
        out["reserve_status"] = "reached"
        return out
    if battery is None or critical is None or -battery < MIN_CHARGE_W:
        out["reserve_status"] = "not_charging"
        return out
    missing_wh = (need - hours) * critical
    eta = now + timedelta(hours=missing_wh / (-battery * charge_efficiency))
    if eta > until:
        out["reserve_status"] = "too_slow"
    else:
        out["reserve_status"], out["reserve_at"] = "charging", eta.isoformat()
    return out
