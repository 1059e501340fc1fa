"""Register images of the simulated devices: physics state → registers, writes → physics.

Each Modbus unit of a simulated hall is a :class:`UnitImage`: contiguous
blocks of holding and/or input registers covering its register map (gaps
read as 0, as on most devices, so a client may read across them).  Values are
encoded with :func:`devices.codec.encode` and the SAME register maps the
client decodes with; the SunSpec PV inverter is encoded with
:func:`devices.sunspec.build_image`.

Writes are checked like a device would: a register that no writable point
covers is an illegal address, a value outside a point's range an illegal
value; accepted writes go to the physics (setpoint [W], heartbeat,
watchdog timeout [s]) and read back as written.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping

from pymodbus.constants import ExcCodes

from devices import codec, sunspec
from devices.config import SUNSPEC, DeviceConfig
from devices.readings import Nature
from devices.registermap import Function, Point, RegisterMap, RegType
from devices.simulator.faults import RegisterFaults
from devices.simulator.physics import HallPhysics, HallState

log = logging.getLogger(__name__)

#: Values of canonical fields, per nature, from a physics state (our units and signs).
FIELD_VALUES: dict[Nature, dict[str, Callable[[HallState], float]]] = {
    Nature.BATTERY: {
        "soc_pct": lambda s: s.soc_pct,
        "soh_pct": lambda s: s.soh_pct,
        "power_w": lambda s: s.battery_power_w,
        "max_charge_w": lambda s: s.max_charge_w,
        "max_discharge_w": lambda s: s.max_discharge_w,
        "capacity_wh": lambda s: s.capacity_wh,
        "state": lambda s: int(s.battery_state),
        "fault_code": lambda s: s.fault_code,
        "setpoint_w": lambda s: s.setpoint_w,
        "heartbeat": lambda s: s.heartbeat,
    },
    Nature.METER: {
        "power_w": lambda s: s.grid_power_w,
        "import_wh": lambda s: s.import_wh,
        "export_wh": lambda s: s.export_wh,
        "voltage_v": lambda s: s.voltage_v,
        "frequency_hz": lambda s: s.frequency_hz,
        "grid_ok": lambda s: int(s.grid_available),
    },
    Nature.PV: {
        "power_w": lambda s: s.pv_power_w,
        "energy_wh": lambda s: s.pv_energy_wh,
    },
}

#: Values of points without a canonical field, by point name.  The hall has a
#: single-phase three-wire service (101/202 V): L1 and L2 carry the phase
#: voltage, a three-phase meter's L3 input is not connected.
NAME_VALUES: dict[Nature, dict[str, Callable[[HallState], float]]] = {
    Nature.BATTERY: {"watchdog_timeout": lambda s: s.watchdog_timeout_s},
    Nature.METER: {"voltage_l2": lambda s: s.voltage_v, "voltage_l3": lambda s: 0.0},
    Nature.PV: {},
}

_TABLE_OF_FC = {3: Function.HOLDING, 6: Function.HOLDING, 16: Function.HOLDING,
                22: Function.HOLDING, 23: Function.HOLDING, 4: Function.INPUT}


def table_of(function_code: int) -> Function | None:
    """Register table a Modbus function code addresses (None for coils/discrete inputs)."""
    return _TABLE_OF_FC.get(function_code)


class UnitImage:
    """The registers one simulated unit serves, kept in sync with the physics.

    ``blocks`` maps a table to (first address, registers).  ``refresh()``
    re-encodes from the physics state when it changed (and the unit is not
    frozen); ``write()`` applies a client write.
    """

    def __init__(self, device: DeviceConfig, regmap: RegisterMap, physics: HallPhysics):
        self.device = device
        self.regmap = regmap
        self.nature = device.nature
        self.physics = physics
        self.blocks: dict[Function, tuple[int, list[int]]] = {}
        for table in Function:
            pts = [p for p in regmap.points if p.function == table]
            if pts:
                first = min(p.address for p in pts)
                last = max(p.address + p.word_count for p in pts)
                self.blocks[table] = (first, [0] * (last - first))
        self.writable: dict[int, Point] = {
            p.address + i: p for p in regmap.points if p.access != "r" for i in range(p.word_count)
        }
        self._rendered: HallState | None = None
        self._warned: set[str] = set()

    # ------------------------------------------------------------------ reads
    def refresh(self) -> None:
        """Re-encode the registers from the physics state if it changed since the last time."""
        state = self.physics.state
        if state is self._rendered:
            return
        faults = self.physics.register_faults
        if self._rendered is not None and self.nature in faults.frozen:
            return  # a hung communication module keeps serving its last values
        self._rendered = state
        self._render(state, faults)

    def _render(self, state: HallState, faults: RegisterFaults) -> None:
        values = self.values(state)
        values.update(faults.garbage.get(self.nature, {}))
        sentinels = self.nature in faults.sentinels
        for p in self.regmap.points:
            if sentinels and p.access == "r":
                self._put(p, sunspec.sentinel_registers(p))
            elif p.name in values:
                self._put(p, self._encode(p, values[p.name]))

    def values(self, state: HallState) -> dict[str, Any]:
        """Point name → value [our units and signs] for the points the physics knows."""
        fields = FIELD_VALUES[self.nature]
        names = NAME_VALUES[self.nature]
        out: dict[str, Any] = {}
        for p in self.regmap.points:
            if p.name in names:
                out[p.name] = names[p.name](state)
            elif p.field in fields:
                out[p.name] = fields[p.field](state)
            elif p.type == RegType.SUNSSF:
                out[p.name] = 0
        return out

    def _encode(self, p: Point, value: Any) -> list[int]:
        exponent = 0 if p.scale_factor else None
        try:
            return codec.encode(self.regmap, p, value, exponent)
        except (ValueError, OverflowError) as exc:
            # Garbage that does not even fit the register: serve "not implemented".
            if p.name not in self._warned:
                self._warned.add(p.name)
                log.warning("%s: cannot encode %s: %s", self.device.id, p.name, exc)
            return sunspec.sentinel_registers(p)

    def _put(self, p: Point, words: list[int]) -> None:
        start, regs = self.blocks[p.function]
        regs[p.address - start : p.address - start + len(words)] = words

    # ----------------------------------------------------------------- writes
    def write(self, table: Function, address: int, words: list[int]) -> ExcCodes | None:
        """Apply a client write of ``words`` at ``address``; an exception code if refused."""
        if self.nature in self.physics.register_faults.refused_writes:
            return ExcCodes.DEVICE_FAILURE
        block = self.blocks.get(table)
        if block is None or table != Function.HOLDING:
            return ExcCodes.ILLEGAL_ADDRESS
        start, regs = block
        span = range(address, address + len(words))
        if any(a not in self.writable for a in span):
            return ExcCodes.ILLEGAL_ADDRESS
        merged = list(regs)
        merged[address - start : address - start + len(words)] = words
        touched = {self.writable[a].name: self.writable[a] for a in span}
        decoded: dict[str, Any] = {}
        for name, p in touched.items():
            raw = merged[p.address - start : p.address - start + p.word_count]
            try:
                decoded[name] = codec.decode(self.regmap, p, raw, 0 if p.scale_factor else None)
            except codec.DecodeError as exc:
                log.info("%s: refused write: %s", self.device.id, exc)
                return ExcCodes.ILLEGAL_VALUE
        for name, value in decoded.items():
            if value is None:
                return ExcCodes.ILLEGAL_VALUE
            try:
                self._apply(touched[name], value)
            except ValueError as exc:
                log.info("%s: refused write of %s: %s", self.device.id, name, exc)
                return ExcCodes.ILLEGAL_VALUE
        regs[:] = merged
        self.refresh()
        return None

    def _apply(self, p: Point, value: Any) -> None:
        """Hand a written value to the physics (points the physics does not know are just stored)."""
        if self.nature != Nature.BATTERY:
            return
        if p.field == "setpoint_w":
            if not self.physics.register_faults.ignored_setpoints:
                self.physics.set_setpoint(float(value))
        elif p.field == "heartbeat":
            self.physics.kick_heartbeat(int(value))
        elif p.name == "watchdog_timeout":
            self.physics.watchdog_timeout_s = float(value)


class SunSpecPVImage(UnitImage):
    """A SunSpec PV inverter (models 1, 103, 120 at ``base``) rendered with :func:`sunspec.build_image`."""

    MODELS = (1, 103, 120)

    def __init__(self, device: DeviceConfig, physics: HallPhysics, base: int = 40000):
        self.base = base
        blocks, address = [], base + 2
        for model_id in self.MODELS:
            model = sunspec.load_model(model_id)
            if model is None:
                raise ValueError(f"{device.id}: no SunSpec model {model_id} definition to serve")
            blocks.append(sunspec.ModelBlock(model_id, address + 2, model.length, sunspec.point_prefix(model_id, 1)))
            address += 2 + model.length
        regmap = sunspec.build_register_map(blocks, Nature.PV, name=f"sim-{device.id}", skip_models=())
        super().__init__(device, regmap, physics)
        # The image also holds 'SunS', the model headers and the end marker.
        self.blocks = {Function.HOLDING: (base, [0] * (address + 2 - base))}
        site = physics.site
        self.rated_w = device.rated_w or site.pv.capacity_w or 1.0
        # A commissioned inverter's lifetime counter is never 0 (0 means "not
        # accumulated" in SunSpec): start at about a year of yield.
        self.lifetime_offset_wh = round(site.pv.capacity_w * 1000.0)
        self._power_sf = 0 if self.rated_w < 32000 else 1

    def model_values(self, state: HallState, faults: RegisterFaults) -> list[tuple[int, dict[str, Any]]]:
        """(model id, {point: value}) for models 1, 103 and 120 from ``state``."""
        pv = state.pv_power_w
        running = pv > 0
        island_ok = not state.grid_available and state.fault_code == 0
        volts = state.voltage_v if state.grid_available else (101.0 if island_ok else 0.0)
        hz = state.frequency_hz if state.grid_available else (60.0 if island_ok else 0.0)
        if not running:
            st = 2  # sleeping (night, or no grid to follow)
        elif pv < state.pv_available_w - 1.0:
            st = 5  # throttled: curtailed in island operation
        else:
            st = 4  # MPPT
        common = {"Mn": "shelter-ems", "Md": "hall-sim-pv", "Opt": "simulated", "Vr": "0.1",
                  "SN": f"{self.physics.site.id}-{self.device.id}", "DA": self.device.transport.unit}
        inverter: dict[str, Any] = {
            "A": pv / volts / 2 if volts > 0 else 0.0, "A_SF": -2,
            "PhVphA": volts, "PhVphB": volts, "PPVphAB": 2 * volts, "V_SF": -1,
            "W": pv, "W_SF": self._power_sf, "Hz": hz, "Hz_SF": -2,
            "WH": self.lifetime_offset_wh + round(state.pv_energy_wh), "WH_SF": 0,
            "St": st, "Evt1": 0,
        }
        nameplate = {"DERTyp": 4, "WRtg": self.rated_w, "WRtg_SF": self._power_sf,
                     "VARtg": self.rated_w, "VARtg_SF": self._power_sf}
        models = {1: common, 103: inverter, 120: nameplate}
        if Nature.PV in faults.sentinels:
            inverter = {k: None for k in inverter}
            nameplate = {k: None for k in nameplate}
            models.update({103: inverter, 120: nameplate})
        for name, value in faults.garbage.get(Nature.PV, {}).items():
            self._garbage_into(models, name, value)
        return [(mid, models[mid]) for mid in self.MODELS]

    @staticmethod
    def _garbage_into(models: Mapping[int, dict[str, Any]], name: str, value: Any) -> None:
        """Put garbage ``value`` into the model holding point ``name`` (``W`` or ``m103.W``)."""
        point = name.split(".", 1)[-1]
        for mid in (103, 120, 1):
            model = sunspec.load_model(mid)
            if model is not None and any(p.name == point for p in model.points):
                p = model.point(point)
                models[mid][point] = value
                if p.scale_factor:
                    models[mid].pop(p.scale_factor, None)  # let build_image pick one that fits
                return

    def _render(self, state: HallState, faults: RegisterFaults) -> None:
        try:
            image = sunspec.build_image(self.model_values(state, faults), base=self.base)
        except ValueError as exc:
            if "image" not in self._warned:
                self._warned.add("image")
                log.warning("%s: cannot build the SunSpec image: %s", self.device.id, exc)
            return
        start, regs = self.blocks[Function.HOLDING]
        for address, word in image.items():
            regs[address - start] = word


def build_unit_image(device: DeviceConfig, regmap: RegisterMap | None, physics: HallPhysics) -> UnitImage:
    """The image for ``device``: its register map, or a SunSpec PV inverter for ``map: sunspec``.

    Raises ValueError naming the device for what the simulator cannot serve
    (a SunSpec battery or meter).
    """
    if device.map == SUNSPEC:
        if device.nature != Nature.PV:
            raise ValueError(f"device {device.id}: the simulator serves SunSpec only for PV, "
                             f"not for a {device.nature.value}; use a register map file")
        return SunSpecPVImage(device, physics)
    if regmap is None:
        raise ValueError(f"device {device.id}: no register map")
    if regmap.nature != device.nature:
        raise ValueError(f"device {device.id}: map {regmap.name} is for a {regmap.nature.value}, "
                         f"the device is a {device.nature.value}")
    return UnitImage(device, regmap, physics)
