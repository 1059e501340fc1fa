"""Read planning: few requests, computed once, adapting to devices that refuse gaps."""

from __future__ import annotations

import pytest

from devices.modbus import ModbusConnection, RegisterClient, plan_reads
from devices.modbus.planner import split_at_gaps
from devices.registermap import Function, RegisterMap, load_register_map
from tests.devices.fakes import FakeModbusServer, tables_for

FC_READ_HOLDING, FC_READ_INPUT = 3, 4


def make_map(points, **kw) -> RegisterMap:
    return RegisterMap.model_validate({"name": "t", "nature": "pv", "points": points, **kw})


def test_merge_rules_gap_and_max_read():
    m = make_map(
        [
            {"name": "a", "field": "power_w", "address": 0, "type": "uint16"},
            {"name": "b", "address": 5, "type": "uint32"},  # gap 4 <= 8: merged
            {"name": "c", "address": 20, "type": "uint16"},  # gap 13 > 8: new request
            {"name": "d", "address": 21, "type": "uint16", "function": "input"},  # other table
        ]
    )
    reqs = plan_reads(m)
    assert [(r.function, r.address, r.count) for r in reqs] == [
        (Function.HOLDING, 0, 7), (Function.HOLDING, 20, 1), (Function.INPUT, 21, 1)]
    assert reqs[0].has_gaps and not reqs[1].has_gaps
    small = make_map(m.model_dump()["points"], max_read=4, max_gap=0)
    assert [(r.address, r.count) for r in plan_reads(small) if r.function == Function.HOLDING] == [
        (0, 1), (5, 2), (20, 1)]


def test_point_longer_than_max_read_is_an_error():
    m = make_map([{"name": "a", "field": "power_w", "address": 0, "type": "string", "words": 20}], max_read=10)
    with pytest.raises(ValueError, match="more than max_read"):
        plan_reads(m)


def test_split_at_gaps():
    m = make_map([{"name": "a", "field": "power_w", "address": 0, "type": "uint16"},
                  {"name": "b", "address": 1, "type": "uint16"},
                  {"name": "c", "address": 6, "type": "uint32"}])
    (req,) = plan_reads(m)
    assert [(r.address, r.count) for r in split_at_gaps(req)] == [(0, 2), (6, 2)]


@pytest.mark.parametrize(
    "map_name, expected",
    [
        # sdm630: voltages 0-5, power 0x34, frequency + energies 0x46-0x4B (input registers)
        ("sdm630", [(FC_READ_INPUT, 0, 6), (FC_READ_INPUT, 0x34, 2), (FC_READ_INPUT, 0x46, 6)]),
        # generic_battery: 0-11 and 20-23 are 8 registers apart (= max_gap): one request
        ("generic_battery", [(FC_READ_HOLDING, 0, 24)]),
    ],
)
async def test_requests_actually_sent_per_poll(map_name, expected):
    m = load_register_map(map_name)
    values = {p.name: 1 for p in m.points} | (
        {"capacity": 15000} if map_name == "generic_battery" else {})
    async with FakeModbusServer({2: tables_for(m, values)}) as srv:
        conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
        try:
            client = RegisterClient(conn, 2, m, device_id="d")
            plan_before = client.plan
            for _ in range(3):
                await client.read_points()
            assert client.plan == plan_before  # planned once, reused
        finally:
            await conn.close()
    sent = [(r.function_code, r.address, r.count) for r in srv.requests]
    assert sent == expected * 3


async def test_device_refusing_gap_reads_gets_gap_free_requests_once():
    m = load_register_map("generic_battery")
    values = {p.name: 1 for p in m.points} | {"capacity": 15000, "watchdog_timeout": 30}
    tables = tables_for(m, values, fill_gaps=False)
    tables.strict = True  # registers 12-19 do not exist on this device
    async with FakeModbusServer({1: tables}) as srv:
        conn = ModbusConnection.tcp("127.0.0.1", srv.port, 2.0)
        try:
            client = RegisterClient(conn, 1, m, device_id="bat")
            first = await client.read_points()
            assert first.values["soc"] == pytest.approx(1.0) and first.values["capacity"] == 15000
            n_first = len(srv.requests)
            await client.read_points()
        finally:
            await conn.close()
    assert n_first == 3  # the refused merged read + two gap-free reads
    assert [(r.address, r.count) for r in srv.requests[n_first:]] == [(0, 12), (20, 4)]
