"""A simulated hall's battery, PV and meter as ECHONET Lite objects of one node, from the same physics.

:class:`EchonetNode` listens on one UDP port (any port: several halls run on
one machine) and answers Get / SetC / SetI / INF_REQ for a node profile
0x0EF001 and the hall's objects: storage battery 0x027D, home solar power
generation 0x0279, low-voltage smart electric energy meter 0x0288 (instance
codes from the fleet file).  Values are taken from
:class:`~devices.simulator.physics.HallPhysics` at the time of the request
(stepped first); answers go to the sender's address.

Control follows the AIF specification: the battery takes the charging /
discharging power settings 0xEB / 0xEC [W] (within 0xC8 / 0xC9) and the
operation mode 0xDA (0x42 charge, 0x43 discharge, 0x44 standby, 0x46
automatic, which this simulated battery runs as standby); the physics
setpoint is -0xEB, +0xEC or 0.  Every accepted SetC counts as the
controller's sign of life for the physics watchdog (ECHONET Lite has no
heartbeat register), so a gateway that stops writing sees its battery revert
to idle as with Modbus.

Grid lost, the meter (reached over Wi-SUN route B in a real hall, and
without power) answers its measured values with Get_SNA.  ``refused`` (a set
of (class, EPC)) makes the node refuse properties it lists, and ``drop``
makes it ignore that many requests (lost UDP), for tests.  The physics'
register faults apply as on Modbus: ``frozen`` serves the values of the
moment it froze, ``sentinels`` "no data" (0xFF.., signed 0x80..),
``refused_writes`` answers every SetC with SetC_SNA, ``ignored_setpoints``
takes and reads back settings without following them (``garbage`` names
Modbus map points and does not apply here).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Callable

from devices.echonet import properties as P
from devices.echonet.frame import (
    EOJ,
    GET,
    GET_RES,
    GET_SNA,
    HOME_SOLAR,
    INF,
    INF_REQ,
    INF_SNA,
    NODE_PROFILE,
    SET_RES,
    SETC,
    SETC_SNA,
    SETI,
    SETI_SNA,
    SMART_METER,
    STORAGE_BATTERY,
    Frame,
    FrameError,
    build_frame,
    encode_property_map,
    parse,
)
from devices.readings import BatteryState, Nature
from devices.simulator.physics import HallPhysics, HallState

log = logging.getLogger(__name__)

CLASS_OF = {Nature.BATTERY: STORAGE_BATTERY, Nature.PV: HOME_SOLAR, Nature.METER: SMART_METER}
MANUFACTURER = bytes([0xFF, 0xFF, 0xFF])  # "not specified": this is a simulator, not a product
_WORKING = {BatteryState.CHARGING: P.MODE_CHARGE, BatteryState.DISCHARGING: P.MODE_DISCHARGE,
            BatteryState.IDLE: P.MODE_STANDBY, BatteryState.FAULT: 0x40, BatteryState.OFF: P.MODE_STANDBY}
NATURE_OF = {cls: nature for nature, cls in CLASS_OF.items()}
#: Signed properties: their "no data" value is 0x80.. rather than 0xFF.. .
SIGNED = {(STORAGE_BATTERY, 0xD3), (SMART_METER, 0xE7)}
#: Properties that stay true under the sentinel fault (the object's identity and maps).
_IDENTITY = {0x80, 0x82, 0x8A, 0x9D, 0x9E, 0x9F}
#: The meter serves its cumulative energy in 0.01 kWh (unit 0xE1 = 0x02), coefficient 1.
METER_UNIT_CODE, METER_WH_PER_COUNT = 0x02, 10.0


@dataclass
class _Object:
    """One ECHONET object of the node: its code, maps and how each property is read (and set)."""

    eoj: EOJ
    getters: dict[int, Callable[[HallState], bytes]]
    setters: dict[int, Callable[[bytes], bool]] = field(default_factory=dict)
    inf: frozenset[int] = frozenset({0x80})

    def maps(self) -> dict[int, bytes]:
        get = set(self.getters) | {0x9D, 0x9E, 0x9F}
        return {0x9D: encode_property_map(self.inf), 0x9E: encode_property_map(set(self.setters)),
                0x9F: encode_property_map(get)}


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, node: "EchonetNode"):
        self.node = node

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        for answer in self.node.handle(data):
            self.transport.sendto(answer, addr)


class EchonetNode:
    """One hall's ECHONET Lite node on ``host:port`` (see the module docstring).

    ``objects``: (nature, instance code) pairs to serve; ``physics``: the hall.
    """

    def __init__(self, physics: HallPhysics, objects: list[tuple[Nature, int]], host: str = "127.0.0.1",
                 port: int = 3610, *, name: str = ""):
        self.physics = physics
        self.host, self.port, self.name = host, port, name or physics.site.id
        self.refused: set[tuple[tuple[int, int], int]] = set()
        self.drop = 0
        self.requests = 0
        b = physics.site.battery
        self._mode = P.MODE_STANDBY
        self._charge_w = 0
        self._discharge_w = 0
        self._objects: dict[EOJ, _Object] = {}
        for nature, instance in objects:
            eoj = (*CLASS_OF[nature], instance)
            if eoj in self._objects:
                raise ValueError(f"{self.name}: object {eoj} configured twice")
            self._objects[eoj] = getattr(self, f"_{nature.value}_object")(eoj)
        instances = list(self._objects)
        self._objects[NODE_PROFILE] = _Object(NODE_PROFILE, {
            0x80: lambda s: bytes([P.ON]), 0x82: lambda s: bytes([0x01, 0x0D, 0x01, 0x00]),
            0x83: lambda s: bytes([0xFE]) + MANUFACTURER + self.name.encode()[:13].ljust(13, b"\0"),
            0x8A: lambda s: MANUFACTURER,
            0xD3: lambda s: len(instances).to_bytes(3, "big"),
            0xD6: lambda s: bytes([len(instances)]) + b"".join(bytes(e) for e in instances),
            0xD7: lambda s: bytes([len({e[:2] for e in instances})]) + b"".join(bytes(c) for c in
                                                                                 sorted({e[:2] for e in instances})),
        }, inf=frozenset({0x80, 0xD5}))
        self._soc_min = b.soc_min_pct
        self._frozen: dict[Nature, HallState] = {}
        self._transport: asyncio.DatagramTransport | None = None

    # ------------------------------------------------------------------ objects
    def _battery_object(self, eoj: EOJ) -> _Object:
        ph = self.physics
        return _Object(eoj, {
            0x80: lambda s: bytes([P.ON]),
            0x82: lambda s: bytes([0x00, 0x00, ord("M"), 0x00]),
            0x88: lambda s: bytes([P.FAULT if s.fault_code else P.NO_FAULT]),
            0x8A: lambda s: MANUFACTURER,
            0xA7: lambda s: P.u(round(self._soc_min), 1),
            0xC8: lambda s: P.u(ph.max_charge_limit_w, 4) + P.u(0, 4),
            0xC9: lambda s: P.u(ph.max_discharge_limit_w, 4) + P.u(0, 4),
            0xCF: lambda s: bytes([_WORKING.get(s.battery_state, 0x40)]),
            0xD0: lambda s: P.u(s.capacity_wh, 4),
            0xD3: lambda s: P.s(round(-s.battery_power_w), 4),  # ECHONET: + = charging
            0xDA: lambda s: bytes([self._mode]),
            0xDB: lambda s: bytes([0x00 if s.grid_available else 0x01]),
            0xE2: lambda s: P.u(round(s.stored_wh), 4),
            0xE4: lambda s: P.u(round(s.soc_pct), 1),
            0xE5: lambda s: P.u(round(s.soh_pct), 1),
            0xEB: lambda s: P.u(self._charge_w, 4),
            0xEC: lambda s: P.u(self._discharge_w, 4),
        }, {0xDA: self._set_mode, 0xEB: self._set_charge_w, 0xEC: self._set_discharge_w},
            inf=frozenset({0x80, 0x88, 0xCF, 0xDA}))

    def _pv_object(self, eoj: EOJ) -> _Object:
        rated = self.physics.site.pv.capacity_w
        return _Object(eoj, {
            0x80: lambda s: bytes([P.ON]), 0x82: lambda s: bytes([0x00, 0x00, ord("M"), 0x00]),
            0x88: lambda s: bytes([P.NO_FAULT]), 0x8A: lambda s: MANUFACTURER,
            0xE0: lambda s: P.u(round(s.pv_power_w), 2),
            0xE1: lambda s: P.u(round(s.pv_energy_wh), 4),  # 0.001 kWh = 1 Wh
            0xE8: lambda s: P.u(rated, 2),
        })

    def _meter_object(self, eoj: EOJ) -> _Object:
        def measured(fn: Callable[[HallState], bytes]) -> Callable[[HallState], bytes]:
            return lambda s: fn(s) if s.grid_available else b""  # b"": refused (Get_SNA)
        return _Object(eoj, {
            0x80: lambda s: bytes([P.ON]), 0x82: lambda s: bytes([0x00, 0x00, ord("M"), 0x00]),
            0x88: lambda s: bytes([P.NO_FAULT]), 0x8A: lambda s: MANUFACTURER,
            0xD3: lambda s: P.u(1, 4), 0xD7: lambda s: bytes([8]), 0xE1: lambda s: bytes([METER_UNIT_CODE]),
            0xE0: measured(lambda s: P.u(int(s.import_wh // METER_WH_PER_COUNT) % 100_000_000, 4)),
            0xE3: measured(lambda s: P.u(int(s.export_wh // METER_WH_PER_COUNT) % 100_000_000, 4)),
            0xE7: measured(lambda s: P.s(round(s.grid_power_w), 4)),
        })

    # ----------------------------------------------------------------- control
    def _apply(self) -> None:
        setpoint = {P.MODE_CHARGE: -self._charge_w, P.MODE_DISCHARGE: self._discharge_w}.get(self._mode, 0)
        ph = self.physics
        if not ph.register_faults.ignored_setpoints:
            ph.set_setpoint(float(setpoint))
        ph.kick_heartbeat((ph.state.heartbeat + 1) % 0x10000)  # the controller is alive

    def _set_mode(self, edt: bytes) -> bool:
        if len(edt) != 1 or edt[0] not in (P.MODE_CHARGE, P.MODE_DISCHARGE, P.MODE_STANDBY, P.MODE_AUTO):
            return False
        self._mode = edt[0]
        return True

    def _set_charge_w(self, edt: bytes) -> bool:
        if len(edt) != 4 or int.from_bytes(edt, "big") > self.physics.max_charge_limit_w:
            return False
        self._charge_w = int.from_bytes(edt, "big")
        return True

    def _set_discharge_w(self, edt: bytes) -> bool:
        if len(edt) != 4 or int.from_bytes(edt, "big") > self.physics.max_discharge_limit_w:
            return False
        self._discharge_w = int.from_bytes(edt, "big")
        return True

    # --------------------------------------------------------------- requests
    def handle(self, data: bytes) -> list[bytes]:
        """Answers (frames) to one datagram; none for a malformed one, a SetI that worked, or a dropped one."""
        try:
            req = parse(data)
        except FrameError as exc:
            log.debug("%s: ECHONET Lite: ignoring a bad frame: %s", self.name, exc)
            return []
        if self.drop > 0:
            self.drop -= 1
            return []
        self.requests += 1
        targets = [o for eoj, o in self._objects.items()
                   if eoj[:2] == req.deoj[:2] and (req.deoj[2] == 0 or eoj[2] == req.deoj[2])]
        answers = []
        for obj in targets:
            try:
                answer = self._answer(obj, req)
            except Exception:  # a simulator bug answers like a broken device, it does not kill the node
                log.exception("%s: ECHONET Lite request to %s failed in the simulator", self.name, obj.eoj)
                answer = build_frame(req.tid, obj.eoj, req.seoj, req.esv - 0x10, [(e, b"") for e, _ in req.props])
            if answer is not None:
                answers.append(answer)
        return answers

    def _state_for(self, nature: Nature | None) -> HallState:
        """The physics state an object of ``nature`` shows: the current one, or the one it froze at."""
        state = self.physics.step()
        if nature is None or nature not in self.physics.register_faults.frozen:
            self._frozen.pop(nature, None)
            return state
        return self._frozen.setdefault(nature, state)

    def _answer(self, obj: _Object, req: Frame) -> bytes | None:
        nature = NATURE_OF.get(obj.eoj[:2])
        state = self._state_for(nature)
        faults = self.physics.register_faults
        refused_here = {epc for cls, epc in self.refused if cls == obj.eoj[:2]}
        if req.esv in (GET, INF_REQ):
            maps = obj.maps()
            out, ok = [], True
            for epc, _ in req.props:
                getter = obj.getters.get(epc)
                value = maps.get(epc) if epc in maps else getter(state) if getter else b""
                if epc in refused_here or not value:
                    value, ok = b"", False
                elif nature in faults.sentinels and epc not in _IDENTITY:
                    signed = (obj.eoj[:2], epc) in SIGNED
                    value = b"\x80" + bytes(len(value) - 1) if signed else b"\xff" * len(value)
                out.append((epc, value))
            esv = (GET_RES if req.esv == GET else INF) if ok else (GET_SNA if req.esv == GET else INF_SNA)
            return build_frame(req.tid, obj.eoj, req.seoj, esv, out)
        if req.esv in (SETC, SETI):
            out, ok, changed = [], True, False
            for epc, edt in req.props:
                setter = obj.setters.get(epc)
                if setter is not None and epc not in refused_here and nature not in faults.refused_writes \
                        and setter(edt):
                    out.append((epc, b""))
                    changed = True
                else:
                    out.append((epc, edt))
                    ok = False
            if changed and obj.eoj[:2] == STORAGE_BATTERY:
                self._apply()
            if req.esv == SETI:
                return None if ok else build_frame(req.tid, obj.eoj, req.seoj, SETI_SNA, out)
            return build_frame(req.tid, obj.eoj, req.seoj, SET_RES if ok else SETC_SNA, out)
        return None  # answers and notifications addressed to us need no answer

    # ---------------------------------------------------------------- serving
    async def start(self) -> None:
        """Listen on host:port (UDP); OSError if it is taken."""
        if self._transport is not None:
            return
        loop = asyncio.get_running_loop()
        self._transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self),
                                                                 local_addr=(self.host, self.port))
        self.port = self._transport.get_extra_info("sockname")[1]
        log.info("%s: ECHONET Lite node on %s:%d (%s)", self.name, self.host, self.port,
                 ", ".join(f"0x{e[0]:02X}{e[1]:02X}{e[2]:02X}" for e in self._objects))

    async def stop(self) -> None:
        """Stop listening; safe to call twice."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()
