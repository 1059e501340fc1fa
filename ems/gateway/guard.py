"""The safety guard: narrows the battery's allowed power range in a stated order.

Battery power [W]: + discharge, − charge (devices/readings.py).  Starting
from the policy's power limits, each stage can only narrow the range:

1. device limits: what the inverter reports it allows right now;
2. SoC limits: no charge at/above soc_max, no discharge at/below soc_min,
   and near a limit the power tapers so one cycle cannot cross it;
3. reserve floor: no discharge at/below the floor, at most the energy above
   it in one cycle (not when islanded: then the reserve is what is used);
4. mode rules: disaster_reserve no discharge; safe [0, 0]; islanded as wide
   as physics (the inverter is grid-forming, the setpoint is not used);
5. grid import/export limits, from net load = load − PV;
6. ramp limit around the previous setpoint.

Stages 1–4 are the hard safety bounds.  A later stage never widens the range
nor overrides an earlier one: if its rule would empty the range, it moves its
bound only as far as the earlier bounds allow and the clip says the rule
could not be met (``unmet``).  Every narrowing yields a :class:`Clip`.
Pure functions, no I/O, no clock.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass
from typing import Sequence

from devices.readings import BatteryReading
from ems.gateway.modes import Mode
from ems.gateway.snapshot import SiteSnapshot
from optimizer.reserve import SafetyPolicy, reserve_floor_wh

INF = math.inf


class Stage(str, enum.Enum):
    """Guard stages in the order they run, plus the final clip of the request."""

    DEVICE = "device_limits"
    SOC = "soc"
    RESERVE = "reserve"
    MODE = "mode"
    GRID = "grid"
    RAMP = "ramp"
    REQUEST = "request"


def _w(x: float) -> str:
    return f"{x:.0f}" if math.isfinite(x) else ("-inf" if x < 0 else "inf")


@dataclass(frozen=True, slots=True)
class PowerRange:
    """Allowed battery power: min_w <= p <= max_w [W] (+ discharge, − charge)."""

    min_w: float
    max_w: float

    def __post_init__(self) -> None:
        if math.isnan(self.min_w) or math.isnan(self.max_w) or self.min_w > self.max_w:
            raise ValueError(f"invalid power range [{self.min_w}, {self.max_w}] W")

    def contains(self, p: float, tol_w: float = 1e-6) -> bool:
        """True when ``p`` [W] lies in the range (with tolerance tol_w [W])."""
        return self.min_w - tol_w <= p <= self.max_w + tol_w

    def clamp(self, p: float) -> float:
        """``p`` [W] moved into the range."""
        return min(max(p, self.min_w), self.max_w)

    def within(self, other: "PowerRange", tol_w: float = 1e-6) -> bool:
        """True when this range lies inside ``other``."""
        return other.min_w - tol_w <= self.min_w and self.max_w <= other.max_w + tol_w

    def __str__(self) -> str:
        return f"[{_w(self.min_w)}, {_w(self.max_w)}] W"


@dataclass(frozen=True, slots=True)
class Clip:
    """One narrowing: stage, reason (with the numbers), range or setpoint before/after [W].

    unmet: the stage's rule could not be met because an earlier stage wins.
    """

    stage: Stage
    reason: str
    before: PowerRange | float
    after: PowerRange | float
    unmet: bool = False

    def to_dict(self) -> dict[str, object]:
        """JSON-ready form (ranges as [min_w, max_w])."""
        def conv(v: PowerRange | float) -> object:
            return [v.min_w, v.max_w] if isinstance(v, PowerRange) else v
        return {"stage": self.stage.value, "reason": self.reason, "before": conv(self.before),
                "after": conv(self.after), "unmet": self.unmet}


@dataclass(frozen=True, slots=True)
class GuardResult:
    """Output of :func:`allowed_range`.

    range: final allowed range [W]; safety: the range after the hard stages
    1–4 [W]; clips: every narrowing in order; trace: range after each stage run.
    """

    range: PowerRange
    safety: PowerRange
    clips: tuple[Clip, ...]
    trace: tuple[tuple[Stage, PowerRange], ...]


@dataclass(frozen=True, slots=True)
class GuardSettings:
    """taper_pct [%]: SoC distance to a limit below which power tapers linearly;
    taper_min_fraction: the taper never goes below this share of full power
    (so the limit is still reached, not approached forever)."""

    taper_pct: float = 2.0
    taper_min_fraction: float = 0.1


class _Narrower:
    """Holds the current range and records every narrowing."""

    def __init__(self, start: PowerRange):
        self.range = start
        self.clips: list[Clip] = []
        self.trace: list[tuple[Stage, PowerRange]] = []

    def narrow(self, stage: Stage, lo: float, hi: float, reason: str) -> None:
        cur = self.range
        new_lo = min(max(cur.min_w, lo), cur.max_w)
        new_hi = max(min(cur.max_w, hi), cur.min_w)
        unmet = lo > cur.max_w or hi < cur.min_w
        new = PowerRange(new_lo, new_hi)
        if unmet:
            reason += f"; cannot be met: earlier bound {cur} kept"
        if unmet or new != cur:
            self.clips.append(Clip(stage, reason, cur, new, unmet))
            self.range = new

    def note(self, stage: Stage, reason: str) -> None:
        """A rule that could not be checked at all (no narrowing, but not silent)."""
        self.clips.append(Clip(stage, reason, self.range, self.range, True))

    def done(self, stage: Stage) -> None:
        self.trace.append((stage, self.range))


def _finite(x: float | None) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def _battery_problem(b: BatteryReading | None) -> str | None:
    if b is None:
        return "no battery reading: battery held idle"
    if not _finite(b.soc_pct) or not 0 <= b.soc_pct <= 100:
        return f"battery SoC {b.soc_pct} % implausible: battery held idle"
    if b.faulted:
        return f"battery reports fault (state {b.state.name}, code {b.fault_code}): battery held idle"
    return None


def _taper(dist_pct: float, settings: GuardSettings) -> float:
    if dist_pct >= settings.taper_pct:
        return 1.0
    return max(settings.taper_min_fraction, dist_pct / settings.taper_pct)


def _device_stage(n: _Narrower, b: BatteryReading, policy: SafetyPolicy) -> None:
    for name, sign in (("max_charge_w", -1), ("max_discharge_w", 1)):
        v = getattr(b, name)
        if v is None:
            continue
        limit = v if _finite(v) and v >= 0 else 0.0  # a nonsense device limit allows nothing
        what = "charging" if sign < 0 else "discharging"
        reason = f"device {b.device_id} allows {what} up to {_w(limit)} W ({name}={v})"
        if sign < 0:
            n.narrow(Stage.DEVICE, -limit, INF, reason)
        else:
            n.narrow(Stage.DEVICE, -INF, limit, reason)


def _soc_stage(n: _Narrower, soc: float, policy: SafetyPolicy, dt_s: float,
               settings: GuardSettings) -> None:
    stored = soc / 100.0 * policy.capacity_wh
    if soc >= policy.soc_max_pct:
        n.narrow(Stage.SOC, 0.0, INF, f"SoC {soc:.1f} % at/above soc_max {policy.soc_max_pct:.1f} %: no charging")
    else:
        # Charging P for dt stores P·η_c·dt/3600 [Wh]: never more than the headroom.
        headroom = policy.max_energy_wh - stored
        per_cycle = headroom * 3600.0 / (policy.charge_efficiency * dt_s)
        tapered = policy.max_charge_w * _taper(policy.soc_max_pct - soc, settings)
        limit = min(per_cycle, tapered)
        n.narrow(Stage.SOC, -limit, INF,
                 f"SoC {soc:.1f} % near soc_max {policy.soc_max_pct:.1f} %: charging tapered to {_w(limit)} W")
    if soc <= policy.soc_min_pct:
        n.narrow(Stage.SOC, -INF, 0.0, f"SoC {soc:.1f} % at/below soc_min {policy.soc_min_pct:.1f} %: no discharging")
    else:
        # Discharging P for dt draws P·dt/(3600·η_d) [Wh] from storage.
        available = stored - policy.min_energy_wh
        per_cycle = available * 3600.0 * policy.discharge_efficiency / dt_s
        tapered = policy.max_discharge_w * _taper(soc - policy.soc_min_pct, settings)
        limit = min(per_cycle, tapered)
        n.narrow(Stage.SOC, -INF, limit,
                 f"SoC {soc:.1f} % near soc_min {policy.soc_min_pct:.1f} %: discharging tapered to {_w(limit)} W")


def _reserve_stage(n: _Narrower, stored: float, floor_wh: float, policy: SafetyPolicy,
                   dt_s: float) -> None:
    if not _finite(floor_wh):
        # Without a valid floor the most cautious floor is a full battery.
        n.narrow(Stage.RESERVE, -INF, 0.0, f"reserve floor {floor_wh} Wh invalid: no discharging")
        return
    if stored <= floor_wh:
        n.narrow(Stage.RESERVE, -INF, 0.0,
                 f"stored {stored:.0f} Wh at/below reserve floor {floor_wh:.0f} Wh: no discharging")
        return
    limit = (stored - floor_wh) * 3600.0 * policy.discharge_efficiency / dt_s
    n.narrow(Stage.RESERVE, -INF, limit,
             f"stored {stored:.0f} Wh is {stored - floor_wh:.0f} Wh above reserve floor "
             f"{floor_wh:.0f} Wh: discharge ≤ {_w(limit)} W this cycle")


def _mode_stage(n: _Narrower, mode: Mode) -> None:
    if mode is Mode.DISASTER_RESERVE:
        n.narrow(Stage.MODE, -INF, 0.0, "disaster_reserve: no discharging (charge and hold)")
    elif mode is Mode.SAFE:
        n.narrow(Stage.MODE, 0.0, 0.0, "safe: battery idle")


def _grid_stage(n: _Narrower, snap: SiteSnapshot, policy: SafetyPolicy, mode: Mode) -> None:
    net = snap.net_load_w
    if net is None or not math.isfinite(net):
        n.note(Stage.GRID, "no usable meter and battery power: grid limits not checked")
        return
    imp = policy.grid_import_limit_w
    exp = 0.0 if mode is Mode.DISASTER_RESERVE else policy.grid_export_limit_w
    # grid = net_load − battery  ⇒  battery ≥ net − import, battery ≤ net + export
    n.narrow(Stage.GRID, net - imp, INF,
             f"grid import ≤ {_w(imp)} W with net load {net:.0f} W: battery ≥ {net - imp:.0f} W")
    n.narrow(Stage.GRID, -INF, net + exp,
             f"grid export ≤ {_w(exp)} W with net load {net:.0f} W: battery ≤ {net + exp:.0f} W")


def _ramp_stage(n: _Narrower, b: BatteryReading, policy: SafetyPolicy,
                previous_setpoint_w: float | None, dt_s: float) -> None:
    anchor = previous_setpoint_w
    source = "previous setpoint"
    if anchor is None or not _finite(anchor):
        anchor, source = b.power_w, "measured power"  # first cycle: start from what the battery does
    if not _finite(anchor):
        n.note(Stage.RAMP, "no previous setpoint or measured power: ramp not applied")
        return
    step = policy.ramp_w_per_s * dt_s
    n.narrow(Stage.RAMP, anchor - step, anchor + step,
             f"ramp {policy.ramp_w_per_s:.0f} W/s × {dt_s:g} s around {source} {anchor:.0f} W")


def allowed_range(snap: SiteSnapshot, policy: SafetyPolicy, mode: Mode | str, reserve_floor_wh: float,
                  previous_setpoint_w: float | None, dt_s: float,
                  settings: GuardSettings = GuardSettings()) -> GuardResult:
    """Narrow the battery power range [W] for this cycle, stage by stage.

    reserve_floor_wh [Wh]: stored energy the battery keeps (see
    :func:`reserve_floor_for`); previous_setpoint_w [W]: last setpoint
    written (None on the first cycle: the measured power is used); dt_s [s]:
    how long the setpoint will hold (the cycle period).
    """
    mode = Mode(mode)
    if not (_finite(dt_s) and dt_s > 0):
        raise ValueError(f"dt_s must be a positive number of seconds, got {dt_s!r}")
    n = _Narrower(PowerRange(-policy.max_charge_w, policy.max_discharge_w))
    b = snap.battery
    problem = _battery_problem(b)
    if problem is not None or b is None:
        n.narrow(Stage.DEVICE, 0.0, 0.0, problem or "no battery reading")
        n.done(Stage.DEVICE)
        return GuardResult(n.range, n.range, tuple(n.clips), tuple(n.trace))
    _device_stage(n, b, policy)
    n.done(Stage.DEVICE)
    _soc_stage(n, b.soc_pct, policy, dt_s, settings)
    n.done(Stage.SOC)
    if mode is not Mode.ISLANDED:
        _reserve_stage(n, b.soc_pct / 100.0 * policy.capacity_wh, reserve_floor_wh, policy, dt_s)
        n.done(Stage.RESERVE)
    _mode_stage(n, mode)
    n.done(Stage.MODE)
    safety = n.range
    if mode not in (Mode.ISLANDED, Mode.SAFE):
        _grid_stage(n, snap, policy, mode)
        n.done(Stage.GRID)
    if mode is not Mode.ISLANDED:
        _ramp_stage(n, b, policy, previous_setpoint_w, dt_s)
        n.done(Stage.RAMP)
    return GuardResult(n.range, safety, tuple(n.clips), tuple(n.trace))


def apply(allowed: PowerRange, requested_w: float) -> tuple[float, list[Clip]]:
    """Clip the plan's requested setpoint [W] into ``allowed``; returns (setpoint_w, clips)."""
    if not _finite(requested_w):
        sp = allowed.clamp(0.0)
        return sp, [Clip(Stage.REQUEST, f"requested setpoint {requested_w!r} is not a number: "
                                        f"{sp:.0f} W used", requested_w, sp)]
    sp = allowed.clamp(float(requested_w))
    if sp == requested_w:
        return sp, []
    return sp, [Clip(Stage.REQUEST, f"plan asked {requested_w:.0f} W, allowed {allowed}: "
                                    f"{sp:.0f} W written", float(requested_w), sp)]


def reserve_floor_for(policy: SafetyPolicy, mode: Mode | str, critical_load_w: Sequence[float],
                      pv_w: Sequence[float], slot_h: float) -> float:
    """Reserve floor [Wh] for ``mode`` from a critical-load forecast [W] and PV forecast [W]
    per slot of ``slot_h`` [h] (optimizer.reserve.reserve_floor_wh, the same formula the
    optimizer uses)."""
    return reserve_floor_wh(policy, Mode(mode).value, critical_load_w, pv_w, slot_h)
