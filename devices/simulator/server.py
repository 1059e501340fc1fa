"""Serve simulated halls over Modbus TCP (pymodbus 3.16) and ECHONET Lite on loopback.

A hall's ``echonet_lite`` devices are served by one
:class:`~devices.simulator.echonet_node.EchonetNode` per configured UDP port
(moved by the same offset as the hall's Modbus port), from the same physics;
a hall whose devices are all ECHONET Lite runs no Modbus server.

One :class:`HallSimulator` serves one hall on one TCP port: one Modbus unit
per Modbus TCP device in the site's ``devices:`` list, at that device's
``transport.unit`` and with that device's register map (the same maps the
client uses); in the example fleet unit 1 = battery (generic_battery),
unit 2 = meter (sdm630, input registers), unit 3 = PV inverter (SunSpec
models 1, 103, 120 at 40000).

A periodic task steps the physics every ``tick_s`` wall seconds.  Register
images are re-encoded from the physics lazily, when a request arrives and the
physics moved since the last encoding, so an idle simulator costs little.
Writes reach the physics at once.

The datastore uses pymodbus' ``SimDevice`` with an ``action`` hook (the
``ModbusServerContext``/``ModbusDeviceContext`` pair is deprecated in 3.16
and only wraps ``SimDevice``): the hook copies our image into the served
block before every request and vets every write.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from pathlib import Path

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from devices.config import SUNSPEC, EchonetLiteTransport, ModbusTcpTransport
from devices.registermap import Function, load_register_map
from devices.simulator.clock import SimClock
from devices.simulator.physics import HallPhysics
from devices.simulator.registers import UnitImage, build_unit_image, table_of
from devices.simulator.hallspec import FleetSpec, HallSpec

log = logging.getLogger(__name__)

DEFAULT_HOST = "127.0.0.1"
DEFAULT_TICK_S = 0.1


_NO_MODBUS = object()  # "running" marker of a hall whose devices are all ECHONET Lite


class SimulatorError(RuntimeError):
    """A simulated hall cannot be served (port in use, no port, unservable device)."""


def _sim_device(unit: int, image: UnitImage) -> SimDevice:
    """A pymodbus SimDevice whose blocks mirror ``image`` and whose action keeps them in sync."""
    tables: dict[Function, list[SimData]] = {}
    for table in Function:
        block = image.blocks.get(table)
        if block is None:
            tables[table] = [SimData(0, datatype=DataType.INVALID)]  # every address illegal
        else:
            start, regs = block
            tables[table] = [SimData(start, values=list(regs), datatype=DataType.REGISTERS)]
    no_bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]

    async def action(function_code: int, start_address: int, address: int, count: int,
                     registers: list[int], set_values: list[int] | list[bool] | None) -> ExcCodes | None:
        table = table_of(function_code)
        if table is None or table not in image.blocks:
            return None
        try:
            image.refresh()
            if set_values is not None:
                refused = image.write(table, address, [int(v) for v in set_values])
                if refused is not None:
                    return refused
        except Exception:  # a simulator bug answers like a broken device, it does not kill the server
            log.exception("unit %d: request fc %d at %d failed in the simulator", unit, function_code, address)
            return ExcCodes.DEVICE_FAILURE
        _start, regs = image.blocks[table]
        registers[: len(regs)] = regs
        return None

    return SimDevice(
        id=unit,
        simdata=(no_bits, list(no_bits), tables[Function.HOLDING], tables[Function.INPUT]),
        action=action,
    )


class HallSimulator:
    """One simulated hall served on ``host:port`` (default: the site's ``simulator.port``).

    ``physics`` is the :class:`HallPhysics` (outages, faults, setpoints can be
    injected there at any time; pass one to choose its options); ``tick_s``
    [s, wall time] is the physics step period; ``maps_dir`` the folder of
    register maps (default: the shipped ``config/devicemaps``).
    ``start()``/``stop()`` may be repeated: the physics keeps its state in
    between and the port is reusable at once.  Raises
    :class:`SimulatorError` for a site it cannot serve.
    """

    def __init__(self, site: HallSpec, clock: SimClock, host: str = DEFAULT_HOST, port: int | None = None,
                 *, maps_dir: Path | None = None, tick_s: float = DEFAULT_TICK_S,
                 physics: HallPhysics | None = None):
        if port is None:
            if site.simulator is None:
                raise SimulatorError(f"site {site.id}: no 'simulator:' section and no port given")
            port = site.simulator.port
        if not tick_s > 0:
            raise ValueError(f"tick_s must be > 0, got {tick_s}")
        self.site = site
        self.clock = clock
        self.host = host
        self.port = port
        self.tick_s = tick_s
        self.physics = physics or HallPhysics(site, clock)
        self.units: dict[int, UnitImage] = {}
        # ECHONET Lite devices: one node per configured (host, port), moved by the same offset as the hall.
        offset = port - site.simulator.port if site.simulator is not None else 0
        echonet: dict[int, list] = {}
        for dev in site.devices:
            t = dev.transport
            if isinstance(t, EchonetLiteTransport):
                echonet.setdefault(t.port + offset, []).append((dev.nature, t.instance))
                continue
            if not isinstance(t, ModbusTcpTransport):
                log.info("%s: device %s is not Modbus TCP (%s): not simulated", site.id, dev.id, t.kind)
                continue
            regmap = None if dev.map == SUNSPEC else load_register_map(dev.map, maps_dir)
            try:
                self.units[t.unit] = build_unit_image(dev, regmap, self.physics)
            except ValueError as exc:
                raise SimulatorError(f"site {site.id}: {exc}") from None
        from devices.simulator.echonet_node import EchonetNode

        try:
            self.echonet_nodes = [EchonetNode(self.physics, objs, host, p, name=site.id) for p, objs in echonet.items()]
        except ValueError as exc:
            raise SimulatorError(f"site {site.id}: {exc}") from None
        if not self.units and not self.echonet_nodes:
            raise SimulatorError(f"site {site.id}: no Modbus TCP or ECHONET Lite device to simulate")
        self._server: ModbusTcpServer | None = None
        self._ticker: asyncio.Task | None = None

    @property
    def running(self) -> bool:
        """True between a successful ``start()`` and ``stop()``."""
        return self._server is not None

    async def start(self) -> None:
        """Listen on host:port and start stepping the physics; SimulatorError if the port is taken."""
        if self._server is not None:
            return
        for node in self.echonet_nodes:
            try:
                await node.start()
            except OSError as exc:
                for started in self.echonet_nodes:
                    await started.stop()
                raise SimulatorError(f"site {self.site.id}: cannot listen on UDP {node.host}:{node.port} "
                                     f"(ECHONET Lite): {exc}") from None
        server = None
        if self.units:
            devices = [_sim_device(unit, image) for unit, image in sorted(self.units.items())]
            server = ModbusTcpServer(devices, address=(self.host, self.port))
            try:
                await server.serve_forever(background=True)
            except (RuntimeError, OSError) as exc:
                with contextlib.suppress(Exception):
                    await server.shutdown()
                for node in self.echonet_nodes:
                    await node.stop()
                raise SimulatorError(f"site {self.site.id}: cannot listen on {self.host}:{self.port}: {exc}") from None
        self._server = server or _NO_MODBUS
        self.physics.step()
        self._ticker = asyncio.create_task(self._tick(), name=f"sim-{self.site.id}")
        log.info("%s: simulator listening on %s:%d (units %s)", self.site.id, self.host, self.port,
                 ", ".join(str(u) for u in sorted(self.units)))

    async def stop(self) -> None:
        """Stop listening, drop client connections and stop stepping; safe to call twice."""
        ticker, self._ticker = self._ticker, None
        if ticker is not None:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
        server, self._server = self._server, None
        for node in self.echonet_nodes:
            await node.stop()
        if server is not None:
            if server is not _NO_MODBUS:
                await server.shutdown()
            log.info("%s: simulator on %s:%d stopped", self.site.id, self.host, self.port)

    async def _tick(self) -> None:
        while True:
            try:
                self.physics.step()
            except Exception:  # a bug in the physics must not silently stop the hall
                log.exception("%s: physics step failed", self.site.id)
            await asyncio.sleep(self.tick_s)

    async def __aenter__(self) -> "HallSimulator":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()


class FleetSimulator:
    """Every site of a fleet that has a ``simulator:`` section, each on its ``simulator.port`` + ``port_offset``.

    ``halls`` maps site id → :class:`HallSimulator`; all share ``clock``.
    """

    def __init__(self, fleet_config: FleetSpec, clock: SimClock, port_offset: int = 0, *,
                 host: str = DEFAULT_HOST, maps_dir: Path | None = None, tick_s: float = DEFAULT_TICK_S):
        self.clock = clock
        self.halls: dict[str, HallSimulator] = {
            site.id: HallSimulator(site, clock, host, site.simulator.port + port_offset,
                                   maps_dir=maps_dir, tick_s=tick_s)
            for site in fleet_config.sites
            if site.simulator is not None
        }

    def hall(self, site_id: str) -> HallSimulator:
        """The simulator of ``site_id``; KeyError naming the simulated sites."""
        try:
            return self.halls[site_id]
        except KeyError:
            raise KeyError(f"no simulated site {site_id!r} (simulated: {', '.join(self.halls)})") from None

    async def start(self) -> None:
        """Start every hall; if one cannot start, stop the ones already started and raise."""
        started: list[HallSimulator] = []
        try:
            for hall in self.halls.values():
                await hall.start()
                started.append(hall)
        except BaseException:
            for hall in started:
                await hall.stop()
            raise

    async def stop(self) -> None:
        """Stop every hall."""
        for hall in self.halls.values():
            await hall.stop()

    async def __aenter__(self) -> "FleetSimulator":
        await self.start()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.stop()
