"""ECHONET Lite frames (format 1): what goes over UDP, decoded into a typed :class:`Frame`.

Byte layout (ECHONET Lite spec part 2, chapter 3)::

    EHD1 0x10 | EHD2 0x81 | TID (2) | SEOJ (3) | DEOJ (3) | ESV | OPC | OPC x (EPC, PDC, EDT[PDC])

Every frame is decoded with pychonet's ``decodeEchonetMsg``; property maps
(0x9D/0x9E/0x9F) are decoded with its ``_009X``.  What pychonet leaves out is
added here: a length check (its decoder raises IndexError on a truncated
datagram and ignores trailing bytes), and :func:`build_frame` for every frame
we send: pychonet's builder always writes the controller object 0x05FF01 as
SEOJ (a node's answers need their own) and refuses object classes it does
not know.
"""

from __future__ import annotations

from dataclasses import dataclass

from pychonet.lib.epc_functions import _009X
from pychonet.lib.functions import DecodeEchonetMsgError, decodeEchonetMsg

EHD1, EHD2 = 0x10, 0x81
ENL_PORT = 3610
MULTICAST_ADDRESS = "224.0.23.0"

# ESV codes.
SETI, SETC, GET, INF_REQ = 0x60, 0x61, 0x62, 0x63
SET_RES, GET_RES, INF, INFC = 0x71, 0x72, 0x73, 0x74
SETI_SNA, SETC_SNA, GET_SNA, INF_SNA = 0x50, 0x51, 0x52, 0x53
ESV_NAMES = {0x60: "SetI", 0x61: "SetC", 0x62: "Get", 0x63: "INF_REQ", 0x71: "Set_Res", 0x72: "Get_Res",
             0x73: "INF", 0x74: "INFC", 0x50: "SetI_SNA", 0x51: "SetC_SNA", 0x52: "Get_SNA", 0x53: "INF_SNA",
             0x5E: "SetGet_SNA", 0x6E: "SetGet", 0x7E: "SetGet_Res"}

# Object codes (EOJ = class group, class, instance).
CONTROLLER = (0x05, 0xFF, 0x01)
NODE_PROFILE = (0x0E, 0xF0, 0x01)
STORAGE_BATTERY = (0x02, 0x7D)
HOME_SOLAR = (0x02, 0x79)
SMART_METER = (0x02, 0x88)
CLASS_NAMES = {(0x0E, 0xF0): "node profile", STORAGE_BATTERY: "storage battery", HOME_SOLAR: "home solar power",
               SMART_METER: "low-voltage smart electric energy meter", (0x05, 0xFF): "controller"}

# Properties every object has (super class) and the node profile's instance list.
EPC_STATUS, EPC_FAULT = 0x80, 0x88
EPC_INF_MAP, EPC_SET_MAP, EPC_GET_MAP = 0x9D, 0x9E, 0x9F
EPC_INSTANCE_LIST = 0xD6  # node profile: self-node instance list S

EOJ = tuple[int, int, int]


class FrameError(ValueError):
    """A datagram that is not a valid ECHONET Lite format-1 frame (the message says what is wrong)."""


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame: tid, seoj, deoj, esv and the properties in order as (epc, edt) pairs."""

    tid: int
    seoj: EOJ
    deoj: EOJ
    esv: int
    props: tuple[tuple[int, bytes], ...]

    @property
    def is_refusal(self) -> bool:
        """True for the "not possible" answers (ESV 0x50-0x5F)."""
        return 0x50 <= self.esv <= 0x5F


def parse(data: bytes) -> Frame:
    """Decode ``data`` (pychonet's decoder plus the length checks it lacks); FrameError if malformed."""
    if len(data) < 12:
        raise FrameError(f"frame of {len(data)} bytes is shorter than the 12-byte header")
    pos = 12
    for _ in range(data[11]):
        if pos + 2 > len(data):
            raise FrameError(f"frame ends inside property {_ + 1} of {data[11]} (OPC)")
        pos += 2 + data[pos + 1]
    if pos != len(data):
        raise FrameError(f"frame length {len(data)} does not match its {data[11]} properties ({pos} bytes)")
    try:
        d = decodeEchonetMsg(bytes(data))
    except DecodeEchonetMsgError as exc:
        raise FrameError(str(exc)) from None
    if d["EHD2"] != EHD2:
        raise FrameError(f"EHD2 0x{d['EHD2']:02X} is not format 1 (0x81)")
    return Frame(
        tid=d["TID"],
        seoj=(d["SEOJGC"], d["SEOJCC"], d["SEOJCI"]),
        deoj=(d["DEOJGC"], d["DEOJCC"], d["DEOJCI"]),
        esv=d["ESV"],
        props=tuple((p["EPC"], bytes(p["EDT"])) for p in d["OPC"]),
    )


def build_request(tid: int, deoj: EOJ, esv: int, props: list[tuple[int, bytes]]) -> bytes:
    """A controller's request (SEOJ 0x05FF01); ``props`` as (epc, edt) with b"" for Get.  Built by
    :func:`build_frame`, not pychonet's ``buildEchonetMsg``: that refuses classes it does not know (a
    user-defined 0x0F group, an unlisted 0x02 class), which a node on a real LAN may well list."""
    return build_frame(tid, CONTROLLER, deoj, esv, props)


def build_frame(tid: int, seoj: EOJ, deoj: EOJ, esv: int, props: list[tuple[int, bytes]]) -> bytes:
    """Any frame, e.g. a node's answer whose SEOJ is the answering object (pychonet fixes SEOJ 0x05FF01)."""
    if not 0 <= tid <= 0xFFFF or len(props) > 255:
        raise ValueError(f"TID {tid} or {len(props)} properties out of range")
    out = bytearray([EHD1, EHD2, *tid.to_bytes(2, "big"), *seoj, *deoj, esv, len(props)])
    for epc, edt in props:
        if len(edt) > 255:
            raise ValueError(f"EPC 0x{epc:02X}: {len(edt)} bytes do not fit a PDC")
        out += bytes([epc, len(edt)]) + edt
    return bytes(out)


def decode_property_map(edt: bytes) -> frozenset[int]:
    """The EPCs of a property map (0x9D/0x9E/0x9F), list form (< 16) or bitmap form (pychonet's ``_009X``)."""
    if not edt:
        raise FrameError("empty property map")
    if edt[0] >= 16 and len(edt) != 17:
        raise FrameError(f"property map of {edt[0]} properties must be a 17-byte bitmap, got {len(edt)} bytes")
    if edt[0] < 16 and len(edt) != 1 + edt[0]:
        raise FrameError(f"property map lists {edt[0]} properties in {len(edt) - 1} bytes")
    return frozenset(_009X(edt))


def encode_property_map(epcs: set[int] | frozenset[int]) -> bytes:
    """A property map EDT for ``epcs``: a list below 16 properties, the 16-byte bitmap from 16 on."""
    codes = sorted(epcs)
    if len(codes) < 16:
        return bytes([len(codes), *codes])
    bitmap = bytearray(16)
    for epc in codes:
        bitmap[epc & 0x0F] |= 1 << ((epc >> 4) - 8)
    return bytes([len(codes)]) + bytes(bitmap)


def eoj_text(eoj: EOJ) -> str:
    """``0x027D01 (storage battery)``."""
    name = CLASS_NAMES.get(eoj[:2])
    return f"0x{eoj[0]:02X}{eoj[1]:02X}{eoj[2]:02X}" + (f" ({name})" if name else "")
