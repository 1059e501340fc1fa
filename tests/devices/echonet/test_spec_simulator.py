"""The simulator's ECHONET Lite node, checked with frames built from the spec's byte layout (tests/.../spec.py)."""

from __future__ import annotations

import pytest

from tests.devices.echonet.spec import Probe, frame, map_epcs

CONTROLLER = bytes([0x05, 0xFF, 0x01])
BATTERY, PV, METER, NODE = bytes([0x02, 0x7D, 0x01]), bytes([0x02, 0x79, 0x01]), bytes([0x02, 0x88, 0x01]), \
    bytes([0x0E, 0xF0, 0x01])


@pytest.fixture
async def probe(node):
    p = await Probe.open(node.port)
    yield p
    p.close()


async def test_battery_get_answers_the_physics_in_spec_layout(node, physics, probe):
    ans = await probe.ask(frame(0x1234, CONTROLLER, BATTERY, 0x62, [(0xE4, b""), (0xD3, b""), (0xE2, b""),
                                                                     (0x9F, b""), (0x9E, b"")]))
    assert ans["ehd"] == (0x10, 0x81) and ans["tid"] == 0x1234
    assert ans["seoj"] == BATTERY and ans["deoj"] == CONTROLLER and ans["esv"] == 0x72
    values = dict(ans["props"])
    s = physics.state
    assert values[0xE4] == bytes([round(s.soc_pct)])
    assert int.from_bytes(values[0xE2], "big") == round(s.stored_wh)
    assert int.from_bytes(values[0xD3], "big", signed=True) == round(-s.battery_power_w)  # + = charging
    get_map = map_epcs(values[0x9F])
    assert len(get_map) >= 16 and values[0x9F][0] == len(get_map) and len(values[0x9F]) == 17  # bitmap form
    assert {0x80, 0x88, 0xDA, 0xE4, 0xD3, 0xC8, 0xC9, 0x9D, 0x9E, 0x9F} <= get_map
    assert map_epcs(values[0x9E]) == {0xDA, 0xEB, 0xEC} and values[0x9E][0] == 3  # list form


async def test_setc_charge_reaches_the_physics_and_refusals_echo_the_data(node, physics, probe, clock):
    ans = await probe.ask(frame(7, CONTROLLER, BATTERY, 0x61, [(0xEB, (1500).to_bytes(4, "big")), (0xDA, b"\x42")]))
    assert ans["esv"] == 0x71 and ans["props"] == [(0xEB, b""), (0xDA, b"")]
    assert physics.state.setpoint_w == -1500.0
    clock.advance(10)
    physics.step()
    assert physics.state.battery_power_w == pytest.approx(-1500.0)
    # Mode 0x45 (test) is not accepted, 0xE4 is not settable: SetC_SNA echoes both with their data.
    ans = await probe.ask(frame(8, CONTROLLER, BATTERY, 0x61, [(0xDA, b"\x45"), (0xE4, b"\x10")]))
    assert ans["esv"] == 0x51 and ans["props"] == [(0xDA, b"\x45"), (0xE4, b"\x10")]
    assert physics.state.setpoint_w == -1500.0
    # Discharging power above 0xC9's maximum is refused.
    too_much = int(physics.max_discharge_limit_w + 1).to_bytes(4, "big")
    ans = await probe.ask(frame(9, CONTROLLER, BATTERY, 0x61, [(0xEC, too_much)]))
    assert ans["esv"] == 0x51 and ans["props"] == [(0xEC, too_much)]


async def test_get_of_an_unlisted_property_is_get_sna(probe):
    ans = await probe.ask(frame(3, CONTROLLER, PV, 0x62, [(0xE0, b""), (0xB0, b"")]))
    assert ans["esv"] == 0x52 and ans["seoj"] == PV
    assert ans["props"][0][0] == 0xE0 and len(ans["props"][0][1]) == 2 and ans["props"][1] == (0xB0, b"")


async def test_node_profile_lists_the_instances(probe):
    ans = await probe.ask(frame(4, CONTROLLER, NODE, 0x62, [(0xD6, b"")]))
    edt = dict(ans["props"])[0xD6]
    assert edt[0] == 3 and {edt[1:4], edt[4:7], edt[7:10]} == {BATTERY, PV, METER}


async def test_meter_energy_with_unit_and_coefficient(physics, probe, clock):
    clock.advance(3600)
    physics.step()
    ans = await probe.ask(frame(5, CONTROLLER, METER, 0x62, [(0xE7, b""), (0xE0, b""), (0xE3, b""), (0xE1, b""),
                                                              (0xD3, b"")]))
    v = dict(ans["props"])
    assert ans["esv"] == 0x72
    kwh_per_count = {0x01: 0.1, 0x02: 0.01, 0x03: 0.001}[v[0xE1][0]] * int.from_bytes(v[0xD3], "big")
    s = physics.state
    assert int.from_bytes(v[0xE7], "big", signed=True) == round(s.grid_power_w)
    assert int.from_bytes(v[0xE0], "big") * kwh_per_count * 1000 == pytest.approx(s.import_wh, abs=10)
    assert int.from_bytes(v[0xE3], "big") * kwh_per_count * 1000 == pytest.approx(s.export_wh, abs=10)
    physics.set_grid(False)  # the meter behind route B has no power: its measured values are not available
    ans = await probe.ask(frame(6, CONTROLLER, METER, 0x62, [(0xE7, b"")]))
    assert ans["esv"] == 0x52 and ans["props"] == [(0xE7, b"")]
