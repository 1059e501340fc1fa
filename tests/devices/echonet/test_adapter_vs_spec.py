"""Our ECHONET Lite adapters against a node built in the test from the spec's byte layout (spec.Responder)."""

from __future__ import annotations

import pytest

from devices.config import DeviceConfig
from devices.errors import DeviceError
from devices.factory import build_devices, close_all
from devices.readings import BatteryState
from tests.devices.echonet.spec import Responder, serve

BATTERY = bytes([0x02, 0x7D, 0x02])  # instance 2: the adapter must address the configured instance
BATTERY_GET = {0x80, 0x81, 0x82, 0x88, 0x8A, 0xC8, 0xC9, 0xCF, 0xD0, 0xD3, 0xDA, 0xE2, 0xE4, 0xE5, 0xEB, 0xEC}


def u32(v: int) -> bytes:
    return v.to_bytes(4, "big")


def battery_values() -> dict[int, bytes]:
    return {0x80: b"\x30", 0x81: b"\x00", 0x82: b"\x00\x00M\x00", 0x88: b"\x42", 0x8A: b"\x00\x00\x77",
            0xC8: u32(3000) + u32(100), 0xC9: u32(2500) + u32(100), 0xCF: b"\x42", 0xD0: u32(9800),
            0xD3: (1200).to_bytes(4, "big", signed=True),  # charging 1200 W in ECHONET's sign
            0xDA: b"\x42", 0xE2: u32(4900), 0xE4: bytes([50]), 0xE5: bytes([97]), 0xEB: u32(1200), 0xEC: u32(0)}


@pytest.fixture
async def hand_battery():
    responder = Responder(BATTERY, battery_values(), set(BATTERY_GET), {0xDA, 0xEB, 0xEC})
    transport, port = await serve(responder)
    cfg = DeviceConfig.model_validate({"id": "bat", "nature": "battery", "rated_w": 3000, "timeout_s": 0.2,
                                       "transport": {"kind": "echonet_lite", "host": "127.0.0.1", "port": port,
                                                     "instance": 2, "local_port": 0}})
    devices = build_devices([cfg])
    yield responder, devices["bat"]
    await close_all(devices)
    transport.close()


async def test_reading_units_and_signs(hand_battery):
    responder, bat = hand_battery
    r = await bat.read()
    assert r.power_w == -1200.0  # ours: + = discharging
    assert r.soc_pct == pytest.approx(50.0)  # 4900 of 9800 Wh agrees with 0xE4 = 50 %
    assert (r.max_charge_w, r.max_discharge_w, r.capacity_wh, r.soh_pct) == (3000.0, 2500.0, 9800.0, 97.0)
    assert r.state == BatteryState.CHARGING and r.fault_code == 0 and not r.faulted
    # Property maps were read first, in one Get of 0x9D/0x9E/0x9F addressed to instance 2.
    first = responder.received[0]
    assert first["deoj"] == BATTERY and first["esv"] == 0x62 and [e for e, _ in first["props"]] == [0x9D, 0x9E, 0x9F]
    responder.values[0x88] = b"\x41"
    r = await bat.read()
    assert r.state == BatteryState.FAULT and r.faulted and r.max_discharge_w == 0.0


async def test_setpoint_follows_aif_order_and_is_read_back(hand_battery):
    responder, bat = hand_battery
    await bat.set_power_w(1800.4)
    setc = [r for r in responder.received if r["esv"] == 0x61][-1]
    assert setc["props"] == [(0xEC, u32(1800)), (0xDA, b"\x43")]  # power first, then the mode
    readback = responder.received[-1]
    assert readback["esv"] == 0x62 and [e for e, _ in readback["props"]] == [0xEC, 0xDA]
    await bat.set_power_w(-700)
    assert [r for r in responder.received if r["esv"] == 0x61][-1]["props"] == [(0xEB, u32(700)), (0xDA, b"\x42")]
    await bat.set_power_w(0)
    assert [r for r in responder.received if r["esv"] == 0x61][-1]["props"] == [(0xDA, b"\x44")]


async def test_refused_property_is_a_device_error_naming_it(hand_battery):
    responder, bat = hand_battery
    await bat.read()
    responder.refuse = {0xDA}
    with pytest.raises(DeviceError) as err:
        await bat.set_power_w(500)
    assert err.value.kind == "exception_response"
    assert "0xDA (operation mode setting)" in str(err.value) and "SetC_SNA" in str(err.value)
    responder.refuse = {0xE4}
    with pytest.raises(DeviceError) as err:
        await bat.read()
    assert err.value.kind == "exception_response" and "0xE4" in str(err.value) and "Get_SNA" in str(err.value)


async def test_out_of_range_setpoint_and_write_verify(hand_battery):
    responder, bat = hand_battery
    with pytest.raises(DeviceError) as err:
        await bat.set_power_w(2600)  # 0xC9 maximum is 2500 W
    assert err.value.kind == "invalid_value" and "0xC9" in str(err.value)
    with pytest.raises(DeviceError) as err:
        await bat.set_power_w(float("nan"))
    assert err.value.kind == "invalid_value"
    responder.on_set = lambda epc, edt: responder.values.__setitem__(0xDA, b"\x44") if epc == 0xDA else None
    with pytest.raises(DeviceError) as err:
        await bat.set_power_w(1000)  # the node answers Set_Res but keeps standby
    assert err.value.kind == "write_verify" and "0xDA" in str(err.value)


async def test_silent_node_times_out_after_one_retry(hand_battery):
    responder, bat = hand_battery
    await bat.read()
    responder.silent = True
    before = len(responder.received)
    with pytest.raises(DeviceError) as err:
        await bat.read()
    assert err.value.kind == "timeout" and "2 attempts" in str(err.value)
    assert len(responder.received) - before == 2
    responder.silent = False
    assert (await bat.read()).soc_pct == pytest.approx(50.0)  # the next poll works again


async def test_required_property_missing_from_the_get_map(hand_battery):
    responder, bat = hand_battery
    responder.get.discard(0xD3)
    with pytest.raises(DeviceError) as err:
        await bat.read()
    assert err.value.kind == "config" and "0xD3" in str(err.value) and "0x9F" in str(err.value)
    assert all(0xD3 not in [e for e, _ in r["props"]] for r in responder.received)  # never asked for


async def test_setpoint_needs_the_set_map(hand_battery):
    responder, bat = hand_battery
    responder.set.discard(0xEC)
    with pytest.raises(DeviceError) as err:
        await bat.set_power_w(1000)
    assert err.value.kind == "config" and "0xEC (discharging power setting)" in str(err.value)
    assert not [r for r in responder.received if r["esv"] == 0x61]


async def test_taken_answer_port_is_a_connection_error():
    from devices.echonet.client import EchonetSocket

    first = EchonetSocket(local_host="127.0.0.1", local_port=0)
    await first.open()
    second = EchonetSocket(local_host="127.0.0.1", local_port=first.local_port)
    try:
        with pytest.raises(DeviceError) as err:
            await second.request("127.0.0.1", 9, (0x02, 0x7D, 0x01), 0x62, [(0xE4, b"")], timeout_s=0.1,
                                 device_id="bat")
        assert err.value.kind == "connection" and "cannot bind" in str(err.value)
    finally:
        await first.close()
        await second.close()


async def test_a_refused_rating_is_left_out_not_fatal(hand_battery):
    responder, bat = hand_battery
    responder.refuse = {0xC9}  # listed in the get map, refused: the discharge limit reads as unknown
    r = await bat.read()
    assert r.max_discharge_w is None and r.max_charge_w == 3000.0 and r.capacity_wh == 9800.0


async def test_listed_but_refused_optional_property_is_dropped(hand_battery, caplog):
    responder, bat = hand_battery
    responder.refuse = {0xE5}  # as real batteries do: in the get map, answered with Get_SNA
    r = await bat.read()
    assert r.soh_pct is None and r.soc_pct == pytest.approx(50.0) and r.power_w == -1200.0
    assert "0xE5 (battery state of health)" in caplog.text
    await bat.read()
    assert 0xE5 not in [e for e, _ in responder.received[-1]["props"]]  # not asked for again


async def test_node_that_answers_only_a_few_properties_per_frame(hand_battery):
    responder, bat = hand_battery
    responder.max_opc = 3
    r = await bat.read()
    assert r.soc_pct == pytest.approx(50.0) and r.soh_pct == 97.0 and r.max_discharge_w == 2500.0
    assert bat.max_opc == 3
    start = len(responder.received)
    await bat.read()
    assert all(len(req["props"]) <= 3 for req in responder.received[start:])
    assert len(responder.received) - start == 3  # 8 listed properties in requests of 3, 3, 2


async def test_a_refusal_in_a_later_chunk_keeps_what_the_other_chunks_answered(hand_battery, caplog):
    """A node that caps its answers and refuses an optional property in the third request of a poll: the
    SoC and power of the first request still count (the refusal used to discard them: a failed read)."""
    responder, bat = hand_battery
    responder.max_opc = 3
    await bat.read()  # learns the cap
    responder.refuse = {0xE5}  # asked in the third chunk of 3, 3, 2
    r = await bat.read()
    assert r.soh_pct is None and r.soc_pct == pytest.approx(50.0) and r.power_w == -1200.0
    assert r.max_discharge_w == 2500.0
    assert "0xE5 (battery state of health)" in caplog.text
