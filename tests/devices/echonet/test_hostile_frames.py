"""Hostile datagrams: the parser raises only FrameError, the simulator's node and the client never crash."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from devices.echonet.client import EchonetSocket
from devices.echonet.frame import FrameError, parse
from devices.readings import Nature
from devices.simulator.clock import ManualClock
from devices.simulator.echonet_node import EchonetNode
from devices.simulator.physics import HallPhysics
from tests.devices.echonet.spec import frame
from tests.devices.simulator.helpers import JUNE_NOON, make_site

HEADERS = st.sampled_from([b"", b"\x10\x81", b"\x10\x82", b"\x00\x00"])
# Frames that look right up to the header, then anything: truncated, long, lying OPC/PDC.
FRAMES = st.builds(lambda h, body: h + body, HEADERS, st.binary(max_size=64)) | st.builds(
    lambda esv, deoj, props, tail: frame(1, b"\x05\xff\x01", deoj, esv, props)[: len(tail) + 12] + tail,
    st.sampled_from([0x60, 0x61, 0x62, 0x63, 0x6E, 0x72, 0x51, 0x00]),
    st.sampled_from([b"\x02\x7d\x01", b"\x02\x88\x00", b"\x0e\xf0\x01", b"\x02\x79\x01", b"\x01\x30\x01"]),
    st.lists(st.tuples(st.integers(0x80, 0xFF), st.binary(max_size=8)), max_size=4),
    st.binary(max_size=6))

NODE = EchonetNode(HallPhysics(make_site(), ManualClock(JUNE_NOON)),
                   [(Nature.BATTERY, 1), (Nature.PV, 1), (Nature.METER, 1)])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(FRAMES)
def test_parse_raises_only_frame_error_and_the_node_only_answers_frames(data):
    try:
        parse(data)
    except FrameError:
        pass
    for answer in NODE.handle(data):
        f = parse(answer)  # every answer is a well-formed frame
        assert f.esv in (0x71, 0x72, 0x73, 0x50, 0x51, 0x52, 0x53)


@settings(max_examples=200, deadline=None)
@given(FRAMES)
def test_client_socket_drops_garbage(data):
    sock = EchonetSocket()
    sock._received(data, ("127.0.0.1", 3610))  # no request waits: counted or ignored, never raised
    try:
        parse(data)
        malformed = 0  # a well-formed frame nobody asked for is ignored
    except FrameError:
        malformed = 1
    assert sock.bad_frames == malformed


def test_a_request_to_a_class_pychonet_does_not_know_is_built_as_the_spec_lays_it_out():
    """A node on a real LAN may list a user-defined (0x0F) object: discovery must be able to ask it."""
    from devices.echonet.frame import build_request

    frame = build_request(7, (0x0F, 0x00, 0x01), 0x62, [(0x80, b"")])
    assert frame == bytes([0x10, 0x81, 0x00, 0x07, 0x05, 0xFF, 0x01, 0x0F, 0x00, 0x01, 0x62, 0x01, 0x80, 0x00])
