"""The frozen process image of one control cycle, and the checks on its data.

Each cycle the daemon copies the latest reading of every device into one
:class:`SiteSnapshot`; the mode machine, the plan and the guard all decide on
that same image, so no decision sees a value another decision did not.

Freshness: a reading is stale when it is older than ``stale_cycles ×
cycle_s`` (from ``ControlSpec``) at the snapshot's time.  The PV reading is
not needed for control (the meter already sees PV), so only battery and
meter data decide whether the site can be controlled.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Mapping

from devices.readings import BatteryReading, MeterReading, PVReading, Reading

if TYPE_CHECKING:  # avoid an import cycle: modes.py reads snapshots
    from ems.gateway.modes import ModeState


@dataclass(frozen=True, slots=True)
class CycleStats:
    """Timing of the control loop: last_cycle_ms [ms] measured duration of the
    previous cycle, cycle_count cycles run so far, overruns cycles that took
    longer than the cycle period."""

    last_cycle_ms: float = 0.0
    cycle_count: int = 0
    overruns: int = 0


@dataclass(frozen=True, slots=True)
class SiteSnapshot:
    """Everything one control cycle knows about a site, at ``time`` (tz-aware UTC).

    battery / meter / pv: latest readings (None if never read);
    device_health: per device id, the poller's health object (anything with
    ok, last_ok_at, last_latency_ms, consecutive_failures, total_failures);
    stats: loop timing; mode: the mode state, filled in by the daemon after
    the mode machine has run.
    """

    time: datetime
    site_id: str
    battery: BatteryReading | None = None
    meter: MeterReading | None = None
    pv: PVReading | None = None
    device_health: Mapping[str, Any] = field(default_factory=dict)
    stats: CycleStats = CycleStats()
    mode: "ModeState | None" = None

    def __post_init__(self) -> None:
        if self.time.tzinfo is None or self.time.utcoffset() is None:
            raise ValueError("SiteSnapshot.time must be timezone-aware (UTC)")

    @property
    def net_load_w(self) -> float | None:
        """Hall load minus PV [W] = meter power + battery power.

        What the battery would have to deliver for zero grid flow: positive
        = the hall draws more than PV gives, negative = PV surplus.  None
        without both meter and battery readings.
        """
        if self.meter is None or self.battery is None:
            return None
        return self.meter.power_w + self.battery.power_w

    def stored_wh(self, capacity_wh: float) -> float | None:
        """Energy in the battery [Wh] = SoC [%] / 100 × capacity_wh [Wh]; None without a reading."""
        if self.battery is None:
            return None
        return self.battery.soc_pct / 100.0 * capacity_wh

    def age_s(self, reading: Reading | None) -> float | None:
        """Age [s] of ``reading`` at the snapshot time (negative if it claims a future time)."""
        if reading is None:
            return None
        return (self.time - reading.time).total_seconds()

    def with_mode(self, mode: "ModeState") -> "SiteSnapshot":
        """A copy with the mode state filled in (the snapshot itself stays frozen)."""
        from dataclasses import replace

        return replace(self, mode=mode)


def stale_after_s(cycle_s: float, stale_cycles: int) -> float:
    """Age [s] beyond which a reading is stale: stale_cycles × cycle_s [s]."""
    if cycle_s <= 0 or stale_cycles < 1:
        raise ValueError("cycle_s must be > 0 and stale_cycles >= 1")
    return stale_cycles * cycle_s


def is_stale(reading: Reading | None, now: datetime, max_age_s: float) -> bool:
    """True when ``reading`` is missing or older than ``max_age_s`` [s] at ``now``.

    A reading stamped more than ``max_age_s`` in the future is stale too: its
    clock is wrong, so its age says nothing.
    """
    if reading is None:
        return True
    age = (now - reading.time).total_seconds()
    return age > max_age_s or age < -max_age_s


def _finite(x: float | None) -> bool:
    return x is not None and isinstance(x, (int, float)) and math.isfinite(x)


def implausible(snapshot: SiteSnapshot, max_power_w: float | None = None) -> list[str]:
    """Reasons the battery or meter data cannot be believed (empty list = plausible).

    Checks: SoC in 0..100 %, powers finite, device limits finite and >= 0,
    |battery power| <= 2 × ``max_power_w`` [W] (a reading far beyond the
    nameplate is a decoding error, not a measurement).  The poller already
    rejects such values; this is the control core's own line of defence.
    """
    problems: list[str] = []
    b = snapshot.battery
    if b is not None:
        if not _finite(b.soc_pct) or not 0.0 <= b.soc_pct <= 100.0:
            problems.append(f"battery {b.device_id}: SoC {b.soc_pct} % outside 0..100")
        if not _finite(b.power_w):
            problems.append(f"battery {b.device_id}: power {b.power_w} W not a number")
        elif max_power_w is not None and abs(b.power_w) > 2.0 * max_power_w:
            problems.append(
                f"battery {b.device_id}: power {b.power_w:.0f} W beyond 2 × rating {max_power_w:.0f} W"
            )
        for name in ("max_charge_w", "max_discharge_w"):
            v = getattr(b, name)
            if v is not None and (not _finite(v) or v < 0):
                problems.append(f"battery {b.device_id}: {name} {v} W invalid")
    m = snapshot.meter
    if m is not None and not _finite(m.power_w):
        problems.append(f"meter {m.device_id}: power {m.power_w} W not a number")
    return problems


@dataclass(frozen=True, slots=True)
class DataCheck:
    """Outcome of checking a snapshot's control data.

    missing / stale / implausible: one human-readable reason per problem;
    fault: the battery's fault description, or None.
    """

    missing: tuple[str, ...] = ()
    stale: tuple[str, ...] = ()
    implausible: tuple[str, ...] = ()
    fault: str | None = None

    @property
    def ok(self) -> bool:
        """True when the battery and meter data can be used for control."""
        return not (self.missing or self.stale or self.implausible or self.fault)


def check_data(snapshot: SiteSnapshot, max_age_s: float,
               max_power_w: float | None = None) -> DataCheck:
    """Check battery and meter readings for presence, age [s], plausibility and battery faults."""
    missing: list[str] = []
    stale: list[str] = []
    for name, reading in (("battery", snapshot.battery), ("meter", snapshot.meter)):
        if reading is None:
            missing.append(f"no {name} reading")
        elif is_stale(reading, snapshot.time, max_age_s):
            stale.append(
                f"{name} {reading.device_id} data {snapshot.age_s(reading):.1f} s old (limit {max_age_s:.1f} s)"
            )
    fault = None
    b = snapshot.battery
    if b is not None and b.faulted:
        fault = f"battery {b.device_id} reports fault (state {b.state.name}, code {b.fault_code})"
    return DataCheck(tuple(missing), tuple(stale), tuple(implausible(snapshot, max_power_w)), fault)
