"""SunSpec discovery and SunSpec-backed natures against a real server on loopback."""

from __future__ import annotations

import pytest

from devices.config import DeviceConfig
from devices.errors import DeviceError
from devices.modbus import ModbusConnection
from devices.natures import BatteryDevice, PVDevice
from devices.readings import BatteryState, Nature
from devices.sunspec import build_image, discover
from tests.devices.fakes import FakeModbusServer, UnitTables

FC_WRITE_SINGLE = 6

PV_MODELS = [
    (1, {"Mn": "ShelterSim", "Md": "PV-10", "SN": "hall-01-pv", "Vr": "1.2"}),
    (103, {"W": 4321, "W_SF": 0, "WH": 1_234_567, "WH_SF": 0, "Hz": 60.0, "St": 4}),
    (120, {"WRtg": 10000, "WRtg_SF": 0, "DERTyp": 4}),
]


def unit_with(image: dict[int, int]) -> UnitTables:
    return UnitTables(holding=dict(image), strict=True)  # nothing exists outside the image


async def _discover(units, unit=3, nature=None):
    async with FakeModbusServer(units) as srv:
        conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
        try:
            return await discover(conn, unit, nature, device_id="pv")
        finally:
            await conn.close()


@pytest.mark.parametrize("base", [40000, 0, 50000])
async def test_discovery_at_each_base(base):
    info = await _discover({3: unit_with(build_image(PV_MODELS, base=base))})
    assert info.base == base
    assert info.model_ids == (1, 103, 120)
    assert (info.manufacturer, info.model, info.serial, info.version) == ("ShelterSim", "PV-10", "hall-01-pv", "1.2")
    assert info.regmap.nature == Nature.PV
    w = info.regmap.by_field["power_w"]
    assert w.name == "m103.W" and w.address == base + 2 + 2 + 66 + 2 + 12


async def test_chain_walk_skips_and_records_unknown_models():
    image = build_image(PV_MODELS)
    # Splice an unknown model 64999 (length 5) between 103 and 120 by hand.
    end_103 = 40002 + 68 + 52
    tail = {a: v for a, v in image.items() if a >= end_103}
    spliced = {a: v for a, v in image.items() if a < end_103}
    spliced.update({end_103: 64999, end_103 + 1: 5, **{end_103 + 2 + i: 0x1111 for i in range(5)}})
    spliced.update({a + 7: v for a, v in tail.items()})
    info = await _discover({3: unit_with(spliced)})
    assert info.model_ids == (1, 103, 64999, 120)
    assert info.unknown_models == (64999,)
    assert info.regmap.by_field["rated_w"].address == end_103 + 7 + 2 + 1


async def test_missing_suns_marker_is_a_device_error():
    with pytest.raises(DeviceError) as info:
        await _discover({3: UnitTables(holding={a: 0 for a in range(0, 10)} | {40000: 0x1234, 40001: 0})})
    assert info.value.kind == "not_sunspec"
    assert "40000" in info.value.message and "50000" in info.value.message


async def test_chain_without_end_marker_ends_at_the_last_register():
    image = build_image(PV_MODELS)
    del image[max(image)], image[max(image)]  # drop the (0xFFFF, 0) end marker
    info = await _discover({3: unit_with(image)})
    assert info.model_ids == (1, 103, 120)


async def test_pv_device_reads_through_sunspec():
    cfg = DeviceConfig.model_validate({"id": "pv", "nature": "pv", "map": "sunspec", "rated_w": 10000,
                                       "transport": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": 1, "unit": 3}})
    async with FakeModbusServer({3: unit_with(build_image(PV_MODELS))}) as srv:
        conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
        try:
            dev = PVDevice(cfg, conn)
            r = await dev.read()
            assert (r.power_w, r.energy_wh, r.rated_w) == (4321, 1_234_567, 10000)
            assert r.extra["m103.St"] == 4 and r.extra["m103.Hz"] == 60
            assert r.time.tzinfo is not None
            n = len(srv.requests)
            await dev.read()
            assert len(srv.requests) - n == 1  # discovery once; 103 + 120 in one request
            # Night: the inverter reports a small negative power -> clamped to 0.
            srv.set(3, 40072 + 12, [(-7) & 0xFFFF])
            assert (await dev.read()).power_w == 0
        finally:
            await conn.close()


BATTERY_MODELS = [
    (1, {"Mn": "ShelterSim", "Md": "BAT-15"}),
    (103, {"W": 0, "W_SF": 0}),
    (120, {"WRtg": 6000, "WRtg_SF": 0, "WHRtg": 15000, "WHRtg_SF": 0, "DERTyp": 82}),
    (124, {"WChaMax": 6000, "WChaMax_SF": 0, "StorCtl_Mod": 0, "InWRte": 0, "OutWRte": 0, "InOutWRte_SF": -1,
           "InOutWRte_RvrtTms": 0, "ChaState": 40, "ChaState_SF": 0, "ChaSt": 4}),
    (802, {"SoC": 57.5, "SoC_SF": -1, "SoH": 97, "SoH_SF": 0, "W": -2500, "W_SF": 0, "WHRtg": 15000,
           "WHRtg_SF": 0, "WChaRteMax": 6000, "WDisChaRteMax": 5500, "WChaDisChaMax_SF": 0, "ChaSt": 4,
           "State": 3, "CtrlHb": 0}),
]


def battery_cfg() -> DeviceConfig:
    return DeviceConfig.model_validate({"id": "battery", "nature": "battery", "map": "sunspec", "rated_w": 6000,
                                        "transport": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": 1,
                                                      "unit": 1}})


async def test_battery_over_sunspec_read_setpoint_and_heartbeat():
    image = build_image(BATTERY_MODELS)
    async with FakeModbusServer({1: unit_with(image)}) as srv:
        conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
        try:
            dev = BatteryDevice(battery_cfg(), conn, revert_timeout_s=20)
            r = await dev.read()
            assert r.soc_pct == pytest.approx(57.5)  # 802 SoC wins over 124 ChaState
            assert r.power_w == -2500  # 802 W: - charging, our sign
            assert (r.max_charge_w, r.max_discharge_w, r.capacity_wh, r.soh_pct) == (6000, 5500, 15000, 97)
            assert r.state == BatteryState.CHARGING
            info = dev.sunspec_info
            m124 = next(b for b in info.blocks if b.model_id == 124).address

            await dev.set_power_w(3000)  # discharge 3 kW = 50 % of WChaMax
            stor, out_rte, in_rte, rvrt = (srv.get(1, m124 + 3)[0], srv.get(1, m124 + 10)[0],
                                           srv.get(1, m124 + 11)[0], srv.get(1, m124 + 13)[0])
            assert (stor, out_rte, in_rte, rvrt) == (0b11, 500, 0, 20)  # InOutWRte_SF -1: 50.0 %
            await dev.set_power_w(-1500)  # charge 1.5 kW = 25 %
            assert (srv.get(1, m124 + 10)[0], srv.get(1, m124 + 11)[0]) == (0, 250)
            with pytest.raises(DeviceError) as too_much:
                await dev.set_power_w(7000)
            assert too_much.value.kind == "invalid_value"

            assert dev.heartbeat_period_s == 5.0
            m802 = next(b for b in info.blocks if b.model_id == 802).address
            assert await dev.kick_heartbeat() == 1
            assert await dev.kick_heartbeat() == 2
            assert srv.get(1, m802 + 17) == [2]

            srv.set(1, m802 + 20, [99])  # 802 State = FAULT
            assert (await dev.read()).state == BatteryState.FAULT
        finally:
            await conn.close()


async def test_sunspec_battery_without_storage_power_fails_clearly():
    image = build_image([(1, {}), (120, {"WRtg": 6000})])
    async with FakeModbusServer({1: unit_with(image)}) as srv:
        conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
        try:
            with pytest.raises(DeviceError) as info:
                await BatteryDevice(battery_cfg(), conn).read()
        finally:
            await conn.close()
    assert info.value.kind == "not_sunspec" and "power_w" in info.value.message


async def _sunspec_battery(srv):
    conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
    dev = BatteryDevice(battery_cfg(), conn, revert_timeout_s=20)
    await dev.read()  # discovery
    m124 = next(b for b in dev.sunspec_info.blocks if b.model_id == 124).address
    return conn, dev, m124


async def test_sunspec_setpoint_reads_base_and_rate_scale_factor_once():
    # Before: 12 requests per set_power_w (each rate write re-read InOutWRte_SF,
    # WChaMax read on its own); now 2 reads, then 4 writes each verified.
    async with FakeModbusServer({1: unit_with(build_image(BATTERY_MODELS))}) as srv:
        conn, dev, m124 = await _sunspec_battery(srv)
        try:
            n = len(srv.requests)
            await dev.set_power_w(-4500)  # charge 4.5 kW = 75 % of WChaMax
            sent = [(r.function_code, r.address - m124) for r in srv.requests[n:]]
            assert (srv.get(1, m124 + 10)[0], srv.get(1, m124 + 11)[0], srv.get(1, m124 + 3)[0]) == (0, 750, 0b11)
        finally:
            await conn.close()
    assert len(sent) == 10
    # WChaMax; WChaMax_SF .. InOutWRte_SF in one request.
    assert sent[:2] == [(3, 0), (3, 16)]
    # Every write (FC6) is followed by its read-back at the same register.
    writes = [(FC_WRITE_SINGLE, off) for off in (10, 11, 13, 3)]  # OutWRte, InWRte, RvrtTms, StorCtl_Mod
    assert sent[2:] == [x for w in writes for x in (w, (3, w[1]))]


async def test_sunspec_write_point_with_known_exponent():
    async with FakeModbusServer({1: unit_with(build_image(BATTERY_MODELS))}) as srv:
        conn, dev, m124 = await _sunspec_battery(srv)
        try:
            client = await dev.client()
            n = len(srv.requests)
            await client.write_point("m124.OutWRte", 12.3, exponent=-1)
            assert srv.get(1, m124 + 10) == [123]
            assert [r.function_code for r in srv.requests[n:]] == [FC_WRITE_SINGLE, 3]  # no scale-factor read
            await client.write_point("m124.OutWRte", 12, exponent=0)  # the given exponent wins over the device's -1
            assert srv.get(1, m124 + 10) == [12]
            n = len(srv.requests)
            errors = []
            for name, exp in [("m124.StorCtl_Mod", 0), ("m124.OutWRte", 11), ("m124.OutWRte", -11),
                              ("m124.OutWRte", 1.5)]:
                with pytest.raises(DeviceError) as info:
                    await client.write_point(name, 1, exponent=exp)
                errors.append(info.value)
            assert len(srv.requests) == n  # refused before sending anything
        finally:
            await conn.close()
    assert all(e.kind == "config" for e in errors)
    assert "no scale factor" in errors[0].message
    assert all("InOutWRte_SF" in e.message and "[-10, 10]" in e.message for e in errors[1:])


async def test_sunspec_setpoint_still_verified_by_read_back():
    async with FakeModbusServer({1: unit_with(build_image(BATTERY_MODELS))}) as srv:
        conn, dev, m124 = await _sunspec_battery(srv)
        srv.units[1].ignore_writes = True
        try:
            with pytest.raises(DeviceError) as info:
                await dev.set_power_w(3000)
        finally:
            await conn.close()
    assert info.value.kind == "write_verify" and "m124.OutWRte" in info.value.message


async def test_sunspec_setpoint_without_rate_scale_factor_writes_nothing():
    async with FakeModbusServer({1: unit_with(build_image(BATTERY_MODELS))}) as srv:
        conn, dev, m124 = await _sunspec_battery(srv)
        srv.set(1, m124 + 23, [0x8000])  # InOutWRte_SF: not implemented
        try:
            with pytest.raises(DeviceError) as info:
                await dev.set_power_w(3000)
        finally:
            await conn.close()
    assert info.value.kind == "config" and "InOutWRte_SF" in info.value.message
    assert srv.count(function_code=FC_WRITE_SINGLE) == 0
