"""ECHONET Lite devices as natures: the same readings, units, signs and failure type as the Modbus ones.

* :class:`EchonetBattery` - storage battery 0x027D: ``read() -> BatteryReading``
  (power + = discharging, while ECHONET's 0xD3 is + = charging),
  ``set_power_w(w)`` the way the AIF specification for storage batteries
  prescribes: the charging or discharging power setting (0xEB / 0xEC [W])
  first, then the operation mode 0xDA (0x42 charge, 0x43 discharge, 0x44
  standby), both read back and compared.
* :class:`EchonetPV` - home solar power generation 0x0279: 0xE0 [W], 0xE1 [Wh].
* :class:`EchonetMeter` - low-voltage smart electric energy meter 0x0288 as a
  LAN object: 0xE7 [W] (+ = buying from the grid = importing, our sign),
  cumulative 0xE0 (import) / 0xE3 (export) x coefficient 0xD3 x unit 0xE1 [kWh].

On first use each device reads its object's property maps (0x9D status
announcement, 0x9E set, 0x9F get) and its static properties; a property the
object does not list is never asked for, and a required one that is missing
is a "config" DeviceError naming it.  Every failure is a
:class:`~devices.errors.DeviceError`: no answer "timeout", a refusal (ESV
0x5x) "exception_response" naming the property, a value out of range
"implausible", a read-back that differs "write_verify".
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass

from devices.config import DeviceConfig, EchonetLiteTransport
from devices.echonet import properties as P
from devices.echonet.client import EchonetSocket, RefusedError, ShortAnswerError, get_properties, set_properties
from devices.echonet.frame import (
    EOJ,
    EPC_FAULT,
    EPC_GET_MAP,
    EPC_INF_MAP,
    EPC_SET_MAP,
    EPC_STATUS,
    HOME_SOLAR,
    SMART_METER,
    STORAGE_BATTERY,
    FrameError,
    decode_property_map,
    eoj_text,
)
from devices.errors import DeviceError
from devices.natures import Clock, utc_now
from devices.readings import BatteryReading, BatteryState, MeterReading, Nature, PVReading, Reading

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PropertyMaps:
    """What an object says it supports: EPC sets of the status announcement (0x9D), set (0x9E), get (0x9F) maps."""

    inf: frozenset[int]
    set: frozenset[int]
    get: frozenset[int]


class EchonetDevice:
    """Common part of the ECHONET Lite natures: node address, object code, property maps, the shared socket."""

    nature: Nature
    class_code: tuple[int, int]
    #: Properties read at discovery besides the maps (static: ratings, units).
    static_epcs: tuple[int, ...] = ()

    def __init__(self, config: DeviceConfig, sock: EchonetSocket, *, clock: Clock = utc_now):
        t = config.transport
        if not isinstance(t, EchonetLiteTransport):
            raise ValueError(f"device {config.id}: not an ECHONET Lite device")
        if config.nature != self.nature:
            raise ValueError(f"device {config.id}: nature {config.nature.value} given to a {self.nature.value} class")
        self.id = config.id
        self.config = config
        self.connection = sock  # shared by the site's ECHONET Lite devices; close_all closes it once
        self.host, self.port = t.host, t.port
        self.eoj: EOJ = (*self.class_code, t.instance)
        self.clock = clock
        self.maps: PropertyMaps | None = None
        self.static: dict[int, bytes] = {}
        self.max_opc: int | None = None  # most properties the node answers per Get (None: no limit seen)
        self.refused_optional: set[int] = set()  # listed in 0x9F but refused (Get_SNA): not asked again
        self._discovery_lock = asyncio.Lock()

    @property
    def where(self) -> str:
        """``127.0.0.1:3610 0x027D01 (storage battery)`` for messages."""
        return f"{self.host}:{self.port} {eoj_text(self.eoj)}"

    async def discover(self) -> PropertyMaps:
        """Read the property maps and static properties once (again after a failure); raises DeviceError."""
        if self.maps is not None:
            return self.maps
        async with self._discovery_lock:
            if self.maps is None:
                raw = await self._request_get([EPC_INF_MAP, EPC_SET_MAP, EPC_GET_MAP])
                try:
                    maps = PropertyMaps(*(decode_property_map(raw[e]) for e in (EPC_INF_MAP, EPC_SET_MAP, EPC_GET_MAP)))
                except FrameError as exc:
                    raise DeviceError(self.id, "decode", f"{self.where}: property map: {exc}") from None
                wanted = [e for e in self.static_epcs if e in maps.get]
                self.static = await self._static(wanted)
                self.maps = maps
        return self.maps

    async def _static(self, epcs: list[int]) -> dict[int, bytes]:
        """Ratings and units; one the object lists but refuses is left out (its field reads as unknown)."""
        if not epcs:
            return {}
        try:
            return await self._request_get(epcs)
        except DeviceError as exc:
            if exc.kind != "exception_response" or len(epcs) == 1:
                if exc.kind == "exception_response":
                    return {}
                raise
        values: dict[int, bytes] = {}
        for epc in epcs:
            values.update(await self._static([epc]))
        return values

    async def _request_get(self, epcs: list[int], required: tuple[int, ...] | None = None) -> dict[int, bytes]:
        """Get ``epcs``, in chunks of ``max_opc`` once the node has shown it answers no more per frame.

        With ``required`` (the poll's own properties), a refusal is handled per chunk: real nodes list
        properties they then refuse; an optional one is dropped from later requests (logged once) and the
        chunks before and after it still count; a refused required one is the device's error, naming it.
        Without it a refusal is raised as it comes (:meth:`_static` handles it)."""
        values: dict[int, bytes] = {}
        todo = list(epcs)
        while todo:
            chunk = todo[: self.max_opc] if self.max_opc else todo
            try:
                values.update(await get_properties(self.connection, self.host, self.port, self.eoj, chunk,
                                                   timeout_s=self.config.timeout_s, device_id=self.id))
            except ShortAnswerError as exc:
                # Some nodes answer only the first n properties of a request (pychonet knows this as
                # EchonetMaxOpcError): remember n and ask for the rest in further requests.
                self.max_opc = len(exc.values)
                log.info("%s: %s; asking at most %d properties per request", self.id, exc.message, self.max_opc)
                values.update(exc.values)
                chunk = chunk[: self.max_opc]
            except RefusedError as exc:
                if required is None or any(e in required for e in exc.epcs):
                    raise
                self.refused_optional |= set(exc.epcs)
                log.warning("%s: %s; not asked for again", self.id, exc.message)
                values.update(exc.values)
            todo = todo[len(chunk):]
        return values

    async def get(self, required: tuple[int, ...], optional: tuple[int, ...] = ()) -> dict[int, bytes]:
        """Get ``required`` and those ``optional`` properties the get map lists, in one request."""
        maps = await self.discover()
        missing = [e for e in required if e not in maps.get]
        if missing:
            raise DeviceError(self.id, "config", f"{self.where} does not list "
                              + ", ".join(f"0x{e:02X} ({P.epc_name(self.eoj, e)})" for e in missing)
                              + " in its get property map 0x9F")
        epcs = list(required) + [e for e in optional if e in maps.get and e not in self.refused_optional]
        if not epcs:
            return {}
        return await self._request_get(epcs, required)

    def _unsigned(self, values: dict[int, bytes], epc: int) -> int | None:
        return P.unsigned(values[epc]) if epc in values else None

    def _signed(self, values: dict[int, bytes], epc: int) -> int | None:
        return P.signed(values[epc]) if epc in values else None

    def _need(self, value: float | None, epc: int) -> float:
        if value is None:
            raise DeviceError(self.id, "implausible", f"{self.where}: 0x{epc:02X} ({P.epc_name(self.eoj, epc)}) "
                              "has no data (sentinel value)")
        return float(value)

    def _check_power(self, w: float, epc: int) -> float:
        rated = self.config.rated_w
        if rated and abs(w) > 1.5 * rated:
            raise DeviceError(self.id, "implausible", f"{self.where}: 0x{epc:02X} ({P.epc_name(self.eoj, epc)}) "
                              f"{w:g} W exceeds 1.5 x rated_w {rated:g} W")
        return w

    async def read(self) -> Reading:  # pragma: no cover - every nature overrides it
        raise NotImplementedError

    async def close(self) -> None:
        """Nothing to do: the socket is shared and closed by the factory."""


def _max_of(edt: bytes | None) -> float | None:
    """The maximum of a "minimum/maximum power" property (0xC8/0xC9: max then min, 4 bytes each) [W]."""
    if edt is None or len(edt) != 8:
        return None
    return P.unsigned(edt[:4])


def _min_of(edt: bytes | None) -> float | None:
    if edt is None or len(edt) != 8:
        return None
    return P.unsigned(edt[4:])


_WORKING_STATE = {P.MODE_CHARGE: BatteryState.CHARGING, P.MODE_RAPID_CHARGE: BatteryState.CHARGING,
                  P.MODE_DISCHARGE: BatteryState.DISCHARGING, P.MODE_STANDBY: BatteryState.IDLE}


class EchonetBattery(EchonetDevice):
    """Storage battery 0x027D (see the module docstring)."""

    nature = Nature.BATTERY
    class_code = STORAGE_BATTERY
    static_epcs = (0xC8, 0xC9, 0xD0)
    heartbeat_period_s = None  # no watchdog counter: every SetC is the sign of life (see the simulator)

    async def read(self) -> BatteryReading:
        """SoC [%] (0xE4), power [W] (+ discharging; -0xD3), limits [W] (0xC8/0xC9), capacity [Wh] (0xD0), state."""
        v = await self.get((0xE4, 0xD3), (EPC_STATUS, EPC_FAULT, 0xCF, 0xDA, 0xE2, 0xE5, 0xA7, 0xDB))
        soc = self._need(self._unsigned(v, 0xE4), 0xE4)
        if not 0 <= soc <= 100:
            raise DeviceError(self.id, "implausible", f"{self.where}: 0xE4 remaining capacity {soc:g} % outside 0..100")
        remaining_wh, rated_wh = self._unsigned(v, 0xE2), self._unsigned(self.static, 0xD0)
        if remaining_wh is not None and rated_wh and abs(100.0 * remaining_wh / rated_wh - soc) <= 1.0:
            soc = 100.0 * remaining_wh / rated_wh  # 0xE4 is whole percent; Wh over rated Wh is finer when they agree
        power = self._check_power(0.0 - self._need(self._signed(v, 0xD3), 0xD3), 0xD3)
        faulted = v.get(EPC_FAULT) == bytes([P.FAULT])
        status_off = v.get(EPC_STATUS) == bytes([P.OFF])
        working = self._unsigned(v, 0xCF)
        if faulted:
            state = BatteryState.FAULT
        elif status_off:
            state = BatteryState.OFF
        elif working in _WORKING_STATE:
            state = _WORKING_STATE[working]
        else:
            state = BatteryState.IDLE if abs(power) < 1.0 else (
                BatteryState.DISCHARGING if power > 0 else BatteryState.CHARGING)
        usable = not faulted and not status_off
        mode = self._unsigned(v, 0xDA)
        extra = {"echonet.mode": P.MODE_NAMES.get(mode, mode) if mode is not None else None,
                 "echonet.working": P.MODE_NAMES.get(working, working) if working is not None else None,
                 "echonet.remaining_wh": self._unsigned(v, 0xE2),
                 "echonet.discharge_lower_limit_pct": self._unsigned(v, 0xA7),
                 "echonet.interconnection": self._unsigned(v, 0xDB)}
        max_ch, max_dis = _max_of(self.static.get(0xC8)), _max_of(self.static.get(0xC9))
        capacity, soh = self._unsigned(self.static, 0xD0), self._unsigned(v, 0xE5)
        return BatteryReading(
            device_id=self.id, time=self.clock(), soc_pct=soc, power_w=power,
            max_charge_w=(float(max_ch) if usable else 0.0) if max_ch is not None else None,
            max_discharge_w=(float(max_dis) if usable else 0.0) if max_dis is not None else None,
            capacity_wh=float(capacity) if capacity is not None else None,
            soh_pct=float(soh) if soh is not None else None,
            state=state, fault_code=1 if faulted else 0,
            extra={k: x for k, x in extra.items() if x is not None},
        )

    async def set_power_w(self, w: float) -> None:
        """Command battery power ``w`` [W], + = discharge, - = charge, 0 = standby; verified by read-back.

        AIF order: the power setting (0xEC discharging / 0xEB charging [W],
        whole watts) before the operation mode 0xDA, so the new mode never
        runs on the previous power.  Raises DeviceError: "invalid_value" (NaN,
        outside the object's 0xC8/0xC9 range), "config" (a needed property
        not in the set map 0x9E), "exception_response" (SetC_SNA, naming the
        property), "write_verify", or a transport kind.
        """
        if not isinstance(w, (int, float)) or not math.isfinite(w):
            raise DeviceError(self.id, "invalid_value", f"battery setpoint must be a finite number of W, got {w!r}")
        maps = await self.discover()
        watts = int(round(abs(w)))
        if watts == 0:
            props = [(0xDA, bytes([P.MODE_STANDBY]))]
        else:
            power_epc, range_epc, mode = (0xEC, 0xC9, P.MODE_DISCHARGE) if w > 0 else (0xEB, 0xC8, P.MODE_CHARGE)
            lo, hi = _min_of(self.static.get(range_epc)), _max_of(self.static.get(range_epc))
            if hi is not None and not (lo or 0) <= watts <= hi:
                raise DeviceError(self.id, "invalid_value",
                                  f"setpoint {w:g} W outside {P.epc_name(self.eoj, range_epc)} "
                                  f"{lo or 0:g}..{hi:g} W of {self.where} (0x{range_epc:02X})")
            props = [(power_epc, P.u(watts, 4)), (0xDA, bytes([mode]))]
        not_settable = [e for e, _ in props if e not in maps.set]
        if not_settable:
            raise DeviceError(self.id, "config", f"{self.where} does not list "
                              + ", ".join(f"0x{e:02X} ({P.epc_name(self.eoj, e)})" for e in not_settable)
                              + " in its set property map 0x9E: cannot take a setpoint")
        await set_properties(self.connection, self.host, self.port, self.eoj, props,
                             timeout_s=self.config.timeout_s, device_id=self.id)
        back = await self._request_get([e for e, _ in props])
        differ = [e for e, edt in props if back.get(e) != edt]
        if differ:
            raise DeviceError(self.id, "write_verify", f"{self.where}: read-back of "
                              + ", ".join(f"0x{e:02X} ({P.epc_name(self.eoj, e)}) is {back.get(e, b'').hex()} "
                                          f"not {dict(props)[e].hex()}" for e in differ))

    async def kick_heartbeat(self) -> None:
        """No heartbeat register on ECHONET Lite batteries: nothing to do."""
        return None


class EchonetPV(EchonetDevice):
    """Home solar power generation 0x0279: power [W] >= 0 (0xE0), energy [Wh] (0xE1, 0.001 kWh), rating [W] (0xE8)."""

    nature = Nature.PV
    class_code = HOME_SOLAR
    static_epcs = (0xE8,)

    async def read(self) -> PVReading:
        v = await self.get((0xE0,), (0xE1,))
        power = self._check_power(self._need(self._unsigned(v, 0xE0), 0xE0), 0xE0)
        rated, energy = self._unsigned(self.static, 0xE8), self._unsigned(v, 0xE1)
        return PVReading(device_id=self.id, time=self.clock(), power_w=power,
                         energy_wh=float(energy) if energy is not None else None, rated_w=float(rated) if rated else self.config.rated_w)


class EchonetMeter(EchonetDevice):
    """Low-voltage smart electric energy meter 0x0288 (LAN object; see the module docstring).

    The class has no voltage or frequency property, and in an outage the
    meter itself has no power: its LAN object (a HEMS controller or Wi-SUN
    bridge) stops answering or refuses the measured values.  So a lost grid
    is learnt from the site's storage battery (``grid_probe``, set by the
    device factory when the site has an ECHONET Lite battery): when the
    meter fails and the battery's system-interconnected type 0xDB says
    independent (0x01, self-sustained operation), the reading is
    ``grid_ok=False`` with 0 W at the point of connection.  Otherwise the
    meter's failure is raised as it is.
    """

    nature = Nature.METER
    class_code = SMART_METER
    static_epcs = (0xD3, 0xE1)
    grid_probe: "EchonetBattery | None" = None

    async def read(self) -> MeterReading:
        """Power [W] (+ import, 0xE7), import/export counters [Wh]; grid_ok from the battery when the meter fails."""
        try:
            return await self._read_meter()
        except DeviceError as exc:
            probe = self.grid_probe
            if probe is None or exc.kind not in ("timeout", "exception_response"):
                raise
            try:
                state = await probe.get((), (0xDB,))
            except DeviceError:
                raise exc from None
            if state.get(0xDB) != bytes([0x01]):
                raise
            return MeterReading(device_id=self.id, time=self.clock(), power_w=0.0, grid_ok=False,
                                extra={"echonet.grid_from": f"{probe.id} 0xDB independent", "echonet.meter": exc.message})

    def _wh_per_count(self) -> float | None:
        unit = self._unsigned(self.static, 0xE1)
        if unit is None:
            return None
        if unit not in P.METER_UNIT_KWH:
            raise DeviceError(self.id, "decode", f"{self.where}: 0xE1 unit code 0x{unit:02X} is not defined")
        coefficient = self._unsigned(self.static, 0xD3) if 0xD3 in self.static else 1
        return P.METER_UNIT_KWH[unit] * 1000.0 * (coefficient or 1)

    async def _read_meter(self) -> MeterReading:
        """Power [W] (+ import, 0xE7), import/export counters [Wh] (0xE0/0xE3 x 0xD3 x 0xE1)."""
        v = await self.get((0xE7,), (0xE0, 0xE3))
        power = self._check_power(self._need(self._signed(v, 0xE7), 0xE7), 0xE7)
        per_count = self._wh_per_count()
        imp, exp = self._unsigned(v, 0xE0), self._unsigned(v, 0xE3)
        return MeterReading(
            device_id=self.id, time=self.clock(), power_w=power,
            import_wh=imp * per_count if imp is not None and per_count else None,
            export_wh=exp * per_count if exp is not None and per_count else None,
        )


ECHONET_CLASSES: dict[Nature, type[EchonetDevice]] = {
    Nature.BATTERY: EchonetBattery,
    Nature.METER: EchonetMeter,
    Nature.PV: EchonetPV,
}


def link_grid_probe(devices) -> None:
    """Let each ECHONET Lite meter learn a lost grid from the site's ECHONET Lite battery (one site's devices)."""
    batteries = [d for d in devices if isinstance(d, EchonetBattery)]
    for d in devices:
        if isinstance(d, EchonetMeter) and len(batteries) == 1:
            d.grid_probe = batteries[0]
