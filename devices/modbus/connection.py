"""One Modbus connection per endpoint (TCP host:port or serial line), shared by its units.

Several devices often sit behind one endpoint (a gateway, an RS-485 bus, the
hall simulator's port with units 1-3).  They share a
:class:`ModbusConnection`, whose lock keeps their requests from
interleaving.  The connection opens on demand; a request that times out or
loses the connection is retried once on a FRESH connection (close +
reconnect), because a late answer to the abandoned request could otherwise
be taken for the answer to the next one.  Every failure leaves as
:class:`devices.errors.DeviceError`.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Callable, Sequence

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from devices.errors import DeviceError
from devices.registermap import Function

log = logging.getLogger(__name__)

#: Timeout [s] handed to pymodbus itself.  The real per-request timeout is
#: enforced here with asyncio.wait_for (devices sharing a connection may have
#: different timeouts), so pymodbus' own must never fire first.
_LIBRARY_TIMEOUT_S = 60.0

#: Modbus exception codes, for messages a technician understands.
EXCEPTION_CODES = {
    1: "illegal function",
    2: "illegal data address",
    3: "illegal data value",
    4: "server device failure",
    5: "acknowledge",
    6: "server device busy",
    8: "memory parity error",
    10: "gateway path unavailable",
    11: "gateway target device failed to respond",
}


def quiet_library_logs(level: int = logging.ERROR) -> None:
    """Raise pymodbus' log threshold (call once at application start).

    pymodbus logs every failed connect itself; the pollers already log a dead
    device on its first failure and on recovery, so the library's per-attempt
    warnings are noise in an unattended gateway's log.
    """
    logging.getLogger("pymodbus").setLevel(level)
    logging.getLogger("pymodbus.logging").setLevel(level)


class _ExceptionAnswer(Exception):
    """The device answered with a Modbus exception code (a real answer: not retried)."""

    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


@dataclass
class ConnectionStats:
    """Counters of one connection: requests sent, failures, fresh connections opened."""

    requests: int = 0
    failures: int = 0
    connects: int = 0


#: Makes a fresh pymodbus client; gets the connection's current default timeout [s].
ClientFactory = Callable[[float], AsyncModbusTcpClient | AsyncModbusSerialClient]


class ModbusConnection:
    """An async Modbus client for one endpoint, shared by all units behind it.

    ``timeout_s`` [s] is the default per-request timeout (connect and each
    request); callers may pass their own per call.
    """

    def __init__(self, name: str, factory: ClientFactory, timeout_s: float = 1.0):
        self.name = name
        self.timeout_s = timeout_s
        self.stats = ConnectionStats()
        self._factory = factory
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._lock = asyncio.Lock()

    # -- construction ------------------------------------------------------

    @classmethod
    def tcp(cls, host: str, port: int, timeout_s: float = 1.0) -> "ModbusConnection":
        """A Modbus TCP endpoint."""

        def factory(_timeout_s: float) -> AsyncModbusTcpClient:
            # retries=0 and reconnect_delay=0: retrying and reconnecting are
            # decided here, once, not also inside pymodbus.
            return AsyncModbusTcpClient(
                host, port=port, timeout=_LIBRARY_TIMEOUT_S, retries=0, reconnect_delay=0, name=f"{host}:{port}"
            )

        return cls(f"tcp://{host}:{port}", factory, timeout_s)

    @classmethod
    def rtu(
        cls,
        device: str,
        baudrate: int = 9600,
        parity: str = "N",
        stopbits: int = 1,
        bytesize: int = 8,
        timeout_s: float = 1.0,
    ) -> "ModbusConnection":
        """A Modbus RTU serial line (RS-485); ``device`` may also be a pyserial URL such as ``socket://host:port``."""

        def factory(timeout_s: float) -> AsyncModbusSerialClient:
            # pymodbus' serial transport uses its timeout for frame reception
            # too, so it gets the real one here rather than a large bound.
            return AsyncModbusSerialClient(
                device,
                baudrate=baudrate,
                parity=parity,
                stopbits=stopbits,
                bytesize=bytesize,
                timeout=timeout_s,
                retries=0,
                reconnect_delay=0,
                name=device,
            )

        return cls(f"rtu://{device}", factory, timeout_s)

    # -- public API --------------------------------------------------------

    @property
    def connected(self) -> bool:
        """True while a client connection is open."""
        return self._client is not None and self._client.connected

    async def read(
        self,
        function: Function,
        address: int,
        count: int,
        unit: int,
        *,
        device_id: str,
        what: str = "",
        timeout_s: float | None = None,
    ) -> list[int]:
        """Read ``count`` registers from ``address`` of ``unit`` (FC3 holding / FC4 input).

        ``what`` names the points for error messages.  Raises
        :class:`DeviceError` (timeout, connection, exception_response).
        """
        fc = "holding" if function == Function.HOLDING else "input"
        desc = f"unit {unit} read {fc} {address}+{count}" + (f" ({what})" if what else "")

        async def op(client):
            if function == Function.HOLDING:
                rr = await client.read_holding_registers(address, count=count, device_id=unit)
            else:
                rr = await client.read_input_registers(address, count=count, device_id=unit)
            self._check(rr)
            regs = list(rr.registers)
            if len(regs) < count:
                raise ModbusIOException(f"short answer: {len(regs)} of {count} registers")
            return regs[:count]

        return await self._run(op, device_id, desc, timeout_s)

    async def write(
        self,
        address: int,
        values: Sequence[int],
        unit: int,
        *,
        device_id: str,
        what: str = "",
        timeout_s: float | None = None,
    ) -> None:
        """Write holding registers: FC6 for one register, FC16 for several.

        Raises :class:`DeviceError` (timeout, connection, exception_response).
        """
        values = [int(v) & 0xFFFF for v in values]
        desc = f"unit {unit} write {address}+{len(values)}" + (f" ({what})" if what else "")

        async def op(client):
            if len(values) == 1:
                rr = await client.write_register(address, values[0], device_id=unit)
            else:
                rr = await client.write_registers(address, values, device_id=unit)
            self._check(rr)

        await self._run(op, device_id, desc, timeout_s)

    async def close(self) -> None:
        """Close the connection (the next request opens a fresh one)."""
        async with self._lock:
            self._drop()

    # -- internals -----------------------------------------------------------

    @staticmethod
    def _check(rr) -> None:
        if rr is None:
            raise ModbusIOException("no response")
        if rr.isError():
            raise _ExceptionAnswer(int(getattr(rr, "exception_code", 0) or 0))

    def _drop(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # closing a broken transport must not mask the real error
                log.debug("%s: error while closing", self.name, exc_info=True)
            self._client = None

    async def _ensure(self, timeout_s: float):
        if self._client is not None and self._client.connected:
            return self._client
        self._drop()
        client = self._factory(max(self.timeout_s, timeout_s))
        self.stats.connects += 1
        try:
            ok = await asyncio.wait_for(client.connect(), timeout_s)
        except (asyncio.TimeoutError, OSError) as exc:
            client.close()
            raise ConnectionException(f"cannot connect: {exc or 'timeout'}") from None
        if not ok:
            client.close()
            raise ConnectionException("cannot connect")
        self._client = client
        return client

    async def _run(self, op, device_id: str, desc: str, timeout_s: float | None):
        timeout = timeout_s or self.timeout_s
        async with self._lock:
            for attempt in (1, 2):
                self.stats.requests += 1
                try:
                    client = await self._ensure(timeout)
                    return await asyncio.wait_for(op(client), timeout)
                except asyncio.CancelledError:
                    # The caller gave up mid-request (e.g. the poller's deadline):
                    # its answer may still arrive, so this connection is spoilt.
                    self._drop()
                    raise
                except _ExceptionAnswer as exc:
                    self.stats.failures += 1
                    name = EXCEPTION_CODES.get(exc.code, "unknown")
                    raise DeviceError(
                        device_id, "exception_response", f"{desc}: Modbus exception {exc.code} ({name}) from {self.name}"
                    ) from None
                except (asyncio.TimeoutError, ModbusIOException) as exc:
                    self.stats.failures += 1
                    kind, why = "timeout", f"no answer within {timeout:g} s ({exc.__class__.__name__})"
                except (ConnectionException, OSError) as exc:
                    self.stats.failures += 1
                    kind, why = "connection", str(exc) or exc.__class__.__name__
                except ModbusException as exc:  # protocol-level garbage: treat like a broken link
                    self.stats.failures += 1
                    kind, why = "connection", f"protocol error: {exc}"
                # A fresh connection for the retry: a late answer on the old one
                # must never be mistaken for the answer to the next request.
                self._drop()
                if attempt == 1:
                    log.debug("%s: %s failed (%s), retrying on a fresh connection", self.name, desc, why)
            raise DeviceError(device_id, kind, f"{desc} at {self.name}: {why} (after one retry on a fresh connection)")
