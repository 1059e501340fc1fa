"""Economic settings of a plan, the penalty constants of its soft targets, and dispatch commitments.

DESIGN.md: "targets are soft, physics and safety are hard".  Every soft
target is a slack variable whose price is one of the named constants below.
Their order is the order of priorities, and each constant says why it sits
where it does.  All are in [JPY/kWh] of slack energy.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

#: Leaving the SoC band [soc_min, soc_max].  The band is a battery-protection
#: limit; its slack exists only so a measured SoC already outside the band
#: (or self-discharge with no way to charge) does not make the model
#: infeasible.  Dearest of all, so the plan returns to the band at full power.
PENALTY_SOC_BAND_JPY_PER_KWH = 100_000.0

#: Not serving the shelter's critical load.  Above the reserve penalty: the
#: reserve exists to serve this load, so using it for that is never wrong.
#: Scaled ×1…×2 from the last slot to the first (see ``critical_shed_weights``)
#: so that, when energy must run short, the plan sheds late rather than early:
#: that maximises the continuous hours of power from now.
PENALTY_SHED_CRITICAL_JPY_PER_KWH = 10_000.0

#: Stored energy below the shelter reserve floor.  Below critical-load
#: shedding, above everything economic: no price and no aggregator request
#: is worth the shelter's reserve.
PENALTY_RESERVE_JPY_PER_KWH = 5_000.0

#: Shedding the hall's non-critical load.  Above commitments: a hall is not
#: darkened to serve an aggregator request.  Below the islanded value of
#: stored energy, so an islanded hall sheds its non-critical load first.
PENALTY_SHED_NONCRITICAL_JPY_PER_KWH = 2_000.0

#: Deviating from an aggregator dispatch commitment, either way.  Far above
#: any JEPX price (the market cap is a few hundred JPY/kWh), so the plan
#: delivers unless the reserve or a load is at stake; then the shortfall is
#: reported.
PENALTY_COMMITMENT_JPY_PER_KWH = 1_000.0

#: Value of energy left in the battery at the end of an islanded horizon.
#: Between non-critical shedding (2,000) and the reserve (5,000): when the grid
#: is down, a stored kWh is worth more than lighting the non-critical half of
#: the hall, and less than the critical load it will serve later.
ISLANDED_TERMINAL_VALUE_JPY_PER_KWH = 3_000.0

#: Curtailing PV.  Tiny and positive so PV is only curtailed when nothing
#: (battery, load, export) can take it.
PENALTY_CURTAIL_JPY_PER_KWH = 0.001

#: Tie-break: battery throughput in slot t costs an extra t × this.  Below the
#: 0.01 JPY/kWh resolution of JEPX prices for a 96-slot horizon, so it never
#: overrides a real price difference, but among equal-cost plans it always
#: prefers acting earlier, so successive MPC runs do not flip between them.
TIE_BREAK_JPY_PER_KWH_PER_SLOT = 1e-4

MODES = ("vpp", "disaster_reserve", "islanded")


@dataclass(frozen=True, slots=True)
class PlanSettings:
    """Economic and solver settings of a site's plan.

    degradation_jpy_per_kwh [JPY/kWh]: wear cost per kWh of battery
    throughput (charged plus discharged).  self_discharge_per_h [1/h]: share
    of stored energy lost per hour.  demand_charge_jpy_per_kw [JPY/kW]: price
    of the peak 30-minute import over the horizon (0 = none).
    terminal_value_jpy_per_kwh [JPY/kWh]: value of energy left at the end of
    the horizon; None derives it from the horizon's buy prices (see
    :func:`optimizer.modes.terminal_value`).  time_limit_s [s]: solver time
    limit, after which the rule-based plan is used.  valid_for_slots: the plan
    expires this many slots after ``now``.  simultaneous_tol_w [W]: charge and
    discharge (import and export) both above this in one slot trigger the MILP.
    """

    degradation_jpy_per_kwh: float = 2.0
    self_discharge_per_h: float = 0.0
    demand_charge_jpy_per_kw: float = 0.0
    terminal_value_jpy_per_kwh: float | None = None
    time_limit_s: float = 5.0
    valid_for_slots: int = 4
    simultaneous_tol_w: float = 1.0

    def __post_init__(self) -> None:
        if self.degradation_jpy_per_kwh < 0:
            raise ValueError("degradation_jpy_per_kwh must be >= 0")
        if not 0 <= self.self_discharge_per_h < 1:
            raise ValueError("self_discharge_per_h must be in [0, 1)")
        if self.demand_charge_jpy_per_kw < 0:
            raise ValueError("demand_charge_jpy_per_kw must be >= 0")
        if self.time_limit_s <= 0:
            raise ValueError("time_limit_s must be > 0")
        if self.valid_for_slots < 1:
            raise ValueError("valid_for_slots must be >= 1")


@dataclass(frozen=True, slots=True)
class Commitment:
    """An aggregator dispatch commitment: battery output ``target_w`` [W] over [start, end).

    ``target_w`` is the battery's net output (+ discharging, − charging) the
    site promised for every slot that starts inside the window.  A dispatch
    "ΔP on top of the plan" becomes ``target_w = planned output + ΔP`` (see
    :meth:`optimizer.fleet.FleetAllocation.commitments_for`).  It is a soft
    target: a commitment that would break the reserve is not met and the
    plan reports the shortfall.
    """

    start: datetime
    end: datetime
    target_w: float
    id: str = ""

    def __post_init__(self) -> None:
        if self.start.tzinfo is None or self.end.tzinfo is None:
            raise ValueError(f"commitment {self.id!r}: start and end must be timezone-aware")
        if self.end <= self.start:
            raise ValueError(f"commitment {self.id!r}: end must be after start")
