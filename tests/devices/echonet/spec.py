"""An independent ECHONET Lite implementation for tests: frames from the specification's byte layout.

Written from ECHONET Lite spec part 2 (frame format 1) and the APPENDIX
(property maps), using only ``struct``: neither our ``devices.echonet`` nor
pychonet is imported here, so a shared misreading of the spec cannot hide.

Frame: EHD1 0x10, EHD2 0x81, TID (2, big-endian), SEOJ (3), DEOJ (3), ESV,
OPC, then OPC x (EPC, PDC, EDT[PDC]).
Property map: fewer than 16 properties: count + EPC list; 16 or more: count +
16 bytes where byte n (0..15), bit b (0 = LSB) means EPC 0x80 + 0x10*b + n.
"""

from __future__ import annotations

import asyncio
import struct
from typing import Callable

HEADER = struct.Struct(">BBH3s3sBB")


def frame(tid: int, seoj: bytes, deoj: bytes, esv: int, props: list[tuple[int, bytes]]) -> bytes:
    body = b"".join(struct.pack(">BB", epc, len(edt)) + edt for epc, edt in props)
    return HEADER.pack(0x10, 0x81, tid, seoj, deoj, esv, len(props)) + body


def unframe(data: bytes) -> dict:
    ehd1, ehd2, tid, seoj, deoj, esv, opc = HEADER.unpack_from(data)
    props, pos = [], HEADER.size
    for _ in range(opc):
        epc, pdc = data[pos], data[pos + 1]
        props.append((epc, data[pos + 2: pos + 2 + pdc]))
        pos += 2 + pdc
    assert pos == len(data), "trailing bytes after the last property"
    return {"ehd": (ehd1, ehd2), "tid": tid, "seoj": seoj, "deoj": deoj, "esv": esv, "props": props}


def map_edt(epcs: set[int]) -> bytes:
    if len(epcs) < 16:
        return bytes([len(epcs)] + sorted(epcs))
    bits = [0] * 16
    for epc in epcs:
        bits[epc & 0x0F] |= 1 << ((epc >> 4) - 8)
    return bytes([len(epcs)] + bits)


def map_epcs(edt: bytes) -> set[int]:
    if edt[0] < 16:
        return set(edt[1:1 + edt[0]])
    return {0x80 + 0x10 * b + n for n in range(16) for b in range(8) if edt[1 + n] >> b & 1}


class Responder(asyncio.DatagramProtocol):
    """A hand-built ECHONET Lite node for one object: answers Get and SetC from ``values``.

    ``get``/``set`` are its property maps; ``refuse`` EPCs it lists but refuses; ``max_opc`` caps the
    properties it answers per Get;
    ``silent`` drops every request; ``received`` keeps every request (unframed).
    """

    def __init__(self, eoj: bytes, values: dict[int, bytes], get: set[int], set_: set[int],
                 on_set: Callable[[int, bytes], None] | None = None):
        self.eoj, self.values, self.get, self.set = eoj, values, get | {0x9D, 0x9E, 0x9F}, set_
        self.refuse: set[int] = set()
        self.max_opc: int | None = None  # answer only the first n properties of a Get (some nodes do)
        self.silent = False
        self.received: list[dict] = []
        self.on_set = on_set

    def connection_made(self, transport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr) -> None:
        req = unframe(data)
        self.received.append(req)
        if self.silent or req["deoj"] != self.eoj:
            return
        maps = {0x9D: map_edt({0x80}), 0x9E: map_edt(self.set), 0x9F: map_edt(self.get)}
        out, ok = [], True
        if req["esv"] == 0x62:
            for epc, _ in req["props"][: self.max_opc]:
                edt = maps.get(epc, self.values.get(epc, b"")) if epc in self.get and epc not in self.refuse else b""
                ok &= bool(edt)
                out.append((epc, edt))
            esv = 0x72 if ok else 0x52
        elif req["esv"] == 0x61:
            for epc, edt in req["props"]:
                if epc in self.set and epc not in self.refuse:
                    self.values[epc] = edt
                    if self.on_set:
                        self.on_set(epc, edt)
                    out.append((epc, b""))
                else:
                    ok = False
                    out.append((epc, edt))
            esv = 0x71 if ok else 0x51
        else:
            return
        self.transport.sendto(frame(req["tid"], self.eoj, req["seoj"], esv, out), addr)


async def serve(responder: Responder) -> tuple[asyncio.DatagramTransport, int]:
    transport, _ = await asyncio.get_running_loop().create_datagram_endpoint(
        lambda: responder, local_addr=("127.0.0.1", 0))
    return transport, transport.get_extra_info("sockname")[1]


class Probe(asyncio.DatagramProtocol):
    """A client socket for hand-built requests: ``await ask(frame)`` returns the unframed answer."""

    def __init__(self):
        self.answers: asyncio.Queue = asyncio.Queue()

    def datagram_received(self, data: bytes, addr) -> None:
        self.answers.put_nowait(unframe(data))

    @classmethod
    async def open(cls, port: int) -> "Probe":
        loop = asyncio.get_running_loop()
        transport, probe = await loop.create_datagram_endpoint(cls, remote_addr=("127.0.0.1", port))
        probe.transport = transport
        return probe

    async def ask(self, data: bytes, timeout_s: float = 1.0) -> dict:
        self.transport.sendto(data)
        return await asyncio.wait_for(self.answers.get(), timeout_s)

    def close(self) -> None:
        self.transport.close()
