"""The simulator over Modbus TCP on loopback, read and written by a plain pymodbus client.

Values are decoded with the project's codec and the SAME register maps the
gateway uses, and the PV inverter is found by the gateway's SunSpec discovery.
"""

from __future__ import annotations

import asyncio
import socket
from datetime import timedelta

import pytest
from pymodbus.client import AsyncModbusTcpClient

from devices import codec, sunspec
from devices.errors import DeviceError
from devices.readings import BatteryState, Nature
from devices.registermap import Function, RegisterMap, load_register_map
from devices.simulator.clock import AcceleratedClock, ManualClock
from devices.simulator.server import FleetSimulator, HallSimulator, SimulatorError
from ems.config import FleetConfig, FleetSpec
from tests.devices.simulator.helpers import JUNE_NIGHT, JUNE_NOON, make_site
from tests.netutil import free_port

BATTERY_MAP = load_register_map("generic_battery")
METER_MAP = load_register_map("sdm630")
ILLEGAL_ADDRESS, ILLEGAL_VALUE = 2, 3


@pytest.fixture
async def sim(clock):
    port = free_port()
    hall = HallSimulator(make_site(port), clock, port=port)
    await hall.start()
    yield hall
    await hall.stop()


async def connect(port: int) -> AsyncModbusTcpClient:
    client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=5, retries=1)
    assert await client.connect(), f"cannot connect to 127.0.0.1:{port}"
    return client


@pytest.fixture
async def client(sim):
    c = await connect(sim.port)
    yield c
    c.close()


async def read_map(client: AsyncModbusTcpClient, regmap: RegisterMap, unit: int) -> dict[str, object]:
    """Every point of ``regmap`` decoded (DecodeError text for implausible values)."""
    out: dict[str, object] = {}
    for table in Function:
        pts = [p for p in regmap.points if p.function == table]
        if not pts:
            continue
        first = min(p.address for p in pts)
        count = max(p.address + p.word_count for p in pts) - first
        read = client.read_holding_registers if table == Function.HOLDING else client.read_input_registers
        rr = await read(first, count=count, device_id=unit)
        assert not rr.isError(), rr
        sfs = {p.name: codec.decode(regmap, p, rr.registers[p.address - first: p.address - first + 1])
               for p in pts if p.type.value == "sunssf"}
        for p in pts:
            words = rr.registers[p.address - first: p.address - first + p.word_count]
            try:
                out[p.name] = codec.decode(regmap, p, words, sfs.get(p.scale_factor) if p.scale_factor else None)
            except codec.DecodeError as exc:
                out[p.name] = exc
    return out


class ClientConnection:
    """The read interface :func:`devices.sunspec.discover` needs, over a plain pymodbus client."""

    def __init__(self, client: AsyncModbusTcpClient):
        self.client = client

    async def read(self, function, address, count, unit, device_id="dev"):
        read = self.client.read_holding_registers if function == Function.HOLDING else self.client.read_input_registers
        rr = await read(address, count=count, device_id=unit)
        if rr.isError():
            raise DeviceError(device_id, "exception_response", f"exception {rr.exception_code} at {address}")
        return rr.registers


async def write_point(client, regmap: RegisterMap, name: str, value, unit: int = 1):
    p = regmap.by_name[name]
    return await client.write_registers(p.address, codec.encode(regmap, p, value), device_id=unit)


def advance(sim: HallSimulator, seconds: float, kick_every: float | None = None) -> None:
    """Move the manual clock, kicking the heartbeat like a gateway would, and step the physics."""
    clock: ManualClock = sim.clock
    done = 0.0
    while done < seconds:
        dt = min(seconds - done, kick_every or seconds)
        clock.advance(dt)
        done += dt
        if kick_every:
            sim.physics.kick_heartbeat(sim.physics.state.heartbeat + 1)
    sim.physics.step()


async def test_battery_registers_hold_the_physics_values(sim, client):
    advance(sim, 5)
    values = await read_map(client, BATTERY_MAP, 1)
    s = sim.physics.state
    assert values["soc"] == pytest.approx(s.soc_pct, abs=0.05)
    assert values["power"] == round(s.battery_power_w)
    assert values["capacity"] == 15000
    assert values["max_charge"] == 4000 and values["max_discharge"] == 4000
    assert values["state"] == BatteryState.IDLE
    assert values["fault_code"] == 0 and values["setpoint"] == 0
    assert values["watchdog_timeout"] == 30
    assert values["soh"] == pytest.approx(100.0)


async def test_meter_input_registers_hold_the_physics_values(sim, client):
    sim.physics.set_setpoint(-1000)
    advance(sim, 120, kick_every=10)
    values = await read_map(client, METER_MAP, 2)
    s = sim.physics.state
    assert values["total_power"] == pytest.approx(s.grid_power_w, rel=1e-6)
    assert s.grid_power_w == pytest.approx(s.hall_load_w - s.pv_power_w + 1000, abs=1e-6)
    assert values["import_energy"] == pytest.approx(s.import_wh, rel=1e-6) and s.import_wh > 0
    assert values["export_energy"] == pytest.approx(s.export_wh, abs=1e-6)
    assert values["voltage_l1"] == pytest.approx(101, abs=1.5)
    assert values["voltage_l2"] == pytest.approx(101, abs=1.5)
    assert values["frequency"] == pytest.approx(60, abs=0.05)
    # A meter's values live in input registers only.
    rr = await client.read_holding_registers(0x34, count=2, device_id=2)
    assert rr.isError() and rr.exception_code == ILLEGAL_ADDRESS


async def test_pv_inverter_is_found_by_sunspec_discovery():
    clock = ManualClock(JUNE_NOON)
    port = free_port()
    async with HallSimulator(make_site(port, simulator={"cloud_factor": 0.0}), clock, port=port) as sim:
        client = await connect(port)
        try:
            rr = await client.read_holding_registers(40000, count=2, device_id=3)
            assert rr.registers == [0x5375, 0x6E53]  # 'SunS'
            for base in (0, 50000):
                rr = await client.read_holding_registers(base, count=2, device_id=3)
                assert rr.isError()
            info = await sunspec.discover(ClientConnection(client), 3, Nature.PV)
            assert info.base == 40000 and info.model_ids == (1, 103, 120)
            assert info.manufacturer == "shelter-ems" and info.serial == "hall-t-pv"
            values = await read_map(client, info.regmap, 3)
            s = sim.physics.state
            assert s.pv_power_w > 7000  # clear June noon on 10 kW
            assert values["m103.W"] == pytest.approx(s.pv_power_w, abs=0.5)
            assert values["m103.WH"] == pytest.approx(10_000_000 + s.pv_energy_wh, abs=0.5)
            assert values["m103.Hz"] == pytest.approx(60, abs=0.05)
            assert values["m103.St"] == 4  # MPPT
            assert values["m120.WRtg"] == 10000
            assert values["m103.TmpCab"] is None  # not implemented: sentinel
        finally:
            client.close()


async def test_written_setpoint_is_followed(sim, client):
    rr = await write_point(client, BATTERY_MAP, "heartbeat", 1)
    assert not rr.isError()
    rr = await write_point(client, BATTERY_MAP, "setpoint", -2500)
    assert not rr.isError()
    assert sim.physics.state.setpoint_w == -2500
    advance(sim, 30, kick_every=10)
    values = await read_map(client, BATTERY_MAP, 1)
    assert values["setpoint"] == -2500
    assert values["power"] == -2500
    assert values["state"] == BatteryState.CHARGING
    assert values["heartbeat"] == 4
    assert sim.physics.state.soc_pct > 50


async def test_single_register_write_of_the_heartbeat(sim, client):
    rr = await client.write_register(BATTERY_MAP.by_name["heartbeat"].address, 77, device_id=1)
    assert not rr.isError()
    assert sim.physics.state.heartbeat == 77


async def test_refused_writes_change_nothing(sim, client):
    before = sim.physics.state
    rr = await client.write_register(0, 500, device_id=1)  # soc is read-only
    assert rr.isError() and rr.exception_code == ILLEGAL_ADDRESS
    rr = await write_point(client, BATTERY_MAP, "setpoint", 300_000)  # beyond the plausible range
    assert rr.isError() and rr.exception_code == ILLEGAL_VALUE
    rr = await client.write_register(BATTERY_MAP.by_name["watchdog_timeout"].address, 0, device_id=1)
    assert rr.isError() and rr.exception_code == ILLEGAL_VALUE
    rr = await client.write_registers(19, [0, 0, 100], device_id=1)  # 19 is no point
    assert rr.isError() and rr.exception_code == ILLEGAL_ADDRESS
    rr = await client.write_register(0x34, 1, device_id=2)  # meter: input registers only
    assert rr.isError() and rr.exception_code == ILLEGAL_ADDRESS
    assert sim.physics.state.setpoint_w == before.setpoint_w == 0
    assert sim.physics.watchdog_timeout_s == 30
    values = await read_map(client, BATTERY_MAP, 1)
    assert values["setpoint"] == 0 and values["watchdog_timeout"] == 30


async def test_one_write_across_setpoint_heartbeat_and_timeout(sim, client):
    words = (codec.encode(BATTERY_MAP, BATTERY_MAP.by_name["setpoint"], 1200)
             + codec.encode(BATTERY_MAP, BATTERY_MAP.by_name["heartbeat"], 9)
             + codec.encode(BATTERY_MAP, BATTERY_MAP.by_name["watchdog_timeout"], 120))
    rr = await client.write_registers(20, words, device_id=1)
    assert not rr.isError()
    assert sim.physics.state.setpoint_w == 1200 and sim.physics.state.heartbeat == 9
    assert sim.physics.watchdog_timeout_s == 120


async def test_watchdog_reverts_setpoint_register_to_idle(sim, client):
    await write_point(client, BATTERY_MAP, "watchdog_timeout", 5)
    await write_point(client, BATTERY_MAP, "heartbeat", 3)
    await write_point(client, BATTERY_MAP, "setpoint", 1000)
    advance(sim, 4)
    assert (await read_map(client, BATTERY_MAP, 1))["power"] == pytest.approx(1000, abs=150)  # 0.5 s lag
    advance(sim, 2)
    assert (await read_map(client, BATTERY_MAP, 1))["setpoint"] == 0  # tripped at 5 s
    advance(sim, 10)
    advance(sim, 1)  # the lag has settled
    values = await read_map(client, BATTERY_MAP, 1)
    assert values["setpoint"] == 0 and values["power"] == 0
    assert values["state"] == BatteryState.IDLE


async def test_outage_shows_on_meter_and_battery(sim, client):
    sim.physics.set_grid(False)
    advance(sim, 60)
    meter = await read_map(client, METER_MAP, 2)
    assert meter["voltage_l1"] == 0 and meter["frequency"] == 0 and meter["total_power"] == 0
    battery = await read_map(client, BATTERY_MAP, 1)
    assert battery["power"] == round(sim.physics.state.critical_load_w)  # grid-forming at night
    assert battery["state"] == BatteryState.DISCHARGING


async def test_battery_fault_registers(sim, client):
    sim.physics.inject_battery_fault(0x0203)
    advance(sim, 1)
    values = await read_map(client, BATTERY_MAP, 1)
    assert values["state"] == BatteryState.FAULT and values["fault_code"] == 0x0203
    assert values["power"] == 0 and values["max_discharge"] == 0


async def test_garbage_soc_is_served_raw(sim, client):
    sim.physics.serve_garbage("battery", "soc", 140.0)
    advance(sim, 1)
    rr = await client.read_holding_registers(0, count=1, device_id=1)
    assert rr.registers == [1400]
    assert isinstance((await read_map(client, BATTERY_MAP, 1))["soc"], codec.DecodeError)


async def test_frozen_meter_keeps_its_last_values(sim, client):
    first = await read_map(client, METER_MAP, 2)
    sim.physics.freeze_registers("meter")
    sim.physics.set_setpoint(3000)
    advance(sim, 600, kick_every=10)
    frozen = await read_map(client, METER_MAP, 2)
    assert frozen == first
    assert (await read_map(client, BATTERY_MAP, 1))["power"] == 3000  # the battery is not frozen
    sim.physics.freeze_registers("meter", False)
    advance(sim, 1)
    assert (await read_map(client, METER_MAP, 2))["total_power"] != first["total_power"]


async def test_sentinel_values(sim, client):
    sim.physics.serve_sentinels("battery")
    sim.physics.serve_sentinels("pv")
    advance(sim, 1)
    rr = await client.read_holding_registers(0, count=4, device_id=1)
    assert rr.registers == [0xFFFF, 0xFFFF, 0x8000, 0x0000]  # soc, soh (uint16), power (int32)
    info = await sunspec.discover(ClientConnection(client), 3, Nature.PV)
    values = await read_map(client, info.regmap, 3)
    assert values["m103.W"] is None and values["m103.WH"] is None and values["m120.WRtg"] is None


async def test_stop_and_restart_on_the_same_port(sim, client):
    await write_point(client, BATTERY_MAP, "setpoint", 700)
    soc_before = (await read_map(client, BATTERY_MAP, 1))["soc"]
    await asyncio.wait_for(sim.stop(), timeout=10)  # a connected client must not hold up the stop
    assert not sim.running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", sim.port), timeout=2).close()
    await sim.stop()  # twice is fine
    for _ in range(3):  # the port is reusable at once, again and again
        await sim.start()
        assert sim.running
        again = await connect(sim.port)
        try:
            values = await read_map(again, BATTERY_MAP, 1)
        finally:
            again.close()
        assert values["soc"] == soc_before and values["setpoint"] == 700  # the hall kept its state
        await sim.stop()


async def test_port_in_use_is_a_clear_error(clock):
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        hall = HallSimulator(make_site(port), clock, port=port)
        with pytest.raises(SimulatorError, match=str(port)):
            await hall.start()
        assert not hall.running


async def test_accelerated_clock_drives_the_physics():
    clock = AcceleratedClock(JUNE_NIGHT, speed=3600)
    port = free_port()
    async with HallSimulator(make_site(port), clock, port=port) as sim:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 20
        while sim.physics.state.time - JUNE_NIGHT < timedelta(minutes=10):
            assert loop.time() < deadline, "the simulated time did not advance"
            await asyncio.sleep(0.05)
        client = await connect(port)
        try:
            meter = await read_map(client, METER_MAP, 2)
        finally:
            client.close()
        assert meter["import_energy"] > 0  # the hall used energy over simulated minutes


async def test_fleet_simulator_serves_every_simulated_site(clock):
    base = free_port()
    other = free_port()
    sites = [make_site(base).model_copy(update={"id": "hall-a"}),
             make_site(other).model_copy(update={"id": "hall-b"}),
             make_site(other).model_copy(update={"id": "hall-c", "simulator": None})]
    fleet = FleetConfig.model_construct(fleet=FleetSpec(name="t"), sites=sites)
    offset = 0
    sim = FleetSimulator(fleet, clock, port_offset=offset)
    assert set(sim.halls) == {"hall-a", "hall-b"}
    with pytest.raises(KeyError, match="hall-a"):
        sim.hall("hall-c")
    async with sim:
        for hall_id, port in (("hall-a", base), ("hall-b", other)):
            assert sim.hall(hall_id).port == port
            c = await connect(port)
            try:
                assert (await read_map(c, BATTERY_MAP, 1))["capacity"] == 15000
            finally:
                c.close()
    for port in (base, other):
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


async def test_fleet_start_failure_stops_the_started_halls(clock):
    free = free_port()
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        sites = [make_site(free).model_copy(update={"id": "hall-a"}),
                 make_site(taken).model_copy(update={"id": "hall-b"})]
        sim = FleetSimulator(FleetConfig.model_construct(fleet=FleetSpec(name="t"), sites=sites), clock)
        with pytest.raises(SimulatorError, match="hall-b"):
            await sim.start()
        assert not sim.hall("hall-a").running
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", free), timeout=2).close()


def test_port_offset(clock):
    sites = [make_site(20000).model_copy(update={"id": "hall-a"})]
    sim = FleetSimulator(FleetConfig.model_construct(fleet=FleetSpec(name="t"), sites=sites), clock, port_offset=7)
    assert sim.hall("hall-a").port == 20007


def test_unservable_sites_are_refused(clock):
    with pytest.raises(SimulatorError, match="no 'simulator:' section"):
        HallSimulator(make_site(15000, simulator=None), clock)
    sunspec_battery = make_site(15000)
    devices = list(sunspec_battery.devices)
    devices[0] = devices[0].model_copy(update={"map": "sunspec"})
    with pytest.raises(SimulatorError, match="battery"):
        HallSimulator(sunspec_battery.model_copy(update={"devices": devices}), clock)
    with pytest.raises(ValueError, match="tick_s"):
        HallSimulator(make_site(15000), clock, tick_s=0)


def test_non_modbus_devices_are_not_simulated(clock):
    site = make_site(15000)
    mqtt_pv = site.devices[2].model_validate(
        {"id": "pv", "nature": "pv", "transport": {"kind": "mqtt", "topic": "hall/pv", "fields": {"power_w": "p"}}})
    sim = HallSimulator(site.model_copy(update={"devices": [*site.devices[:2], mqtt_pv]}), clock)
    assert set(sim.units) == {1, 2}


async def test_garbage_that_does_not_fit_serves_not_implemented(sim, client, caplog):
    sim.physics.serve_garbage("battery", "soc", -5.0)  # a uint16 cannot hold it
    advance(sim, 1)
    rr = await client.read_holding_registers(0, count=2, device_id=1)
    assert rr.registers[0] == 0xFFFF and rr.registers[1] == 1000
    assert "cannot encode soc" in caplog.text


async def test_a_simulator_bug_answers_device_failure_and_the_server_lives_on(sim, client, monkeypatch):
    image = sim.units[1]

    def broken() -> None:
        raise RuntimeError("boom")

    monkeypatch.setattr(image, "refresh", broken)
    rr = await client.read_holding_registers(0, count=2, device_id=1)
    assert rr.isError() and rr.exception_code == 4  # device failure
    monkeypatch.undo()
    rr = await client.read_holding_registers(0, count=2, device_id=1)
    assert not rr.isError()
