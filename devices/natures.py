"""Device natures: what the rest of the system talks to, with units and signs on them.

OpenEMS-style: a battery, a meter and a PV inverter are *natures*; how they
are wired (Modbus TCP/RTU, a plain register map or SunSpec) is hidden here.

* :class:`BatteryDevice` - ``read() -> BatteryReading`` (power + =
  discharging), ``set_power_w(w)`` (+ = discharge, verified by read-back),
  ``kick_heartbeat()``.
* :class:`MeterDevice` - ``read() -> MeterReading`` (power + = importing).
* :class:`PVDevice` - ``read() -> PVReading`` (power >= 0).

Every device is built from a :class:`~devices.config.DeviceConfig` plus a
:class:`~devices.registermap.RegisterMap`, or ``map: sunspec`` (the map is
found by SunSpec discovery on first use).  Timestamps come from an
injectable clock and are tz-aware UTC.  All failures raise
:class:`devices.errors.DeviceError`.
"""

from __future__ import annotations

import asyncio
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Protocol, runtime_checkable

from devices.config import DeviceConfig
from devices.errors import DeviceError
from devices.modbus.client import PointValues, RegisterClient
from devices.modbus.connection import ModbusConnection
from devices.readings import (
    BatteryReading,
    BatteryState,
    MeterReading,
    Nature,
    PVReading,
    Reading,
)
from devices.registermap import RegisterMap

Clock = Callable[[], datetime]

#: SunSpec points worth passing on in ``Reading.extra`` (the full models are too chatty).
SUNSPEC_EXTRA = ("m103.St", "m103.Hz", "m124.ChaSt", "m802.ChaSt", "m802.State", "m802.V", "m713.WHAvail")


def utc_now() -> datetime:
    """Current time, tz-aware UTC."""
    return datetime.now(timezone.utc)


@runtime_checkable
class Device(Protocol):
    """What pollers and the daemon need from any device (Modbus natures, MQTT devices)."""

    id: str
    nature: Nature
    config: DeviceConfig

    async def read(self) -> Reading:
        """One fresh reading; raises DeviceError."""
        ...


class ModbusDevice:
    """Common part of the Modbus natures: map (or SunSpec discovery), client, clock."""

    nature: Nature

    def __init__(
        self,
        config: DeviceConfig,
        connection: ModbusConnection,
        regmap: RegisterMap | None = None,
        *,
        clock: Clock = utc_now,
        sunspec_folder: Path | None = None,
    ):
        if config.nature != self.nature:
            raise ValueError(f"device {config.id}: nature {config.nature.value} given to a {self.nature.value} class")
        if regmap is not None and regmap.nature != self.nature:
            raise ValueError(f"device {config.id}: map {regmap.name} is a {regmap.nature.value} map")
        self.id = config.id
        self.config = config
        self.connection = connection
        self.unit = getattr(config.transport, "unit", 1)
        self.clock = clock
        self.sunspec_info = None  # devices.sunspec.SunSpecInfo after discovery
        self._sunspec_folder = sunspec_folder
        self._client: RegisterClient | None = None
        self._discovery_lock = asyncio.Lock()
        if regmap is not None:
            self._client = self._make_client(regmap)

    def _make_client(self, regmap: RegisterMap) -> RegisterClient:
        return RegisterClient(
            self.connection, self.unit, regmap,
            device_id=self.id, rated_w=self.config.rated_w, timeout_s=self.config.timeout_s,
        )

    @property
    def regmap(self) -> RegisterMap | None:
        """The register map in use (None until SunSpec discovery has run)."""
        return self._client.regmap if self._client else None

    @property
    def is_sunspec(self) -> bool:
        """True when the map came from SunSpec discovery."""
        return self.config.map == "sunspec"

    async def client(self) -> RegisterClient:
        """The register client, running SunSpec discovery first if needed (raises DeviceError)."""
        if self._client is not None:
            return self._client
        async with self._discovery_lock:
            if self._client is None:
                from devices.sunspec import discover

                info = await discover(
                    self.connection, self.unit, self.nature, device_id=self.id, folder=self._sunspec_folder
                )
                self.sunspec_info = info
                self._client = self._make_client(info.regmap)
        return self._client

    async def read_values(self) -> PointValues:
        """Every point of the map, decoded (raises DeviceError)."""
        return await (await self.client()).read_points()

    def _extra(self, pv: PointValues) -> dict[str, float | int | str | None]:
        regmap = self._client.regmap if self._client else None
        if regmap is None:
            return {}
        if self.is_sunspec:
            return {k: pv.values[k] for k in SUNSPEC_EXTRA if pv.values.get(k) is not None}
        return {
            p.name: pv.values.get(p.name)
            for p in regmap.points
            if p.field is None and p.type.value != "sunssf" and pv.values.get(p.name) is not None
        }

    def _float(self, pv: PointValues, field: str) -> float | None:
        p = self._client.regmap.by_field.get(field) if self._client else None
        v = pv.values.get(p.name) if p else None
        return float(v) if isinstance(v, (int, float)) else None

    async def close(self) -> None:
        """Nothing to do: the connection is shared and closed by the factory."""


# ----------------------------------------------------------------------------


#: SunSpec ChaSt (models 124/802) -> our state.
_CHAST = {1: BatteryState.OFF, 2: BatteryState.IDLE, 3: BatteryState.DISCHARGING, 4: BatteryState.CHARGING,
          5: BatteryState.IDLE, 6: BatteryState.IDLE, 7: BatteryState.IDLE}
#: Model 124 StorCtl_Mod bits.
STORCTL_CHARGE, STORCTL_DISCHARGE = 0b01, 0b10


class BatteryDevice(ModbusDevice):
    """A battery with its inverter.

    ``revert_timeout_s`` [s]: for SunSpec model 124 control, the time after
    which the device drops our charge/discharge rate if we stop writing
    (InOutWRte_RvrtTms: the device-side watchdog).
    """

    nature = Nature.BATTERY

    def __init__(self, *args, revert_timeout_s: float = 30.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.revert_timeout_s = revert_timeout_s
        self._heartbeat = 0
        self._heartbeat_synced = False

    async def read(self) -> BatteryReading:
        """Read SoC [%], power [W] (+ discharging), limits [W], capacity [Wh], SoH [%], state."""
        pv = await self.read_values()
        return BatteryReading(
            device_id=self.id,
            time=self.clock(),
            soc_pct=self._float(pv, "soc_pct"),
            power_w=self._float(pv, "power_w"),
            max_charge_w=self._float(pv, "max_charge_w"),
            max_discharge_w=self._float(pv, "max_discharge_w"),
            capacity_wh=self._float(pv, "capacity_wh"),
            soh_pct=self._float(pv, "soh_pct"),
            state=self._state(pv),
            fault_code=self._fault_code(pv),
            extra=self._extra(pv),
        )

    def _state(self, pv: PointValues) -> BatteryState:
        if self.is_sunspec:
            if pv.values.get("m802.State") == 99:
                return BatteryState.FAULT
            chast = pv.values.get("m802.ChaSt", pv.values.get("m124.ChaSt"))
            return _CHAST.get(chast, BatteryState.UNKNOWN) if isinstance(chast, int) else BatteryState.UNKNOWN
        raw = self._float(pv, "state")
        try:
            return BatteryState(int(raw)) if raw is not None else BatteryState.UNKNOWN
        except ValueError:
            return BatteryState.UNKNOWN

    def _fault_code(self, pv: PointValues) -> int | None:
        raw = self._float(pv, "fault_code")
        return int(raw) if raw is not None else None

    @property
    def heartbeat_period_s(self) -> float | None:
        """How often [s] :meth:`kick_heartbeat` must run, None when the map has no heartbeat."""
        regmap = self.regmap
        return regmap.heartbeat.period_s if regmap and regmap.heartbeat else None

    async def kick_heartbeat(self) -> int | None:
        """Write the next value of the watchdog counter (verified); returns it, None without a heartbeat."""
        client = await self.client()
        if client.regmap.heartbeat is None:
            return None
        name = client.regmap.heartbeat.point
        if self._heartbeat_synced is False:
            # Continue from what the register holds: writing the value it
            # already has (e.g. 1 after our own restart) would not count as a
            # change and the device's watchdog would not be reset.
            current = (await client.read_named([name])).get(name)
            self._heartbeat = int(current) if isinstance(current, (int, float)) else 0
            self._heartbeat_synced = True
        self._heartbeat = (self._heartbeat + 1) % 0x10000
        await client.write_point(name, self._heartbeat)
        return self._heartbeat

    async def set_power_w(self, w: float) -> None:
        """Command battery power ``w`` [W], + = discharge, - = charge, 0 = idle.

        Plain maps write the ``setpoint_w`` point; SunSpec devices use model
        124 (StorCtl_Mod bits, OutWRte/InWRte [% of WChaMax], revert timer).
        Every write is verified by read-back.  Raises DeviceError
        ("invalid_value" for NaN or out-of-range, "config" when the device
        cannot take a setpoint, "write_verify", or transport kinds).
        """
        if not isinstance(w, (int, float)) or not math.isfinite(w):
            raise DeviceError(self.id, "invalid_value", f"battery setpoint must be a finite number of W, got {w!r}")
        client = await self.client()
        setpoint = client.regmap.by_field.get("setpoint_w")
        if setpoint is not None:
            await client.write_point(setpoint.name, w)
            return
        if "m124.StorCtl_Mod" in client.regmap.by_name:
            await self._set_power_124(client, float(w))
            return
        raise DeviceError(self.id, "config", f"map {client.regmap.name} has no setpoint_w point and no SunSpec model 124")

    async def _set_power_124(self, client: RegisterClient, w: float) -> None:
        # Model 124 has only WChaMax; SunSpec inverters use it as the base of
        # both InWRte and OutWRte when no separate discharge maximum exists.
        # One read for the base and the rates' scale factor, passed to both
        # rate writes (each would otherwise re-read it).
        known = await client.read_named(["m124.WChaMax", "m124.InOutWRte_SF"])
        base, rate_sf = known.get("m124.WChaMax"), known.get("m124.InOutWRte_SF")
        if not base:
            raise DeviceError(self.id, "config", "m124.WChaMax (maximum charge rate) is not available: cannot scale a setpoint")
        if rate_sf is None:
            raise DeviceError(self.id, "config", "m124.InOutWRte_SF (rate scale factor) is not available: cannot scale a setpoint")
        pct = abs(w) / float(base) * 100.0
        if pct > 100.0 + 1e-9:
            raise DeviceError(
                self.id, "invalid_value", f"setpoint {w:g} W exceeds WChaMax {float(base):g} W of SunSpec model 124"
            )
        out_pct, in_pct = (pct, 0.0) if w > 0 else (0.0, pct)
        # Rates and revert timer first, the mode bits last: the mode must never
        # act on the previous command's rates.
        await client.write_point("m124.OutWRte", out_pct, exponent=int(rate_sf))
        await client.write_point("m124.InWRte", in_pct, exponent=int(rate_sf))
        if "m124.InOutWRte_RvrtTms" in client.regmap.by_name:
            await client.write_point("m124.InOutWRte_RvrtTms", int(round(self.revert_timeout_s)))
        # Both limits active: zero on one side forbids that direction, so the
        # battery follows exactly the commanded direction and rate (0 W = hold).
        await client.write_point("m124.StorCtl_Mod", STORCTL_CHARGE | STORCTL_DISCHARGE)


class MeterDevice(ModbusDevice):
    """The grid meter at the hall's point of connection.

    ``nominal_voltage_v`` [V]: phase voltage the grid should show (Japan's
    low-voltage service: 100 V); used to derive ``grid_ok`` when the map has
    no grid_ok point.
    """

    nature = Nature.METER

    def __init__(self, *args, nominal_voltage_v: float = 100.0, **kwargs):
        super().__init__(*args, **kwargs)
        self.nominal_voltage_v = nominal_voltage_v

    async def read(self) -> MeterReading:
        """Read power [W] (+ import), energy counters [Wh], voltage [V], frequency [Hz], grid_ok."""
        pv = await self.read_values()
        voltage = self._float(pv, "voltage_v")
        frequency = self._float(pv, "frequency_hz")
        grid_ok_raw = self._float(pv, "grid_ok")
        if grid_ok_raw is not None:
            grid_ok = bool(grid_ok_raw)
        else:
            grid_ok = derive_grid_ok(voltage, frequency, self.nominal_voltage_v)
        return MeterReading(
            device_id=self.id,
            time=self.clock(),
            power_w=self._float(pv, "power_w"),
            import_wh=self._float(pv, "import_wh"),
            export_wh=self._float(pv, "export_wh"),
            voltage_v=voltage,
            frequency_hz=frequency,
            grid_ok=grid_ok,
            extra=self._extra(pv),
        )


def derive_grid_ok(voltage_v: float | None, frequency_hz: float | None, nominal_voltage_v: float) -> bool:
    """Grid present? False when voltage [V] < 50 % of nominal, or frequency [Hz] is 0 or outside 45-65 Hz.

    Unknown values do not count against the grid (True when both are None).
    """
    if voltage_v is not None and voltage_v < 0.5 * nominal_voltage_v:
        return False
    if frequency_hz is not None and (frequency_hz == 0 or not 45.0 <= frequency_hz <= 65.0):
        return False
    return True


class PVDevice(ModbusDevice):
    """A PV inverter: power [W] >= 0, lifetime energy [Wh], rating [W]."""

    nature = Nature.PV

    async def read(self) -> PVReading:
        """Read PV power [W] (small negative night-time values clamp to 0), energy [Wh], rated power [W]."""
        pv = await self.read_values()
        power = self._float(pv, "power_w")
        rated = self._float(pv, "rated_w") or self.config.rated_w
        return PVReading(
            device_id=self.id,
            time=self.clock(),
            power_w=max(0.0, power),  # inverters draw a few W at night; PV output is never negative
            energy_wh=self._float(pv, "energy_wh"),
            rated_w=rated,
            extra=self._extra(pv),
        )


NATURE_CLASSES: dict[Nature, type[ModbusDevice]] = {
    Nature.BATTERY: BatteryDevice,
    Nature.METER: MeterDevice,
    Nature.PV: PVDevice,
}
