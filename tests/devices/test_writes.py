"""Writes with read-back verification, heartbeat, bad setpoints."""

from __future__ import annotations

import pytest

from devices.config import DeviceConfig
from devices.errors import DeviceError
from devices.modbus import ModbusConnection, RegisterClient
from devices.natures import BatteryDevice
from devices.registermap import load_register_map
from tests.devices.fakes import FakeModbusServer, tables_for

FC_WRITE_SINGLE, FC_WRITE_MULTIPLE = 6, 16

BATTERY_VALUES = {"soc": 55, "soh": 99, "power": 0, "max_charge": 5000, "max_discharge": 5000,
                  "capacity": 15000, "state": 1, "fault_code": 0, "setpoint": 0, "heartbeat": 0,
                  "watchdog_timeout": 30}


def battery_cfg(port: int) -> DeviceConfig:
    return DeviceConfig.model_validate({"id": "battery", "nature": "battery", "map": "generic_battery",
                                        "rated_w": 5000, "transport": {"kind": "modbus_tcp", "host": "127.0.0.1",
                                                                      "port": port, "unit": 1}})


@pytest.fixture
async def battery_server():
    m = load_register_map("generic_battery")
    async with FakeModbusServer({1: tables_for(m, BATTERY_VALUES)}) as srv:
        yield srv, m


async def test_setpoint_is_written_fc16_and_verified(battery_server):
    srv, m = battery_server
    conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
    try:
        dev = BatteryDevice(battery_cfg(srv.port), conn, m)
        await dev.set_power_w(-3200.0)  # charge 3.2 kW
        assert srv.get(1, 20, 2) == [0xFFFF, (-3200) & 0xFFFF]
        fcs = [r.function_code for r in srv.requests]
        assert fcs == [FC_WRITE_MULTIPLE, 3]  # int32 -> FC16, then read-back
        await dev.set_power_w(2500)
        assert (await RegisterClient(conn, 1, m, device_id="x").read_named(["setpoint"])) == {"setpoint": 2500}
    finally:
        await conn.close()


async def test_single_register_uses_fc6_and_heartbeat_increments(battery_server):
    srv, m = battery_server
    conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
    try:
        dev = BatteryDevice(battery_cfg(srv.port), conn, m)
        assert dev.heartbeat_period_s == 5
        srv.set(1, 22, [41])  # what a previous gateway run left in the register
        values = [await dev.kick_heartbeat() for _ in range(3)]
        # The counter continues from the register, so the first kick is a real change.
        assert values == [42, 43, 44] and srv.get(1, 22) == [44]
        assert [r.function_code for r in srv.requests][:2] == [3, FC_WRITE_SINGLE]
    finally:
        await conn.close()


async def test_heartbeat_wraps_at_16_bits(battery_server):
    srv, m = battery_server
    conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
    try:
        dev = BatteryDevice(battery_cfg(srv.port), conn, m)
        srv.set(1, 22, [0xFFFF])
        assert await dev.kick_heartbeat() == 0
    finally:
        await conn.close()


async def test_server_that_ignores_writes_gives_write_verify(battery_server):
    srv, m = battery_server
    srv.units[1].ignore_writes = True
    conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
    try:
        dev = BatteryDevice(battery_cfg(srv.port), conn, m)
        with pytest.raises(DeviceError) as info:
            await dev.set_power_w(1000)
    finally:
        await conn.close()
    err = info.value
    assert err.kind == "write_verify" and err.device_id == "battery"
    assert "setpoint (register 20)" in err.message and "1000" in err.message and "read back 0" in err.message


@pytest.mark.parametrize(
    "value, kind, words",
    [
        (float("nan"), "invalid_value", "finite"),
        (float("inf"), "invalid_value", "finite"),
        (250_000, "invalid_value", "outside the allowed range"),
    ],
)
async def test_bad_setpoints_are_refused_before_any_write(battery_server, value, kind, words):
    srv, m = battery_server
    conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
    try:
        dev = BatteryDevice(battery_cfg(srv.port), conn, m)
        with pytest.raises(DeviceError) as info:
            await dev.set_power_w(value)
    finally:
        await conn.close()
    assert info.value.kind == kind and words in info.value.message
    assert srv.count(function_code=FC_WRITE_MULTIPLE) == 0


async def test_read_only_and_unknown_points_cannot_be_written(battery_server):
    srv, m = battery_server
    conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
    try:
        client = RegisterClient(conn, 1, m, device_id="battery")
        with pytest.raises(DeviceError, match="read-only") as ro:
            await client.write_point("soc", 50)
        with pytest.raises(DeviceError, match="no point 'nope'") as unknown:
            await client.write_point("nope", 1)
    finally:
        await conn.close()
    assert ro.value.kind == unknown.value.kind == "config"
    assert srv.requests == []


async def test_meter_map_without_setpoint_refuses_set_power():
    cfg = DeviceConfig.model_validate({"id": "bat2", "nature": "battery", "map": "nosetpoint",
                                       "transport": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": 1}})
    from devices.registermap import RegisterMap

    m = RegisterMap.model_validate({"name": "nosetpoint", "nature": "battery", "points": [
        {"name": "soc", "field": "soc_pct", "address": 0, "type": "uint16"},
        {"name": "p", "field": "power_w", "address": 1, "type": "int16"}]})
    async with FakeModbusServer({1: tables_for(m, {"soc": 50, "p": 0})}) as srv:
        conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
        try:
            with pytest.raises(DeviceError) as info:
                await BatteryDevice(cfg, conn, m).set_power_w(100)
            assert await BatteryDevice(cfg, conn, m).kick_heartbeat() is None
        finally:
            await conn.close()
    assert info.value.kind == "config" and "no setpoint_w" in info.value.message
