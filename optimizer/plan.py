"""A site's plan: one row per slot, its status, and the battery setpoint the daemon follows.

Battery setpoints follow the project's sign: + discharging, − charging [W].
SoC and stored energy are at the *end* of each slot.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np

#: plan.csv columns (ems plan), in order.
PLAN_COLUMNS = ("time", "charge_w", "discharge_w", "soc_pct", "soc_wh", "grid_import_w", "grid_export_w",
                "pv_curtail_w", "shed_w", "reserve_wh", "price_jpy_per_kwh", "price_sell_jpy_per_kwh")


class PlanStatus(str, enum.Enum):
    """How the plan was made."""

    OPTIMAL = "optimal"            # LP optimum
    OPTIMAL_MILP = "optimal_milp"  # the LP charged and discharged at once; MILP optimum
    FEASIBLE = "feasible"          # solver solution, not proven optimal
    FALLBACK = "fallback"          # rule-based plan: the solver failed or timed out


class PlanExpired(LookupError):
    """The asked time is outside the plan's slots or after its expiry: follow the rule instead."""


@dataclass(frozen=True, eq=False)
class Plan:
    """A schedule for one site.

    times: slot starts (UTC); slot: slot length; per slot [W]: charge_w,
    discharge_w (both >= 0), grid_import_w, grid_export_w, pv_curtail_w,
    shed_w (non-critical + critical), shed_critical_w; soc_pct [%] / soc_wh
    [Wh] at the end of the slot; reserve_wh [Wh]: the (ramped) reserve floor
    the slot's end had to respect.  created_at / expires_at: validity
    (UTC).  objective_jpy / energy_cost_jpy [JPY] (import cost − export
    revenue over the horizon); build_ms / solve_ms [ms]; reserve_shortfall_wh
    [Wh]: the largest amount stored energy falls below the *unramped*
    reserve (what the hall lacks against its policy); commitment_shortfall_wh
    [Wh]: commitment energy not delivered; hours_of_power [h]: how long the
    critical load is carried from now (islanded: from the shed schedule).
    price_buy_jpy_per_kwh / price_sell_jpy_per_kwh [JPY/kWh] per slot: the
    prices the plan was made with (None: not known, e.g. a plan built by
    hand); the central service charts them and prices measured energy with them.
    """

    site_id: str
    mode: str
    times: tuple[datetime, ...]
    slot: timedelta
    charge_w: np.ndarray
    discharge_w: np.ndarray
    soc_pct: np.ndarray
    soc_wh: np.ndarray
    grid_import_w: np.ndarray
    grid_export_w: np.ndarray
    pv_curtail_w: np.ndarray
    shed_w: np.ndarray
    shed_critical_w: np.ndarray
    reserve_wh: np.ndarray
    status: PlanStatus
    created_at: datetime
    expires_at: datetime
    objective_jpy: float | None = None
    energy_cost_jpy: float = 0.0
    build_ms: float = 0.0
    solve_ms: float = 0.0
    reserve_shortfall_wh: float = 0.0
    commitment_shortfall_wh: float = 0.0
    hours_of_power: float = 0.0
    message: str = ""
    price_buy_jpy_per_kwh: np.ndarray | None = None
    price_sell_jpy_per_kwh: np.ndarray | None = None

    @property
    def fallback(self) -> bool:
        """True when this is the rule-based plan (the optimizer failed)."""
        return self.status == PlanStatus.FALLBACK

    @property
    def battery_w(self) -> np.ndarray:
        """Battery setpoint per slot [W] (+ discharging, − charging)."""
        return self.discharge_w - self.charge_w

    @property
    def n(self) -> int:
        """Number of slots."""
        return len(self.times)

    def slot_of(self, when: datetime) -> int:
        """Index of the slot containing ``when``, ignoring expiry; PlanExpired outside the slots."""
        if when.tzinfo is None:
            raise ValueError("a timezone-aware time is required")
        if when < self.times[0] or when >= self.times[-1] + self.slot:
            raise PlanExpired(f"{when.isoformat()} is outside the plan's slots")
        return int((when - self.times[0]) // self.slot)

    def slot_index(self, when: datetime) -> int:
        """Index of the slot containing ``when``; PlanExpired outside the slots or at/after expiry."""
        if when.tzinfo is not None and when >= self.expires_at:
            raise PlanExpired(f"plan expired at {self.expires_at.isoformat()} (asked {when.isoformat()})")
        return self.slot_of(when)

    def setpoint_at(self, when: datetime) -> float:
        """Battery setpoint [W] (+ discharging) for the slot containing ``when``; PlanExpired if none."""
        return float(self.battery_w[self.slot_index(when)])

    def is_valid_at(self, when: datetime) -> bool:
        """True when :meth:`setpoint_at` has an answer for ``when``."""
        try:
            self.slot_index(when)
        except PlanExpired:
            return False
        return True

    def rows(self) -> list[dict]:
        """One dict per slot with the plan.csv columns (time as ISO 8601 UTC)."""
        out = []
        for i, t in enumerate(self.times):
            out.append({
                "time": t.isoformat(),
                "charge_w": float(self.charge_w[i]),
                "discharge_w": float(self.discharge_w[i]),
                "soc_pct": float(self.soc_pct[i]),
                "soc_wh": float(self.soc_wh[i]),
                "grid_import_w": float(self.grid_import_w[i]),
                "grid_export_w": float(self.grid_export_w[i]),
                "pv_curtail_w": float(self.pv_curtail_w[i]),
                "shed_w": float(self.shed_w[i]),
                "reserve_wh": float(self.reserve_wh[i]),
                "price_jpy_per_kwh": (float(self.price_buy_jpy_per_kwh[i])
                                      if self.price_buy_jpy_per_kwh is not None else None),
                "price_sell_jpy_per_kwh": (float(self.price_sell_jpy_per_kwh[i])
                                           if self.price_sell_jpy_per_kwh is not None else None),
            })
        return out

    def summary(self) -> dict:
        """The summary.json fields of ``ems plan`` plus a few extras."""
        return {
            "status": self.status.value,
            "objective_jpy": self.objective_jpy,
            "energy_cost_jpy": self.energy_cost_jpy,
            "build_ms": self.build_ms,
            "solve_ms": self.solve_ms,
            "reserve_shortfall_wh": self.reserve_shortfall_wh,
            "fallback": self.fallback,
            "mode": self.mode,
            "site": self.site_id,
            "commitment_shortfall_wh": self.commitment_shortfall_wh,
            "hours_of_power": self.hours_of_power,
            "expires_at": self.expires_at.isoformat(),
            "message": self.message,
        }
