"""Faults: hung device, exception responses, dropped connections, garbage values, RTU framing."""

from __future__ import annotations

import asyncio
import time

import pytest

from devices.config import DeviceConfig
from devices.errors import DeviceError
from devices.modbus import ModbusConnection, RegisterClient
from devices.natures import BatteryDevice, MeterDevice
from devices.readings import BatteryState
from devices.registermap import Function, load_register_map
from tests.devices.fakes import FakeModbusServer, SilentServer, UnitTables, tables_for, wait_until
from tests.netutil import free_port

BATTERY_VALUES = {"soc": 55, "soh": 99, "power": 1200, "max_charge": 5000, "max_discharge": 5000,
                  "capacity": 15000, "state": 3, "fault_code": 0, "setpoint": 1200, "heartbeat": 0,
                  "watchdog_timeout": 30}
METER_VALUES = {"voltage_l1": 101.2, "voltage_l2": 101.0, "voltage_l3": 0.0, "total_power": 850.5,
                "frequency": 60.0, "import_energy": 1_234_500, "export_energy": 12_250}


def cfg(nature: str, map_name: str, port: int, unit: int = 1, **kw) -> DeviceConfig:
    return DeviceConfig.model_validate({"id": nature, "nature": nature, "map": map_name,
                                        "transport": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": port,
                                                      "unit": unit}, **kw})


async def test_hung_device_times_out_after_one_fresh_retry():
    async with SilentServer() as silent:
        conn = ModbusConnection.tcp("127.0.0.1", silent.port, 0.3)
        started = time.monotonic()
        with pytest.raises(DeviceError) as info:
            await conn.read(Function.HOLDING, 0, 2, 1, device_id="battery", what="soc")
        elapsed = time.monotonic() - started
        await conn.close()
    err = info.value
    assert err.kind == "timeout" and err.device_id == "battery"
    assert "unit 1 read holding 0+2 (soc)" in err.message and "0.3 s" in err.message
    assert silent.connections == 2  # the retry went out on a fresh connection
    assert 0.5 < elapsed < 5.0


async def test_nothing_listening_is_a_connection_error():
    conn = ModbusConnection.tcp("127.0.0.1", free_port(), 0.5)
    with pytest.raises(DeviceError) as info:
        await conn.read(Function.INPUT, 0x34, 2, 2, device_id="meter")
    assert info.value.kind == "connection" and "tcp://127.0.0.1" in info.value.message
    assert conn.stats.connects == 2


async def test_exception_response_names_register_and_is_not_retried():
    async with FakeModbusServer({1: UnitTables(holding={0: 1, 1: 2}, strict=True)}) as srv:
        conn = ModbusConnection.tcp("127.0.0.1", srv.port, 1.0)
        try:
            with pytest.raises(DeviceError) as info:
                await conn.read(Function.HOLDING, 100, 2, 1, device_id="battery", what="setpoint")
            assert await conn.read(Function.HOLDING, 0, 2, 1, device_id="battery") == [1, 2]
        finally:
            await conn.close()
    err = info.value
    assert err.kind == "exception_response"
    assert "read holding 100+2 (setpoint)" in err.message and "exception 2 (illegal data address)" in err.message
    assert srv.count(function_code=3) == 2  # one refused, one good: no retry of a real answer
    assert conn.stats.connects == 1  # an exception answer keeps the connection


async def test_connection_dropped_mid_run_then_server_back():
    m = load_register_map("generic_battery")
    units = {1: tables_for(m, BATTERY_VALUES)}
    port = free_port()
    srv = await FakeModbusServer(units, port=port).start()
    conn = ModbusConnection.tcp("127.0.0.1", port, 0.5)
    dev = BatteryDevice(cfg("battery", "generic_battery", port, rated_w=5000), conn, m)
    try:
        assert (await dev.read()).power_w == 1200
        await srv.stop()
        with pytest.raises(DeviceError) as info:
            await dev.read()
        assert info.value.kind in ("connection", "timeout")
        srv = await FakeModbusServer(units, port=port).start()
        r = await dev.read()
        assert r.soc_pct == pytest.approx(55) and r.state == BatteryState.DISCHARGING
        assert conn.stats.connects >= 2
    finally:
        await srv.stop()
        await conn.close()


async def test_meter_reading_and_grid_loss_derivation():
    m = load_register_map("sdm630")
    async with FakeModbusServer({2: tables_for(m, METER_VALUES)}) as srv:
        conn = ModbusConnection.tcp("127.0.0.1", srv.port, 1.0)
        try:
            dev = MeterDevice(cfg("meter", "sdm630", srv.port, unit=2), conn, m)
            r = await dev.read()
            assert r.power_w == pytest.approx(850.5) and r.import_wh == pytest.approx(1_234_500)
            assert r.export_wh == pytest.approx(12_250) and r.frequency_hz == 60 and r.grid_ok
            assert r.extra["voltage_l2"] == pytest.approx(101.0)
            # Outage: the meter sees no voltage and no frequency.
            srv.set(2, 0, [0, 0], Function.INPUT)
            srv.set(2, 0x46, [0, 0], Function.INPUT)
            r = await dev.read()
            assert not r.grid_ok and r.voltage_v == 0 and r.frequency_hz == 0
            # Frequency present but far off nominal (an islanded generator drifting).
            srv.set(2, 0, [0x42CA, 0], Function.INPUT)  # 101 V
            srv.set(2, 0x46, [0x4220, 0], Function.INPUT)  # 40 Hz
            assert not (await dev.read()).grid_ok
        finally:
            await conn.close()


async def test_garbage_values_reject_or_fail_cleanly():
    m = load_register_map("generic_battery")
    values = BATTERY_VALUES | {"soc": 55}
    async with FakeModbusServer({1: tables_for(m, values)}) as srv:
        conn = ModbusConnection.tcp("127.0.0.1", srv.port, 1.0)
        dev = BatteryDevice(cfg("battery", "generic_battery", srv.port, rated_w=5000), conn, m)
        try:
            srv.set(1, 1, [1400])  # SoH 140 %: optional field -> dropped, read goes on
            r = await dev.read()
            assert r.soh_pct is None and r.soc_pct == pytest.approx(55)
            srv.set(1, 2, [0, 9000])  # 9 kW on a 5 kW inverter (> 1.2 x rated): required -> read fails
            with pytest.raises(DeviceError) as info:
                await dev.read()
            assert info.value.kind == "implausible" and "beyond 1.2 x rated 5000 W" in info.value.message
            srv.set(1, 2, [0, 5900])  # within the 20 % margin
            srv.set(1, 0, [1400])  # SoC 140 %: required -> fails, naming the range
            with pytest.raises(DeviceError, match=r"soc_pct missing: soc: 140 % is outside"):
                await dev.read()
            srv.set(1, 0, [556])
            r = await dev.read()
            assert (r.soc_pct, r.power_w) == (pytest.approx(55.6), 5900)
            srv.set(1, 10, [77])  # unknown state code -> UNKNOWN, not a crash
            assert (await dev.read()).state == BatteryState.UNKNOWN
        finally:
            await conn.close()


async def test_modbus_rtu_framing_over_a_socket_line():
    m = load_register_map("generic_battery")
    async with FakeModbusServer({5: tables_for(m, BATTERY_VALUES)}, rtu=True) as srv:
        conn = ModbusConnection.rtu(f"socket://127.0.0.1:{srv.port}", baudrate=19200, timeout_s=1.0)
        try:
            client = RegisterClient(conn, 5, m, device_id="rtu-bat")
            for _ in range(20):  # the serial listener may need a moment
                try:
                    values = (await client.read_points()).values
                    break
                except DeviceError:
                    await asyncio.sleep(0.1)
            else:
                pytest.fail("RTU server never answered")
            assert values["power"] == 1200
            await client.write_point("setpoint", -700)
            assert srv.get(5, 20, 2) == [0xFFFF, (-700) & 0xFFFF]
        finally:
            await conn.close()


async def test_cancelled_request_spoils_the_connection():
    async with SilentServer() as silent:
        conn = ModbusConnection.tcp("127.0.0.1", silent.port, 5.0)
        task = asyncio.create_task(conn.read(Function.HOLDING, 0, 1, 1, device_id="battery"))
        await wait_until(lambda: conn.connected)  # connected, request under way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not conn.connected  # a late answer can never be read as the next one's
        await conn.close()


def test_quiet_library_logs():
    import logging

    from devices.modbus import quiet_library_logs

    quiet_library_logs()
    try:
        assert not logging.getLogger("pymodbus.logging").isEnabledFor(logging.WARNING)
    finally:
        logging.getLogger("pymodbus").setLevel(logging.NOTSET)
        logging.getLogger("pymodbus.logging").setLevel(logging.NOTSET)
