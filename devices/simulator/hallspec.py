"""What the simulator reads of a hall's description, as structural types.

``devices/`` knows nothing of ``ems/``: the simulator takes any object with
these attributes.  The fleet file's ``SiteConfig`` (in ``ems.config``) is
one; a test may pass a plain dataclass.  Units as in the fleet file.
"""

from __future__ import annotations

from typing import Protocol, Sequence

from devices.config import DeviceConfig


class LoadSpec(Protocol):
    """The hall's loads: base_w, peak_w and critical_w [W]; profile: the daily shape's name."""

    base_w: float
    peak_w: float
    critical_w: float
    profile: str


class BatterySpec(Protocol):
    """Battery: capacity_wh [Wh], SoC limits and start [%], power limits [W], efficiencies [0..1]."""

    capacity_wh: float
    soc_min_pct: float
    soc_max_pct: float
    initial_soc_pct: float
    max_charge_w: float
    max_discharge_w: float
    charge_efficiency: float
    discharge_efficiency: float


class PVSpec(Protocol):
    """PV array: capacity_w [W peak], tilt_deg and azimuth_deg [°, 180 = south]."""

    capacity_w: float
    tilt_deg: float
    azimuth_deg: float


class InverterSpec(Protocol):
    """Battery inverter: rated_w [W]."""

    rated_w: float


class SimulatorSpec(Protocol):
    """Where and how a hall is simulated: port (loopback Modbus TCP), seed, cloud_factor [0..1]."""

    port: int
    seed: int
    cloud_factor: float


class HallSpec(Protocol):
    """One hall: id, position lat/lon [°], equipment, loads, devices and its simulator section."""

    id: str
    lat: float
    lon: float
    battery: BatterySpec
    pv: PVSpec
    inverter: InverterSpec
    loads: LoadSpec
    devices: Sequence[DeviceConfig]
    simulator: SimulatorSpec | None


class FleetSpec(Protocol):
    """A fleet: its halls."""

    sites: Sequence[HallSpec]
