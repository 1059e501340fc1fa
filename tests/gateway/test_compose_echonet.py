"""A hall of config/fleet-echonet.yaml composed like any other: its gateway controls an ECHONET Lite battery
through the simulator's node (same physics), and islands when the grid goes."""

from __future__ import annotations

import asyncio

from devices.echonet.natures import EchonetBattery, EchonetMeter
from devices.simulator.clock import WallClock
from devices.simulator.server import HallSimulator
from ems.config import load_fleet
from ems.gateway.compose import Gateway, GatewayWiring
from ems.gateway.config import PlannerSection, PricesSection, WeatherSection
from tests.gateway.test_daemon import CYCLE_S, ROOT, wait_for
from tests.netutil import free_port


def echonet_hall(site_id: str = "hall-01"):
    fleet = load_fleet(ROOT / "config" / "fleet-echonet.yaml")
    site = fleet.site(site_id)
    sim_port, udp_port = free_port(), free_port()
    devices = [d.model_copy(update={"period_s": 0.1, "timeout_s": 0.3,
                                    "transport": d.transport.model_copy(update={"port": udp_port})})
               for d in site.devices]
    return fleet, site.model_copy(update={
        "devices": devices, "simulator": site.simulator.model_copy(update={"port": sim_port}),
        "control": site.control.model_copy(update={"cycle_s": CYCLE_S, "stale_cycles": 5})})


async def test_gateway_controls_an_echonet_hall_and_islands(tmp_path):
    fleet, site = echonet_hall()
    assert {d.transport.kind for d in site.devices} == {"echonet_lite"}
    wiring = GatewayWiring(site=site, slot_minutes=30, jepx_area=fleet.fleet.jepx_area, state_dir=tmp_path,
                           maps_dir=ROOT / "config" / "devicemaps", prices=PricesSection(source="tariff"),
                           weather=WeatherSection(source="typical"), planner=PlannerSection(optimizer=False))
    clock = WallClock()
    sim = HallSimulator(site, clock)
    await sim.start()
    gateway = Gateway(wiring, clock)
    stop = asyncio.Event()
    await gateway.start()
    task = asyncio.create_task(gateway.run(stop))
    try:
        devices = gateway.daemon.devices
        assert isinstance(devices["battery"], EchonetBattery) and isinstance(devices["meter"], EchonetMeter)
        await wait_for(lambda: gateway.daemon.status is not None and gateway.daemon.status.written
                       and gateway.daemon.status.mode.effective.value == "vpp", 20, "vpp with written setpoints")
        status = gateway.daemon.status
        assert sim.physics.state.setpoint_w == round(status.setpoint_w)  # whole watts over ECHONET Lite
        sim.physics.set_grid(False)
        await wait_for(lambda: gateway.daemon.status.mode.effective.value == "islanded", 10, "islanded")
        assert gateway.daemon.status.grid_ok is False
    finally:
        stop.set()
        await task
        await gateway.stop()
        gateway.close()
        await sim.stop()
