"""The shelter reserve and the safety policy, shared by the real-time guard and the optimizer.

DESIGN.md: "Every safety rule comes from one config object and is enforced
twice".  That object is :class:`SafetyPolicy`; the guard in ``ems/gateway/guard.py``
and the optimizer's constraints both read it, and both compute the reserve
with :func:`reserve_energy_wh` so the two can never disagree.

The reserve is energy, not a percentage: enough to carry the forecast
critical load, less pessimistic PV, for H hours, after discharge losses, on
top of the battery's minimum state of charge.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Sequence


@dataclass(frozen=True, slots=True)
class SafetyPolicy:
    """All hard limits of one site's battery and grid connection.

    capacity_wh [Wh]; soc_min_pct / soc_max_pct [%]; max_charge_w /
    max_discharge_w [W] (>= 0); charge_efficiency / discharge_efficiency
    [0..1]; reserve_hours [h] per mode name; pv_pessimism [0..1]: the share
    of forecast PV the reserve may count on; ramp_w_per_s [W/s];
    grid_import_limit_w / grid_export_limit_w [W] (>= 0; export 0 = no reverse
    flow allowed).
    """

    capacity_wh: float
    soc_min_pct: float = 10.0
    soc_max_pct: float = 95.0
    max_charge_w: float = 5000.0
    max_discharge_w: float = 5000.0
    charge_efficiency: float = 0.95
    discharge_efficiency: float = 0.95
    reserve_hours: Mapping[str, float] = field(
        default_factory=lambda: {"vpp": 4.0, "disaster_reserve": 12.0}
    )
    pv_pessimism: float = 0.0
    ramp_w_per_s: float = 2000.0
    grid_import_limit_w: float = 50_000.0
    grid_export_limit_w: float = 0.0

    @property
    def min_energy_wh(self) -> float:
        """Stored energy at the minimum state of charge [Wh]."""
        return self.capacity_wh * self.soc_min_pct / 100.0

    @property
    def max_energy_wh(self) -> float:
        """Stored energy at the maximum state of charge [Wh]."""
        return self.capacity_wh * self.soc_max_pct / 100.0

    def hours_for(self, mode: str) -> float:
        """Reserve hours [h] a mode must keep (0 for modes without a reserve)."""
        return float(self.reserve_hours.get(mode, 0.0))


def reserve_energy_wh(
    critical_load_w: Sequence[float],
    pv_w: Sequence[float],
    slot_h: float,
    hours: float,
    discharge_efficiency: float,
    pv_pessimism: float = 0.0,
) -> float:
    """Energy the battery must deliver from storage to carry the shelter for ``hours`` [Wh].

    R = Σ_{t < H} max(0, L_t − k·PV_t) · Δt / η_d

    with L_t the forecast critical load [W], PV_t the forecast PV [W], k the
    pessimism share, Δt = ``slot_h`` [h] and η_d the discharge efficiency.
    A forecast shorter than ``hours`` is extended with its last value (a
    shelter's load does not stop when the forecast does).  A partial last
    slot counts pro rata.
    """
    if hours <= 0:
        return 0.0
    if slot_h <= 0:
        raise ValueError("slot_h must be > 0")
    if not critical_load_w:
        raise ValueError("critical_load_w must not be empty")
    total = 0.0
    remaining = hours
    i = 0
    while remaining > 1e-12:
        load = critical_load_w[min(i, len(critical_load_w) - 1)]
        pv = pv_w[min(i, len(pv_w) - 1)] if pv_w else 0.0
        step = min(slot_h, remaining)
        total += max(0.0, load - pv_pessimism * pv) * step
        remaining -= step
        i += 1
    return total / discharge_efficiency


def reserve_floor_wh(policy: SafetyPolicy, mode: str, critical_load_w: Sequence[float],
                     pv_w: Sequence[float], slot_h: float) -> float:
    """Stored energy [Wh] below which the battery must not discharge in ``mode``.

    floor = E_min + R(H_mode), capped at the maximum stored energy (a reserve
    larger than the battery is held as full as it may be, and the shortfall
    shows in :func:`hours_of_power`).
    """
    reserve = reserve_energy_wh(
        critical_load_w, pv_w, slot_h, policy.hours_for(mode),
        policy.discharge_efficiency, policy.pv_pessimism,
    )
    return min(policy.min_energy_wh + reserve, policy.max_energy_wh)


def hours_of_power(
    stored_wh: float,
    policy: SafetyPolicy,
    critical_load_w: Sequence[float],
    pv_w: Sequence[float],
    slot_h: float,
    max_hours: float = 168.0,
) -> float:
    """Hours [h] the stored energy carries the critical load, net of pessimistic PV.

    Walks the forecast slot by slot (extending it with its last value),
    drawing max(0, L − k·PV)·Δt/η_d from the energy above the minimum state
    of charge; returns ``max_hours`` if it never runs out.
    """
    usable = max(0.0, stored_wh - policy.min_energy_wh)
    hours = 0.0
    i = 0
    while hours < max_hours:
        load = critical_load_w[min(i, len(critical_load_w) - 1)] if critical_load_w else 0.0
        pv = pv_w[min(i, len(pv_w) - 1)] if pv_w else 0.0
        draw_w = max(0.0, load - policy.pv_pessimism * pv) / policy.discharge_efficiency
        need = draw_w * slot_h
        if need >= usable and draw_w > 0:
            return min(max_hours, hours + usable / draw_w)
        usable -= need
        hours += slot_h
        i += 1
    return max_hours
