"""Find ECHONET Lite nodes, their objects and property maps.

:func:`discover` asks each target (a node's address, or the multicast group
224.0.23.0 on a real LAN) for the node profile's self-node instance list
0xD6, then every listed object for its property maps 0x9D/0x9E/0x9F.  An
object that does not answer or refuses is listed with the problem, never
dropped.  :func:`format_nodes` prints the result,
with the fleet file entry of each battery, PV and meter object.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from devices.echonet import properties as P
from devices.echonet.client import EchonetSocket, get_properties
from devices.echonet.frame import (
    EOJ,
    ENL_PORT,
    EPC_GET_MAP,
    EPC_INF_MAP,
    EPC_INSTANCE_LIST,
    EPC_SET_MAP,
    GET,
    GET_RES,
    HOME_SOLAR,
    NODE_PROFILE,
    SMART_METER,
    STORAGE_BATTERY,
    FrameError,
    decode_property_map,
    eoj_text,
)
from devices.errors import DeviceError


@dataclass
class ObjectInfo:
    """One object of a node: eoj, its property maps (EPC sets) and any problem reading them."""

    eoj: EOJ
    inf: frozenset[int] = frozenset()
    set: frozenset[int] = frozenset()
    get: frozenset[int] = frozenset()
    problem: str | None = None


@dataclass
class NodeInfo:
    """One node: where it answered from, its objects, and a problem with its instance list, if any."""

    host: str
    port: int
    objects: list[ObjectInfo] = field(default_factory=list)
    problem: str | None = None


def _instances(edt: bytes) -> list[EOJ]:
    if not edt or len(edt) < 1 + 3 * edt[0]:
        raise FrameError(f"instance list 0xD6 of {len(edt)} bytes does not hold its count")
    return [tuple(edt[1 + 3 * i: 4 + 3 * i]) for i in range(edt[0])]  # type: ignore[misc]


async def discover(sock: EchonetSocket, targets: list[tuple[str, int]] | None = None, *,
                   wait_s: float = 1.0, timeout_s: float = 1.0) -> list[NodeInfo]:
    """Nodes answering at ``targets`` (default: the multicast group on port 3610), sorted by address.

    ``wait_s`` [s]: how long to gather answers to each instance-list request;
    ``timeout_s`` [s]: per request to an object.
    """
    from devices.echonet.frame import MULTICAST_ADDRESS

    targets = targets or [(MULTICAST_ADDRESS, ENL_PORT)]
    answers: dict[tuple[str, int], bytes] = {}
    for host, port in targets:
        for frame, addr in await sock.collect(host, port, NODE_PROFILE, GET, [(EPC_INSTANCE_LIST, b"")],
                                              wait_s=wait_s):
            if frame.esv == GET_RES and frame.seoj[:2] == NODE_PROFILE[:2]:
                answers[(addr[0], addr[1])] = dict(frame.props).get(EPC_INSTANCE_LIST, b"")
    nodes = []
    for (host, port), edt in sorted(answers.items()):
        node = NodeInfo(host, port)
        try:
            eojs = _instances(edt)
        except FrameError as exc:
            node.problem = str(exc)
            nodes.append(node)
            continue
        for eoj in eojs:
            obj = ObjectInfo(eoj)
            try:
                raw = await get_properties(sock, host, port, eoj, [EPC_INF_MAP, EPC_SET_MAP, EPC_GET_MAP],
                                           timeout_s=timeout_s, device_id=f"{host}:{port}")
                obj.inf, obj.set, obj.get = (decode_property_map(raw[e]) for e in (EPC_INF_MAP, EPC_SET_MAP,
                                                                                      EPC_GET_MAP))
            except (DeviceError, FrameError) as exc:
                obj.problem = getattr(exc, "message", str(exc))
            node.objects.append(obj)
        nodes.append(node)
    return nodes


#: Class -> the nature a fleet file gives such an object.
_NATURES = {STORAGE_BATTERY: "battery", HOME_SOLAR: "pv", SMART_METER: "meter"}


def config_line(node: NodeInfo, obj: ObjectInfo) -> str | None:
    """The fleet file's device entry for ``obj`` (None for classes the project does not use)."""
    nature = _NATURES.get(obj.eoj[:2])
    if nature is None:
        return None
    return (f"{{id: {nature}, nature: {nature}, transport: {{kind: echonet_lite, host: {node.host}, "
            f"port: {node.port}, instance: {obj.eoj[2]}}}}}")


def _map_text(eoj: EOJ, epcs: frozenset[int]) -> str:
    return ", ".join(f"0x{e:02X} {P.epc_name(eoj, e)}" for e in sorted(epcs)) or "-"


def format_nodes(nodes: list[NodeInfo], verbose: bool = True) -> str:
    """Text listing: one block per node, one line per object, its maps below (names of known EPCs)."""
    if not nodes:
        return "no ECHONET Lite node answered"
    lines = []
    for node in nodes:
        lines.append(f"node {node.host}:{node.port}: {len(node.objects)} object(s)"
                     + (f" - {node.problem}" if node.problem else ""))
        for obj in node.objects:
            lines.append(f"  {eoj_text(obj.eoj)}" + (f": {obj.problem}" if obj.problem else ""))
            if obj.problem is None:
                entry = config_line(node, obj)
                if entry:
                    lines.append(f"    fleet file: - {entry}")
                if verbose:
                    lines.append(f"    get (0x9F): {_map_text(obj.eoj, obj.get)}")
                    lines.append(f"    set (0x9E): {_map_text(obj.eoj, obj.set)}")
                    lines.append(f"    inf (0x9D): {_map_text(obj.eoj, obj.inf)}")
                else:
                    lines.append(f"    get {len(obj.get)}, set {len(obj.set)}, inf {len(obj.inf)} properties")
    return "\n".join(lines)
