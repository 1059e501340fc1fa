"""Discovery of ECHONET Lite nodes on loopback: the library call and ``ems discover --echonet``."""

from __future__ import annotations

import asyncio
import threading

import pytest

from devices.echonet.client import EchonetSocket
from devices.echonet.discovery import discover, format_nodes
from devices.readings import Nature
from devices.simulator.clock import ManualClock
from devices.simulator.echonet_node import EchonetNode
from devices.simulator.physics import HallPhysics
from ems.cli.main import main
from tests.devices.echonet.spec import Responder, serve
from tests.devices.simulator.helpers import JUNE_NOON, make_site


async def test_discover_lists_objects_with_their_maps(node):
    broken = Responder(bytes([0x0E, 0xF0, 0x01]), {0xD6: bytes([2, 0x02, 0x7D, 0x01, 0x02, 0x79, 0x05])},
                       {0xD6}, set())  # lists an object that does not exist: it never answers
    transport, broken_port = await serve(broken)
    sock = EchonetSocket(local_host="127.0.0.1", local_port=0, retries=0)
    try:
        nodes = await discover(sock, [("127.0.0.1", node.port), ("127.0.0.1", broken_port)],
                               wait_s=0.15, timeout_s=0.1)
    finally:
        await sock.close()
        transport.close()
    by_port = {n.port: n for n in nodes}
    sim = by_port[node.port]
    assert {o.eoj for o in sim.objects} == {(0x02, 0x7D, 1), (0x02, 0x79, 1), (0x02, 0x88, 1)}
    battery = next(o for o in sim.objects if o.eoj[:2] == (0x02, 0x7D))
    assert battery.set == {0xDA, 0xEB, 0xEC} and {0xE4, 0xD3, 0xC8, 0xC9} <= battery.get and battery.problem is None
    bad = by_port[broken_port]
    assert [o.problem is not None for o in bad.objects] == [True, True]  # listed, with the problem
    text = format_nodes(nodes)
    assert "0x027D01 (storage battery)" in text and "0xDA operation mode setting" in text
    assert "no answer" in text
    assert (f"fleet file: - {{id: battery, nature: battery, transport: {{kind: echonet_lite, host: 127.0.0.1, "
            f"port: {node.port}, instance: 1}}}}") in text


def test_cli_discover_echonet(capsys):
    loop = asyncio.new_event_loop()
    physics = HallPhysics(make_site(), ManualClock(JUNE_NOON))
    node = EchonetNode(physics, [(Nature.BATTERY, 1), (Nature.METER, 1)], "127.0.0.1", 0)
    loop.run_until_complete(node.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        code = main(["discover", "--echonet", "--host", "127.0.0.1", "--port", str(node.port),
                     "--local-port", "0", "--wait", "0.2", "--brief"])
        out = capsys.readouterr().out
        assert code == 0
        assert f"node 127.0.0.1:{node.port}: 2 object(s)" in out and "0x028801 (low-voltage smart" in out
        assert main(["discover"]) == 2 and "--echonet" in capsys.readouterr().err
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(2)
        loop.run_until_complete(node.stop())
        loop.close()
