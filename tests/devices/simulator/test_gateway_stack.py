"""The gateway's own device stack (devices.factory / natures) against the simulator.

The same register maps on both sides; this checks the two halves agree on
units, signs and addresses, including SunSpec discovery of the PV inverter.
"""

from __future__ import annotations

import pytest

from devices.factory import build_devices
from devices.readings import BatteryState
from devices.simulator.clock import ManualClock
from devices.simulator.server import HallSimulator
from tests.devices.simulator.helpers import JUNE_NOON, make_site
from tests.netutil import free_port


@pytest.fixture
async def hall_and_devices():
    port = free_port()
    site = make_site(port, simulator={"cloud_factor": 0.0})
    clock = ManualClock(JUNE_NOON)
    async with HallSimulator(site, clock, port=port) as sim:
        devices = build_devices(site.devices)
        try:
            yield sim, devices
        finally:
            for d in devices.values():
                await d.close()


def settle(sim: HallSimulator, seconds: float = 10) -> None:
    sim.clock.advance(seconds)
    sim.physics.kick_heartbeat(sim.physics.state.heartbeat + 1)
    sim.clock.advance(1)
    sim.physics.step()


async def test_readings_match_the_physics(hall_and_devices):
    sim, devices = hall_and_devices
    settle(sim)
    s = sim.physics.state
    battery = await devices["battery"].read()
    assert battery.soc_pct == pytest.approx(s.soc_pct, abs=0.05)
    assert battery.capacity_wh == 15000 and battery.state == BatteryState.IDLE
    meter = await devices["meter"].read()
    assert meter.power_w == pytest.approx(s.grid_power_w, rel=1e-5)
    assert meter.grid_ok
    pv = await devices["pv"].read()
    assert pv.power_w == pytest.approx(s.pv_power_w, abs=0.5) and pv.power_w > 7000
    assert pv.rated_w == 10000


async def test_setpoint_and_heartbeat_through_the_nature(hall_and_devices):
    sim, devices = hall_and_devices
    battery = devices["battery"]
    await battery.kick_heartbeat()
    await battery.set_power_w(-2000)  # charge 2 kW, verified by read-back
    assert sim.physics.state.setpoint_w == -2000
    settle(sim)
    reading = await battery.read()
    assert reading.power_w == pytest.approx(-2000, abs=1)
    assert reading.state == BatteryState.CHARGING


async def test_outage_seen_by_the_meter_nature(hall_and_devices):
    sim, devices = hall_and_devices
    sim.physics.set_grid(False)
    settle(sim)
    meter = await devices["meter"].read()
    assert not meter.grid_ok and meter.power_w == 0 and meter.voltage_v == 0
