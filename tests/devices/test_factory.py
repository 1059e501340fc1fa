"""build_devices / close_all: one shared connection per endpoint, a whole hall on one port."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.config import DeviceConfig
from devices.configfile import ConfigError
from devices.factory import build_devices, close_all
from devices.natures import BatteryDevice, Device, MeterDevice, PVDevice
from devices.registermap import load_register_map
from devices.sunspec import build_image
from ems.config import load_fleet
from tests.devices.fakes import FakeModbusServer, UnitTables, tables_for

REPO = Path(__file__).resolve().parents[2]


def dev(id_: str, nature: str, transport: dict, map_: str | None = None, **kw) -> DeviceConfig:
    data = {"id": id_, "nature": nature, "transport": transport, **kw}
    if map_:
        data["map"] = map_
    return DeviceConfig.model_validate(data)


def tcp(port: int, unit: int) -> dict:
    return {"kind": "modbus_tcp", "host": "127.0.0.1", "port": port, "unit": unit}


def test_example_fleet_builds_with_one_connection_per_hall():
    fleet = load_fleet(REPO / "config" / "fleet.yaml")
    site = fleet.sites[0]
    devices = build_devices(site.devices)
    assert isinstance(devices["battery"], BatteryDevice)
    assert isinstance(devices["meter"], MeterDevice)
    assert isinstance(devices["pv"], PVDevice)
    assert all(isinstance(d, Device) for d in devices.values())
    assert len({id(d.connection) for d in devices.values()}) == 1  # one port: units 1-3 share it
    assert devices["pv"].regmap is None  # SunSpec: discovered on first read


def test_endpoints_are_shared_only_when_equal():
    devices = build_devices([
        dev("battery", "battery", tcp(15021, 1), "generic_battery", timeout_s=0.5),
        dev("meter", "meter", tcp(15021, 2), "sdm630", timeout_s=2.0),
        dev("pv", "pv", tcp(15022, 3), "sunspec"),
    ])
    assert devices["battery"].connection is devices["meter"].connection
    assert devices["pv"].connection is not devices["battery"].connection
    assert devices["battery"].connection.timeout_s == 2.0  # the most patient device sets the default


def test_map_of_the_wrong_nature_is_a_config_error():
    with pytest.raises(ConfigError, match="device battery: map 'sdm630' is a meter map, the device is a battery"):
        build_devices([dev("battery", "battery", tcp(1502, 1), "sdm630")])


def test_missing_map_file_is_a_config_error(tmp_path: Path):
    with pytest.raises(ConfigError, match="nope.yaml: file not found"):
        build_devices([dev("battery", "battery", tcp(1502, 1), "nope")], tmp_path)


def test_duplicate_ids_and_conflicting_serial_settings():
    with pytest.raises(ValueError, match="duplicate device id 'battery'"):
        build_devices([dev("battery", "battery", tcp(1502, 1), "generic_battery")] * 2)
    rtu = {"kind": "modbus_rtu", "device": "/dev/ttyUSB0", "unit": 1}
    with pytest.raises(ValueError, match="serial line /dev/ttyUSB0 is configured with different settings"):
        build_devices([
            dev("battery", "battery", rtu, "generic_battery"),
            dev("meter", "meter", rtu | {"unit": 2, "baudrate": 19200}, "sdm630"),
        ])
    same = build_devices([
        dev("battery", "battery", rtu, "generic_battery"),
        dev("meter", "meter", rtu | {"unit": 2}, "sdm630"),
    ])
    assert same["battery"].connection is same["meter"].connection
    assert same["battery"].connection.name == "rtu:///dev/ttyUSB0"


async def test_whole_hall_on_one_port():
    battery_map, meter_map = load_register_map("generic_battery"), load_register_map("sdm630")
    units = {
        1: tables_for(battery_map, {"soc": 80, "power": -1000, "capacity": 15000, "setpoint": 0}),
        2: tables_for(meter_map, {"voltage_l1": 101, "total_power": 300, "frequency": 60}),
        3: UnitTables(holding=build_image([(1, {"Mn": "Sim"}), (103, {"W": 2500, "W_SF": 0}),
                                           (120, {"WRtg": 10000})]), strict=True),
    }
    async with FakeModbusServer(units) as srv:
        devices = build_devices([
            dev("battery", "battery", tcp(srv.port, 1), "generic_battery", rated_w=5000),
            dev("meter", "meter", tcp(srv.port, 2), "sdm630"),
            dev("pv", "pv", tcp(srv.port, 3), "sunspec", rated_w=10000),
        ])
        try:
            b, m, p = [await devices[k].read() for k in ("battery", "meter", "pv")]
            await devices["battery"].set_power_w(1500)
            conn = devices["battery"].connection
            assert conn.stats.connects == 1  # three units, one TCP connection
        finally:
            await close_all(devices)
    assert (b.soc_pct, b.power_w) == (pytest.approx(80), -1000)
    assert (m.power_w, m.grid_ok) == (300, True)
    assert (p.power_w, p.rated_w) == (2500, 10000)
    assert not conn.connected
    assert {r.unit for r in srv.requests} == {1, 2, 3}
