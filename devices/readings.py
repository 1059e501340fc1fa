"""Typed, unit-tagged, timestamped readings produced by the device layer.

Sign conventions (stated once, here, for the whole project):

* battery power ``power_w`` [W]: positive = discharging (energy leaves the
  battery), negative = charging.
* grid power ``power_w`` at the grid meter [W]: positive = importing from the
  grid, negative = exporting to it.
* PV power [W] is never negative.

Times are timezone-aware UTC ``datetime`` objects.  Readings are frozen: the
control cycle copies the latest reading of every device into one snapshot and
nobody changes it afterwards.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from datetime import datetime
from typing import Mapping


class Nature(str, enum.Enum):
    """What a device is, independent of how it is wired or which protocol it speaks."""

    BATTERY = "battery"
    METER = "meter"
    PV = "pv"


class BatteryState(enum.IntEnum):
    """Operating state of a battery inverter, as a small vendor-neutral code."""

    UNKNOWN = 0
    IDLE = 1
    CHARGING = 2
    DISCHARGING = 3
    FAULT = 4
    OFF = 5


@dataclass(frozen=True, slots=True)
class BatteryReading:
    """One reading of a battery with its inverter.

    soc_pct [%], power_w [W] (+ discharging), max_charge_w / max_discharge_w
    [W] (what the device allows right now, both >= 0), capacity_wh [Wh]
    (usable nameplate), soh_pct [%].
    """

    device_id: str
    time: datetime
    soc_pct: float
    power_w: float
    max_charge_w: float | None = None
    max_discharge_w: float | None = None
    capacity_wh: float | None = None
    soh_pct: float | None = None
    state: BatteryState = BatteryState.UNKNOWN
    fault_code: int | None = None
    extra: Mapping[str, float | int | str | None] = field(default_factory=dict)

    @property
    def faulted(self) -> bool:
        """True when the device reports a fault state or a non-zero fault code."""
        return self.state == BatteryState.FAULT or bool(self.fault_code)


@dataclass(frozen=True, slots=True)
class MeterReading:
    """One reading of the grid meter at the hall's point of connection.

    power_w [W] (+ import), import_wh / export_wh [Wh] (cumulative counters),
    voltage_v [V], frequency_hz [Hz], grid_ok: False when the meter sees the
    grid as lost (no voltage or frequency out of band).
    """

    device_id: str
    time: datetime
    power_w: float
    import_wh: float | None = None
    export_wh: float | None = None
    voltage_v: float | None = None
    frequency_hz: float | None = None
    grid_ok: bool = True
    extra: Mapping[str, float | int | str | None] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class PVReading:
    """One reading of a PV inverter: power_w [W] (>= 0), energy_wh [Wh] cumulative, rated_w [W]."""

    device_id: str
    time: datetime
    power_w: float
    energy_wh: float | None = None
    rated_w: float | None = None
    extra: Mapping[str, float | int | str | None] = field(default_factory=dict)


Reading = BatteryReading | MeterReading | PVReading

#: Canonical field names a register map may bind a point to, per nature, with
#: whether the reading cannot be built without it.
CANONICAL_FIELDS: dict[Nature, dict[str, bool]] = {
    Nature.BATTERY: {
        "soc_pct": True,
        "power_w": True,
        "max_charge_w": False,
        "max_discharge_w": False,
        "capacity_wh": False,
        "soh_pct": False,
        "state": False,
        "fault_code": False,
        "setpoint_w": False,  # write target [W], + discharge
        "heartbeat": False,  # watchdog counter the gateway keeps changing
    },
    Nature.METER: {
        "power_w": True,
        "import_wh": False,
        "export_wh": False,
        "voltage_v": False,
        "frequency_hz": False,
        "grid_ok": False,
    },
    Nature.PV: {
        "power_w": True,
        "energy_wh": False,
        "rated_w": False,
        "limit_pct": False,  # export/curtailment limit write target [%]
    },
}
