"""Every register type x word order through a real pymodbus server on loopback."""

from __future__ import annotations

import logging
import math

import pytest

from devices.errors import DeviceError
from devices.modbus import ModbusConnection, RegisterClient
from devices.registermap import RegisterMap
from tests.devices.fakes import FakeModbusServer, UnitTables, tables_for

VALUES = {
    "int16": -1234,
    "uint16": 54321,
    "int32": -123_456_789,
    "uint32": 3_000_000_000,
    "float32": 1234.5,
    "acc32": 4_000_000_000,
    "enum16": 7,
    "bitfield16": 0xA5A5,
    "bitfield32": 0xDEADBEEF,
    "sunssf": -2,
}


def make_map(points: list[dict], nature: str = "pv", **kw) -> RegisterMap:
    return RegisterMap.model_validate({"name": "test", "nature": nature, "points": points, **kw})


def all_types_map() -> RegisterMap:
    points = [{"name": "p", "field": "power_w", "address": 0, "type": "int16", "access": "rw"}]
    address = 10
    for order in ("big", "little"):
        for typ in VALUES:
            words = 2 if typ in ("int32", "uint32", "float32", "acc32", "bitfield32") else 1
            points.append({"name": f"{typ}_{order}", "address": address, "type": typ, "word_order": order,
                           "access": "rw"})
            address += words
    points.append({"name": "text", "address": address, "type": "string", "words": 4, "access": "rw"})
    return make_map(points)


async def test_read_every_type_and_word_order():
    m = all_types_map()
    values = {f"{t}_{o}": v for t, v in VALUES.items() for o in ("big", "little")} | {"p": 1, "text": "HALL-01"}
    async with FakeModbusServer({1: tables_for(m, values)}) as srv:
        conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
        try:
            got = (await RegisterClient(conn, 1, m, device_id="t").read_points()).values
        finally:
            await conn.close()
    for name, expected in values.items():
        assert got[name] == pytest.approx(expected), name


async def test_word_order_on_the_wire_is_independent_of_the_codec():
    # Registers written by hand: a symmetric bug in encode+decode would not show otherwise.
    m = all_types_map()
    addr = {p.name: p.address for p in m.points}
    tables = tables_for(m, {})
    tables.holding.update({addr["uint32_big"]: 0x1234, addr["uint32_big"] + 1: 0x5678,
                           addr["uint32_little"]: 0x5678, addr["uint32_little"] + 1: 0x1234,
                           addr["float32_big"]: 0x4049, addr["float32_big"] + 1: 0x0FDB,  # pi
                           addr["text"]: 0x4142, addr["text"] + 1: 0x4300})  # "ABC\0"
    async with FakeModbusServer({1: tables}) as srv:
        conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
        try:
            got = (await RegisterClient(conn, 1, m, device_id="t").read_points()).values
        finally:
            await conn.close()
    assert got["uint32_big"] == 0x12345678
    assert got["uint32_little"] == 0x12345678
    assert got["float32_big"] == pytest.approx(math.pi, rel=1e-6)
    assert got["text"] == "ABC"


@pytest.mark.parametrize("name", [f"{t}_{o}" for t in VALUES for o in ("big", "little")] + ["text"])
async def test_write_then_read_back_every_type(name):
    m = all_types_map()
    value = "SHELTER" if name == "text" else VALUES[name.rsplit("_", 1)[0]]
    async with FakeModbusServer({1: tables_for(m, {})}) as srv:
        conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
        try:
            client = RegisterClient(conn, 1, m, device_id="t")
            await client.write_point(name, value)
            got = (await client.read_points()).values[name]
        finally:
            await conn.close()
    assert got == pytest.approx(value)


SCALED = [
    {"name": "power", "field": "power_w", "address": 0, "type": "int16", "scale_factor": "w_sf", "unit": "W",
     "access": "rw"},
    {"name": "w_sf", "address": 1, "type": "sunssf"},
    {"name": "energy", "field": "energy_wh", "address": 2, "type": "uint32", "scale": 10, "unit": "Wh"},
    {"name": "temp", "address": 4, "type": "int16", "scale": 0.1, "sign": -1, "unit": "C"},
]


async def test_scale_and_scale_factor_points():
    m = make_map(SCALED)
    tables = UnitTables(holding={0: 1234, 1: (-1) & 0xFFFF, 2: 0, 3: 5000, 4: (-215) & 0xFFFF})
    async with FakeModbusServer({1: tables}) as srv:
        conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
        try:
            client = RegisterClient(conn, 1, m, device_id="t")
            got = (await client.read_points()).values
            assert got["power"] == pytest.approx(123.4)
            assert got["energy"] == 50_000
            assert got["temp"] == pytest.approx(21.5)  # sign -1 applied
            await client.write_point("power", 99.9)  # encoded with the device's SF (-1)
            assert srv.get(1, 0) == [999]
        finally:
            await conn.close()


async def test_sunspec_sentinels_become_none():
    m = make_map(
        [
            {"name": "w", "field": "power_w", "address": 0, "type": "int16", "scale_factor": "w_sf"},
            {"name": "w_sf", "address": 1, "type": "sunssf"},
            {"name": "u16", "address": 2, "type": "uint16"},
            {"name": "acc", "field": "energy_wh", "address": 3, "type": "acc32"},
            {"name": "f", "address": 5, "type": "float32"},
            {"name": "i32", "address": 7, "type": "int32"},
            {"name": "scaled_by_missing_sf", "address": 9, "type": "uint16", "scale_factor": "sf2"},
            {"name": "sf2", "address": 10, "type": "sunssf"},
        ],
        sentinels=True,
    )
    tables = UnitTables(holding={0: 500, 1: 0, 2: 0xFFFF, 3: 0, 4: 0, 5: 0x7FC0, 6: 0, 7: 0x8000, 8: 0,
                                 9: 42, 10: 0x8000})
    async with FakeModbusServer({1: tables}) as srv:
        conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
        try:
            pv = await RegisterClient(conn, 1, m, device_id="t").read_points()
        finally:
            await conn.close()
    assert pv.values["w"] == 500
    for name in ("u16", "acc", "f", "i32", "scaled_by_missing_sf"):
        assert pv.values[name] is None, name
    assert pv.rejected == {}  # not implemented is not implausible


async def test_nan_and_out_of_range_are_rejected_with_one_warning(caplog):
    m = make_map(
        [
            {"name": "w", "field": "power_w", "address": 0, "type": "float32"},
            {"name": "hz", "address": 2, "type": "float32", "range": [40, 70], "unit": "Hz"},
            {"name": "v", "address": 4, "type": "float32"},
        ]
    )
    tables = UnitTables(holding={0: 0x4000, 1: 0, 2: 0x42C8, 3: 0, 4: 0x7FC0, 5: 0})  # 2.0, 100.0, NaN
    async with FakeModbusServer({1: tables}) as srv:
        conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
        client = RegisterClient(conn, 1, m, device_id="meter-x")
        try:
            with caplog.at_level(logging.WARNING, logger="devices.modbus.client"):
                first = await client.read_points()
                second = await client.read_points()
            assert first.values["w"] == 2.0
            assert first.values["hz"] is None and "outside the plausible range [40, 70]" in first.rejected["hz"]
            assert first.values["v"] is None and "not a finite number" in first.rejected["v"]
            assert second.rejected.keys() == {"hz", "v"}
            warnings = [r for r in caplog.records if "rejecting" in r.getMessage()]
            assert len(warnings) == 2  # once per point, not once per poll
            # A NaN in a REQUIRED field fails the whole read.
            srv.set(1, 0, [0x7FC0, 0])
            with pytest.raises(DeviceError) as info:
                await client.read_points()
            assert info.value.kind == "implausible" and "power_w" in info.value.message
        finally:
            await conn.close()
