"""ECHONET Lite over UDP: one socket, requests matched to answers by TID and sender.

Why not pychonet's ``ECHONETAPIClient``/``UDPServer`` (framing *is* pychonet's,
see :mod:`devices.echonet.frame`): measured against pychonet 2.8.2 on
loopback, its client always sends to port 3610 (``(host, ENL_PORT)`` is fixed
in ``echonetMessage``), so a node on another port - several simulated halls
on one machine - cannot be reached; its state is keyed by IP address alone
(two nodes on 127.0.0.1 would share one state); it waits for an answer by
sleeping in 0.1 s steps (every request costs at least 100 ms, 0.5 s for the
shortest timeout it allows), and it answers a refusal (ESV 0x5x) with a bare
``False`` that does not say which property was refused.

:class:`EchonetSocket` binds one UDP socket (``local_port`` 3610 for real
devices, which answer to port 3610; 0 = any free port for the simulator,
which answers to the sender) and may be shared by every ECHONET device of a
gateway.  :meth:`EchonetSocket.request` sends one frame and waits for the
answer with the same TID from the addressed node; a lost datagram is retried
once, then it raises :class:`~devices.errors.DeviceError` ("timeout"), like
a Modbus read.  :func:`get_properties` and :func:`set_properties` turn a
refusal into a DeviceError that names the refused property.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import struct
from typing import Iterable

from devices.echonet.frame import (
    ESV_NAMES,
    GET,
    GET_RES,
    GET_SNA,
    SET_RES,
    SETC,
    SETC_SNA,
    Frame,
    FrameError,
    build_request,
    eoj_text,
    parse,
    EOJ,
    MULTICAST_ADDRESS,
)
from devices.echonet.properties import epc_name
from devices.errors import DeviceError

log = logging.getLogger(__name__)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, owner: "EchonetSocket"):
        self.owner = owner

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.owner._received(data, addr)

    def error_received(self, exc: Exception) -> None:  # ICMP port unreachable etc.: the request times out
        log.debug("ECHONET Lite socket error: %s", exc)


class EchonetSocket:
    """One UDP socket for ECHONET Lite requests (see the module docstring).

    ``local_host``/``local_port``: where to bind (port 0: any free port).
    ``retries``: how often a request whose answer did not come is re-sent.
    ``requests``/``timeouts``/``bad_frames`` count what happened.
    """

    def __init__(self, local_host: str = "0.0.0.0", local_port: int = 0, *, retries: int = 1):
        self.local_host, self.local_port, self.retries = local_host, local_port, retries
        self._transport: asyncio.DatagramTransport | None = None
        self._open_lock = asyncio.Lock()
        self._pending: dict[int, tuple[tuple[str, int] | None, asyncio.Future]] = {}
        self._collectors: dict[int, list[tuple[Frame, tuple]]] = {}
        self._next_tid = 0
        self.requests = self.timeouts = self.bad_frames = 0

    async def open(self) -> None:
        """Bind the socket (done by the first request; OSError if the port is taken)."""
        async with self._open_lock:
            if self._transport is not None:
                return
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                # No SO_REUSEADDR: on Linux two UDP sockets could then share port 3610 and one would
                # silently take the other's answers; a clear "address in use" is better.
                sock.bind((self.local_host, self.local_port))
            except OSError:
                sock.close()
                raise
            loop = asyncio.get_running_loop()
            self._transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), sock=sock)
            self.local_port = sock.getsockname()[1]

    def _tid(self) -> int:
        for _ in range(0x10000):
            self._next_tid = self._next_tid % 0xFFFF + 1  # 1..65535, skipping TIDs still waiting
            if self._next_tid not in self._pending and self._next_tid not in self._collectors:
                return self._next_tid
        raise RuntimeError("all 65535 ECHONET Lite TIDs are waiting for an answer")

    def _received(self, data: bytes, addr: tuple) -> None:
        try:
            frame = parse(data)
        except FrameError as exc:
            self.bad_frames += 1
            log.debug("ECHONET Lite: bad frame from %s:%d: %s", addr[0], addr[1], exc)
            return
        collector = self._collectors.get(frame.tid)
        if collector is not None:
            collector.append((frame, addr))
            return
        pending = self._pending.get(frame.tid)
        if pending is None:
            return  # an answer that came too late, or a notification nobody asked for
        expected, fut = pending
        # Real nodes answer from port 3610 whatever port we sent to; only the host must match then.
        if expected is not None and addr[0] != expected[0]:
            return
        if not fut.done():
            fut.set_result(frame)

    async def request(self, host: str, port: int, deoj: EOJ, esv: int, props: list[tuple[int, bytes]],
                      *, timeout_s: float, device_id: str) -> Frame:
        """Send one request to ``host:port`` and return the answer; DeviceError "timeout"/"connection"."""
        await self._ensure_open(device_id)
        attempts = 1 + max(0, self.retries)
        for attempt in range(attempts):
            tid = self._tid()
            fut: asyncio.Future = asyncio.get_running_loop().create_future()
            self._pending[tid] = ((host, port), fut)
            self.requests += 1
            try:
                self._transport.sendto(build_request(tid, deoj, esv, props), (host, port))
                return await asyncio.wait_for(fut, timeout_s)
            except asyncio.TimeoutError:
                self.timeouts += 1
                continue
            except OSError as exc:
                raise DeviceError(device_id, "connection", f"ECHONET Lite {host}:{port}: {exc}") from None
            finally:
                self._pending.pop(tid, None)
        raise DeviceError(device_id, "timeout",
                          f"ECHONET Lite {host}:{port} {eoj_text(deoj)}: no answer to {ESV_NAMES.get(esv, esv)} "
                          f"{_epcs(props)} within {timeout_s:g} s ({attempts} attempts)")

    async def collect(self, host: str, port: int, deoj: EOJ, esv: int, props: list[tuple[int, bytes]],
                      *, wait_s: float) -> list[tuple[Frame, tuple]]:
        """Send one request (e.g. to the multicast group) and gather every answer for ``wait_s`` [s]."""
        await self._ensure_open("discovery")
        tid = self._tid()
        answers: list[tuple[Frame, tuple]] = []
        self._collectors[tid] = answers
        try:
            if host == MULTICAST_ADDRESS:
                sock = self._transport.get_extra_info("socket")
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, struct.pack("b", 1))
                try:  # some nodes answer a multicast request to the group: listen there too
                    mreq = struct.pack("=4s4s", socket.inet_aton(MULTICAST_ADDRESS), socket.inet_aton("0.0.0.0"))
                    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
                except OSError as exc:  # already a member, or no multicast route: unicast answers still come
                    log.debug("ECHONET Lite: cannot join %s: %s", MULTICAST_ADDRESS, exc)
            self._transport.sendto(build_request(tid, deoj, esv, props), (host, port))
            await asyncio.sleep(wait_s)
        finally:
            self._collectors.pop(tid, None)
        return answers

    async def _ensure_open(self, device_id: str) -> None:
        if self._transport is None:
            try:
                await self.open()
            except OSError as exc:
                raise DeviceError(device_id, "connection",
                                  f"cannot bind the ECHONET Lite socket {self.local_host}:{self.local_port}: {exc}"
                                  ) from None

    async def close(self) -> None:
        """Close the socket; waiting requests time out."""
        transport, self._transport = self._transport, None
        if transport is not None:
            transport.close()


class RefusedError(DeviceError):
    """A Get_SNA / SetC_SNA: ``epcs`` were refused; ``values`` holds what the node did answer (Get)."""

    def __init__(self, device_id: str, message: str, epcs: list[int], values: dict[int, bytes] | None = None):
        super().__init__(device_id, "exception_response", message)
        self.epcs = epcs
        self.values = values or {}

    def __reduce__(self):
        return (type(self), (self.device_id, self.message, self.epcs, self.values))


class ShortAnswerError(DeviceError):
    """A Get_Res with fewer properties than asked (nodes that cap the OPC of a frame): ``values`` it did give."""

    def __init__(self, device_id: str, message: str, values: dict[int, bytes]):
        super().__init__(device_id, "decode", message)
        self.values = values

    def __reduce__(self):
        return (type(self), (self.device_id, self.message, self.values))


def _epcs(props: Iterable[tuple[int, bytes]] | Iterable[int]) -> str:
    codes = [p[0] if isinstance(p, tuple) else p for p in props]
    return ", ".join(f"0x{c:02X}" for c in codes)


def _refused_text(deoj: EOJ, refused: list[int], verb: str) -> str:
    names = ", ".join(f"0x{e:02X} ({epc_name(deoj, e)})" for e in refused)
    return f"{eoj_text(deoj)} refused to {verb} {names}"


async def get_properties(sock: EchonetSocket, host: str, port: int, deoj: EOJ, epcs: list[int], *,
                         timeout_s: float, device_id: str) -> dict[int, bytes]:
    """Get ``epcs`` in one request: {epc: edt}.

    A Get_SNA (0x52) raises :class:`RefusedError` ("exception_response")
    naming every property the node answered without data, with the values
    it did give; an answer from another object or with another ESV raises
    "decode".
    """
    frame = await sock.request(host, port, deoj, GET, [(e, b"") for e in epcs], timeout_s=timeout_s,
                               device_id=device_id)
    _check_answer(frame, deoj, (GET_RES, GET_SNA), device_id)
    values = {epc: edt for epc, edt in frame.props}
    if frame.esv == GET_SNA:
        refused = [epc for epc, edt in frame.props if not edt] or list(epcs)
        raise RefusedError(device_id, _refused_text(deoj, refused, "read") + " (Get_SNA)", refused,
                           {epc: edt for epc, edt in frame.props if edt})
    missing = [e for e in epcs if not values.get(e)]
    if missing:
        message = f"{eoj_text(deoj)}: Get_Res without {_epcs(missing)}"
        if 0 < len(frame.props) < len(epcs) and [e for e, _ in frame.props] == list(epcs[:len(frame.props)]):
            raise ShortAnswerError(device_id, message + f" (answered the first {len(frame.props)})", values)
        raise DeviceError(device_id, "decode", message)
    return values


async def set_properties(sock: EchonetSocket, host: str, port: int, deoj: EOJ, props: list[tuple[int, bytes]], *,
                         timeout_s: float, device_id: str) -> None:
    """SetC ``props`` in one request; a SetC_SNA (0x51) raises DeviceError naming the refused properties.

    In a SetC_SNA the node echoes a refused property with its data and an
    accepted one with PDC 0 (spec part 2, 3.2.5).
    """
    frame = await sock.request(host, port, deoj, SETC, props, timeout_s=timeout_s, device_id=device_id)
    _check_answer(frame, deoj, (SET_RES, SETC_SNA), device_id)
    if frame.esv == SETC_SNA:
        refused = [epc for epc, edt in frame.props if edt] or [p[0] for p in props]
        raise RefusedError(device_id, _refused_text(deoj, refused, "set") + " (SetC_SNA)", refused)


def _check_answer(frame: Frame, deoj: EOJ, esvs: tuple[int, ...], device_id: str) -> None:
    if frame.seoj != deoj:
        raise DeviceError(device_id, "decode", f"answer from {eoj_text(frame.seoj)}, asked {eoj_text(deoj)}")
    if frame.esv not in esvs:
        raise DeviceError(device_id, "decode" if not frame.is_refusal else "exception_response",
                          f"{eoj_text(deoj)}: answer ESV 0x{frame.esv:02X} "
                          f"({ESV_NAMES.get(frame.esv, 'unknown')}) to a request expecting "
                          f"{'/'.join(ESV_NAMES[e] for e in esvs)}")
