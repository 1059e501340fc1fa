"""ECHONET Lite adapters built by the device factory against simulated halls (same physics as Modbus)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from devices.config import DeviceConfig
from devices.errors import DeviceError
from devices.factory import build_devices, check_devices, close_all
from devices.readings import BatteryState
from devices.simulator.server import HallSimulator
from tests.devices.echonet.spec import Responder, serve
from tests.devices.simulator.helpers import make_site
from tests.netutil import free_port


def echonet_devices(port: int) -> list[dict]:
    t = {"kind": "echonet_lite", "host": "127.0.0.1", "port": port, "local_port": 0}
    return [{"id": "battery", "nature": "battery", "rated_w": 4000, "timeout_s": 0.2, "transport": t},
            {"id": "meter", "nature": "meter", "timeout_s": 0.2, "transport": t},
            {"id": "pv", "nature": "pv", "rated_w": 10000, "timeout_s": 0.2, "transport": t}]


@pytest.fixture
async def two_halls(clock):
    """Two halls on one machine, each its own UDP port (hall a: ECHONET Lite only, hall b: the same)."""
    sims, devices = [], []
    for seed in (1, 2):
        modbus_port, udp_port = free_port(), free_port()
        site = make_site(modbus_port, devices=echonet_devices(udp_port), simulator={"seed": seed})
        sim = HallSimulator(site, clock, tick_s=60)
        await sim.start()
        sims.append(sim)
        devices.append(build_devices(site.devices, clock=clock.now))
    yield sims, devices
    for sim, devs in zip(sims, devices):
        await close_all(devs)
        await sim.stop()


async def test_readings_and_setpoint_from_the_same_physics(two_halls, clock):
    sims, devices = two_halls
    for sim, devs in zip(sims, devices):
        s = sim.physics.step()
        bat, meter, pv = (await devs["battery"].read(), await devs["meter"].read(), await devs["pv"].read())
        assert bat.soc_pct == pytest.approx(s.soc_pct, abs=0.01)
        assert meter.power_w == pytest.approx(s.grid_power_w, abs=1) and meter.grid_ok
        assert pv.power_w == pytest.approx(s.pv_power_w, abs=1) and pv.power_w >= 0
        assert sim.echonet_nodes and not sim.units  # no Modbus server for an ECHONET-only hall
    await devices[0]["battery"].set_power_w(2000)
    await devices[1]["battery"].set_power_w(-1000)
    clock.advance(20)  # well past the battery's 0.5 s lag, within the 30 s watchdog
    for sim in sims:
        sim.physics.step()
    clock.advance(1)  # the average over this step no longer holds the lag's start
    assert sims[0].physics.step().battery_power_w == pytest.approx(2000, abs=1)
    assert sims[1].physics.step().battery_power_w == pytest.approx(-1000, abs=1)
    r = await devices[0]["battery"].read()
    assert r.power_w == pytest.approx(2000, abs=1) and r.state == BatteryState.DISCHARGING


async def test_fault_outage_and_lost_datagrams(two_halls):
    sims, devices = two_halls
    devs, physics, node = devices[0], sims[0].physics, sims[0].echonet_nodes[0]
    physics.inject_battery_fault()
    r = await devs["battery"].read()
    assert r.faulted and r.state == BatteryState.FAULT and r.max_charge_w == 0.0
    physics.set_grid(False)
    # The meter refuses its measured values (no power behind route B); the battery says "independent" (0xDB).
    r = await devs["meter"].read()
    assert not r.grid_ok and r.power_w == 0.0 and "0xE7" in r.extra["echonet.meter"]
    devs["meter"].grid_probe = None  # without a battery to ask, the meter's failure is what is reported
    with pytest.raises(DeviceError) as err:
        await devs["meter"].read()
    assert err.value.kind == "exception_response" and "0xE7" in str(err.value)
    physics.set_grid(True)
    assert (await devs["meter"].read()).grid_ok
    node.drop = 1  # one lost datagram: the retry gets the answer
    assert (await devs["pv"].read()).power_w >= 0
    node.drop = 10
    with pytest.raises(DeviceError) as err:
        await devs["pv"].read()
    assert err.value.kind == "timeout"


async def test_meter_unit_and_coefficient_from_a_hand_built_meter():
    # Unit 0x01 (0.1 kWh) and coefficient 10: 1234 counts = 1234 kWh.
    values = {0xD3: (10).to_bytes(4, "big"), 0xE1: b"\x01", 0xE7: (-850).to_bytes(4, "big", signed=True),
              0xE0: (1234).to_bytes(4, "big"), 0xE3: (56).to_bytes(4, "big")}
    responder = Responder(bytes([0x02, 0x88, 0x01]), values, set(values), set())
    transport, port = await serve(responder)
    try:
        devs = build_devices([DeviceConfig.model_validate(echonet_devices(port)[1])])
        r = await devs["meter"].read()
        assert (r.power_w, r.import_wh, r.export_wh) == (-850.0, 1_234_000.0, 56_000.0)
        await close_all(devs)
    finally:
        transport.close()


def test_transport_is_validated_like_the_others():
    good = echonet_devices(3610)[0]
    assert DeviceConfig.model_validate(good).transport.instance == 1
    assert check_devices([DeviceConfig.model_validate(good)]) == []
    for bad, field in (({"port": 0}, "transport.echonet_lite.port"), ({"instance": 0x80}, "instance"),
                       ({"host": ""}, "host"), ({"unit": 1}, "unit")):
        with pytest.raises(ValidationError) as err:
            DeviceConfig.model_validate({**good, "transport": {**good["transport"], **bad}})
        assert field in str(err.value)
    with pytest.raises(ValidationError) as err:
        DeviceConfig.model_validate({**good, "map": "generic_battery"})
    assert "ECHONET Lite device takes no 'map'" in str(err.value)


async def test_register_faults_apply_to_the_echonet_node(two_halls, clock):
    sims, devices = two_halls
    devs, physics = devices[0], sims[0].physics
    faults = physics.register_faults
    faults.refuse_writes("battery")
    with pytest.raises(DeviceError) as err:
        await devs["battery"].set_power_w(1000)
    assert err.value.kind == "exception_response" and "SetC_SNA" in str(err.value)
    faults.refuse_writes("battery", on=False)
    faults.ignore_setpoints()
    await devs["battery"].set_power_w(1000)  # taken and read back ...
    assert physics.state.setpoint_w == 0.0  # ... but not followed
    faults.ignore_setpoints(False)
    faults.serve_sentinels("battery")
    with pytest.raises(DeviceError) as err:
        await devs["battery"].read()
    assert err.value.kind == "implausible" and "no data" in str(err.value)
    faults.serve_sentinels("battery", on=False)
    faults.freeze("meter")
    before = await devs["meter"].read()
    clock.advance(600)
    after = await devs["meter"].read()
    assert (after.power_w, after.import_wh, after.export_wh) == (before.power_w, before.import_wh, before.export_wh)
    assert physics.step().export_wh + physics.state.import_wh > before.import_wh + before.export_wh + 10  # it moved
    faults.freeze("meter", on=False)
    assert (await devs["meter"].read()).power_w == pytest.approx(sims[0].physics.step().grid_power_w, abs=1)
