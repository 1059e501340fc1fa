"""Real servers on loopback for the device-layer tests.

* :class:`FakeModbusServer` - a pymodbus TCP (or RTU-over-TCP) server in
  this process with plain register tables per unit, a request log, and
  knobs: ignore writes, answer with an exception.
* :class:`SilentServer` - accepts TCP connections and never answers.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from devices import codec
from devices.registermap import Function, RegisterMap
from tests.netutil import free_port

HOST = "127.0.0.1"


@dataclass
class UnitTables:
    """Register tables of one unit: {address: value} for holding and input registers."""

    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    ignore_writes: bool = False
    fail_with: ExcCodes | None = None  # answer every request with this exception
    strict: bool = False  # holes between given addresses answer "illegal data address"


@dataclass(frozen=True)
class Request:
    """One request the server received."""

    unit: int
    function_code: int
    address: int
    count: int


class FakeModbusServer:
    """A pymodbus server on 127.0.0.1 serving :class:`UnitTables`.

    Only addresses present in a table are valid (others answer "illegal
    data address"), except that each table is served as one block from its
    lowest to its highest address, holes filled with 0.
    """

    def __init__(self, units: dict[int, UnitTables], port: int | None = None, rtu: bool = False):
        self.units = units
        self.port = port or free_port()
        self.rtu = rtu
        self.requests: list[Request] = []
        self._server = None
        self._live: dict[tuple[int, str], tuple[int, list[int]]] = {}

    # -- tables ------------------------------------------------------------

    def set(self, unit: int, address: int, values: list[int], function: Function = Function.HOLDING) -> None:
        """Change registers of a running (or not yet started) server."""
        table = self.units[unit].holding if function == Function.HOLDING else self.units[unit].input
        for i, v in enumerate(values):
            table[address + i] = v & 0xFFFF
        live = self._live.get((unit, "h" if function == Function.HOLDING else "i"))
        if live:
            start, regs = live
            for i, v in enumerate(values):
                regs[address + i - start] = v & 0xFFFF

    def get(self, unit: int, address: int, count: int = 1, function: Function = Function.HOLDING) -> list[int]:
        """Current registers (including what clients wrote)."""
        live = self._live.get((unit, "h" if function == Function.HOLDING else "i"))
        if live:
            start, regs = live
            return regs[address - start : address - start + count]
        table = self.units[unit].holding if function == Function.HOLDING else self.units[unit].input
        return [table[a] for a in range(address, address + count)]

    def count(self, unit: int | None = None, function_code: int | None = None) -> int:
        """Requests received, optionally only for one unit / function code."""
        return sum(
            1
            for r in self.requests
            if (unit is None or r.unit == unit) and (function_code is None or r.function_code == function_code)
        )

    # -- lifecycle -----------------------------------------------------------

    @staticmethod
    def _block(table: dict[int, int], strict: bool) -> list[SimData]:
        if not table:
            return [SimData(0, values=[0], datatype=DataType.REGISTERS)]
        if not strict:
            lo, hi = min(table), max(table)
            return [SimData(lo, values=[table.get(a, 0) for a in range(lo, hi + 1)], datatype=DataType.REGISTERS)]
        runs: list[list[int]] = []
        for a in sorted(table):
            if runs and a == runs[-1][-1] + 1:
                runs[-1].append(a)
            else:
                runs.append([a])
        return [SimData(r[0], values=[table[a] for a in r], datatype=DataType.REGISTERS) for r in runs]

    def _device(self, unit: int, tables: UnitTables) -> SimDevice:
        async def action(fc, start, address, count, registers, set_values):
            if tables.fail_with is not None:
                return tables.fail_with
            if set_values is not None and tables.ignore_writes:
                set_values[:] = registers[address - start : address - start + len(set_values)]
            return None

        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        return SimDevice(
            unit,
            simdata=(bits, list(bits), self._block(tables.holding, tables.strict), self._block(tables.input, tables.strict)),
            action=action,
        )

    def _trace(self, sending: bool, pdu):
        if not sending:
            self.requests.append(
                Request(pdu.dev_id, pdu.function_code, getattr(pdu, "address", 0), getattr(pdu, "count", 0))
            )
        return pdu

    async def start(self) -> "FakeModbusServer":
        devices = [self._device(u, t) for u, t in sorted(self.units.items())]
        if self.rtu:
            self._server = ModbusSerialServer(
                devices, framer=FramerType.RTU, port=f"socket://{HOST}:{self.port}", trace_pdu=self._trace
            )
        else:
            self._server = ModbusTcpServer(devices, address=(HOST, self.port), trace_pdu=self._trace)
        await self._server.serve_forever(background=True)
        # Keep handles on the live register lists, so tests can change values
        # while clients poll (what a real device does).
        for unit, runtime in self._server.context.devices.items():
            for key in ("h", "i"):
                start, _n, regs, _flags = runtime.block[key]
                self._live[(unit, key)] = (start, regs)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            await self._server.shutdown()
            self._server = None
            self._live.clear()

    async def __aenter__(self) -> "FakeModbusServer":
        return await self.start()

    async def __aexit__(self, *exc) -> None:
        await self.stop()


class SilentServer:
    """Accepts TCP connections on 127.0.0.1 and never sends a byte (a hung device)."""

    def __init__(self, port: int | None = None):
        self.port = port or free_port()
        self.connections = 0
        self._server: asyncio.AbstractServer | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.append(writer)
        try:
            while await reader.read(1024):
                pass
        except ConnectionError:
            pass

    async def __aenter__(self) -> "SilentServer":
        self._server = await asyncio.start_server(self._handle, HOST, self.port)
        return self

    async def __aexit__(self, *exc) -> None:
        for w in self._writers:
            w.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def tables_for(regmap: RegisterMap, values: dict[str, object], fill_gaps: bool = True) -> UnitTables:
    """Unit tables holding ``values`` (point name -> value, our units) encoded per ``regmap``.

    Scale-factor points take their value from ``values`` too.  With
    ``fill_gaps`` the registers between points exist (value 0).
    """
    tables = UnitTables()
    for p in regmap.points:
        table = tables.holding if p.function == Function.HOLDING else tables.input
        if fill_gaps:
            for a in range(p.address, p.address + p.word_count):
                table.setdefault(a, 0)
        if p.name in values:
            exponent = values.get(p.scale_factor) if p.scale_factor else None
            for i, w in enumerate(codec.encode(regmap, p, values[p.name], exponent)):
                table[p.address + i] = w
    if fill_gaps:
        for table in (tables.holding, tables.input):
            if table:
                for a in range(min(table), max(table) + 1):
                    table.setdefault(a, 0)
    return tables


async def wait_until(predicate, timeout_s: float = 10.0, step_s: float = 0.02) -> None:
    """Poll ``predicate()`` until true; AssertionError after ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {timeout_s} s")
        await asyncio.sleep(step_s)
