"""The edge daemon against the real hall simulator over loopback Modbus TCP.

Wall-clock time at speed 1 with a fast cycle (0.1 s) so each test takes a
few seconds; every wait is a wait-for-condition with a generous deadline.
"""

from __future__ import annotations

import asyncio
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

import pytest

from devices.config import DeviceConfig
from devices.simulator.clock import WallClock
from devices.simulator.server import HallSimulator
from ems.config import SiteConfig, load_fleet
from ems.gateway.daemon import EdgeDaemon
from ems.gateway.modes import Mode, ModeRequest
from tests.netutil import free_port

ROOT = Path(__file__).resolve().parents[2]
CYCLE_S = 0.1


def fast_site(site_id: str = "hall-01") -> SiteConfig:
    """A site of the shipped fleet on a free port, polled every 0.1 s, cycle 0.1 s."""
    site = load_fleet(ROOT / "config" / "fleet.yaml").site(site_id)
    port = free_port()
    devices = [
        d.model_copy(update={"period_s": 0.1, "timeout_s": 0.3,
                             "transport": d.transport.model_copy(update={"port": port})})
        for d in site.devices
    ]
    return site.model_copy(update={
        "devices": devices,
        "simulator": site.simulator.model_copy(update={"port": port}),
        "control": site.control.model_copy(update={"cycle_s": CYCLE_S, "stale_cycles": 5}),
    })


async def wait_for(cond: Callable[[], bool], timeout_s: float = 15.0, what: str = "condition") -> None:
    """Poll ``cond`` every 50 ms until true, or fail naming ``what``."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        await asyncio.sleep(0.05)


class Rig:
    """A simulator and a daemon for one site, with helpers to start, stop and restart them."""

    def __init__(self, site: SiteConfig, state_dir: Path):
        self.site = site
        self.state_dir = state_dir
        self.clock = WallClock()
        self.sim = HallSimulator(site, self.clock)
        self.daemon: EdgeDaemon | None = None
        self.stop_event = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def start_daemon(self) -> EdgeDaemon:
        self.daemon = EdgeDaemon(self.site, state_dir=self.state_dir, clock=self.clock)
        self.stop_event = asyncio.Event()
        await self.daemon.start()
        self.task = asyncio.create_task(self.daemon.run(self.stop_event))
        return self.daemon

    async def stop_daemon(self) -> None:
        self.stop_event.set()
        if self.task:
            await self.task
        if self.daemon:
            await self.daemon.stop()

    def mode(self) -> Mode | None:
        d = self.daemon
        return d.status.mode.effective if d and d.status else None


@pytest.fixture
async def rig(tmp_path):
    r = Rig(fast_site(), tmp_path / "state")
    await r.sim.start()
    yield r
    await r.stop_daemon()
    await r.sim.stop()


async def test_daemon_leaves_safe_and_its_setpoint_reaches_the_battery(rig):
    d = await rig.start_daemon()
    await wait_for(lambda: rig.mode() is Mode.VPP, what="vpp after start-up")
    await wait_for(lambda: d.status.written, what="a written setpoint")
    sp = d.status.setpoint_w
    # The simulator's setpoint register holds what the daemon last wrote.
    await wait_for(lambda: abs(rig.sim.physics.state.setpoint_w - d.status.setpoint_w) < 1.0,
                   what=f"simulator setpoint near {sp:.0f} W")
    assert d.status.stats.cycle_count > 3
    assert d.status.device_health["battery"].ok and d.status.device_health["meter"].ok
    assert d.status.hours_left is not None and d.status.hours_left > 0


async def test_disaster_reserve_charges_at_the_allowed_maximum_and_never_discharges(rig):
    d = await rig.start_daemon()
    await wait_for(lambda: rig.mode() is Mode.VPP, what="vpp")
    d.request_mode(ModeRequest(Mode.DISASTER_RESERVE, "typhoon warning", "staff:tanaka",
                               datetime.now(timezone.utc), command_id="cmd-1"))
    await wait_for(lambda: rig.mode() is Mode.DISASTER_RESERVE, what="disaster_reserve")
    setpoints = []
    for _ in range(20):
        await asyncio.sleep(CYCLE_S)
        setpoints.append(d.status.setpoint_w)
    assert max(setpoints) <= 0.0, "disaster_reserve must never discharge"
    assert min(setpoints) < -1000.0, "disaster_reserve must charge"
    # Not above the site's power limit, and the battery follows.
    assert min(setpoints) >= -d.policy.max_charge_w - 1e-6
    await wait_for(lambda: rig.sim.physics.state.battery_power_w < -500, what="battery charging")


async def test_simulator_killed_and_restarted_daemon_goes_safe_recovers_and_keeps_mode(rig):
    d = await rig.start_daemon()
    await wait_for(lambda: rig.mode() is Mode.VPP, what="vpp")
    d.request_mode(ModeRequest(Mode.DISASTER_RESERVE, "storm warning", "jma", datetime.now(timezone.utc)))
    await wait_for(lambda: rig.mode() is Mode.DISASTER_RESERVE, what="disaster_reserve")

    await rig.sim.stop()  # the devices vanish mid-run
    await wait_for(lambda: rig.mode() is Mode.SAFE, what="safe after the devices vanished")
    assert any(a.code == "safe_mode" for a in d.status.alarms)
    assert d.status.setpoint_w == 0.0
    assert not rig.task.done(), "the daemon must stay up"

    await rig.sim.start()  # the devices come back on the same port
    await wait_for(lambda: rig.mode() is Mode.DISASTER_RESERVE, timeout_s=30,
                   what="disaster_reserve again after the devices came back")
    assert not any(a.code == "safe_mode" for a in d.status.alarms)
    changes = [(c.from_mode, c.to_mode) for c in d.mode_log if c.layer == "effective"]
    assert (Mode.DISASTER_RESERVE, Mode.SAFE) in changes and (Mode.SAFE, Mode.DISASTER_RESERVE) in changes


async def test_requested_mode_survives_a_daemon_restart(rig):
    d = await rig.start_daemon()
    await wait_for(lambda: rig.mode() is Mode.VPP, what="vpp")
    d.request_mode(ModeRequest(Mode.DISASTER_RESERVE, "municipal order", "staff:sato",
                               datetime.now(timezone.utc), command_id="c-42"))
    await rig.stop_daemon()

    d2 = await rig.start_daemon()
    assert d2.machine.requested.mode is Mode.DISASTER_RESERVE
    assert d2.machine.requested.issued_by == "staff:sato"
    assert d2.machine.requested.command_id == "c-42"
    await wait_for(lambda: rig.mode() is Mode.DISASTER_RESERVE, what="disaster_reserve after restart")


async def test_grid_loss_islands_and_grid_return_goes_back_to_the_previous_mode(rig):
    d = await rig.start_daemon()
    await wait_for(lambda: rig.mode() is Mode.VPP, what="vpp")
    rig.sim.physics.set_grid(False)
    await wait_for(lambda: rig.mode() is Mode.ISLANDED, what="islanded")
    assert any(a.code == "grid_lost" for a in d.status.alarms)
    assert not d.status.written, "a grid-forming inverter gets no setpoint"
    rig.sim.physics.set_grid(True)
    await wait_for(lambda: rig.mode() is Mode.VPP, timeout_s=30, what="vpp after the grid came back")


async def test_implausible_soc_is_rejected_and_leads_to_safe(rig):
    await rig.start_daemon()
    await wait_for(lambda: rig.mode() is Mode.VPP, what="vpp")
    rig.sim.physics.serve_garbage("battery", "soc", 140.0)
    await wait_for(lambda: rig.mode() is Mode.SAFE, what="safe on SoC 140 %")
    health = rig.daemon.status.device_health["battery"]
    assert health.consecutive_failures > 0 and "soc" in (health.last_error or "").lower()


async def test_battery_fault_gives_safe_mode_with_an_alarm(rig):
    await rig.start_daemon()
    await wait_for(lambda: rig.mode() is Mode.VPP, what="vpp")
    rig.sim.physics.inject_battery_fault(0x0101)
    await wait_for(lambda: rig.mode() is Mode.SAFE, what="safe on a battery fault")
    codes = {a.code for a in rig.daemon.status.alarms}
    assert "device_fault" in codes and "safe_mode" in codes
    await wait_for(lambda: rig.daemon.status.hours_left == 0.0, what="no hours of power from a faulted battery")
    rig.sim.physics.clear_battery_fault()
    await wait_for(lambda: rig.mode() is Mode.VPP, what="vpp after the fault cleared")


async def test_daemon_follows_the_optimizer_plan_through_the_guard(tmp_path):
    from ems.gateway.planning import OptimizerPlanSource

    site = fast_site("hall-02")
    r = Rig(site, tmp_path / "state")
    await r.sim.start()
    try:
        src = OptimizerPlanSource(site)
        r.daemon = EdgeDaemon(site, state_dir=r.state_dir, clock=r.clock, plan_source=src)
        await r.daemon.start()
        r.task = asyncio.create_task(r.daemon.run(r.stop_event))
        await wait_for(lambda: r.mode() is Mode.VPP, what="vpp")
        await wait_for(lambda: "plan optimal" in r.daemon.status.plan_reason, what="a setpoint from the plan")
        assert src.plans_made >= 1
        # The plan's setpoint goes through the guard to the battery's register.
        s = r.daemon.status
        assert -r.daemon.policy.max_charge_w - 1e-6 <= s.setpoint_w <= r.daemon.policy.max_discharge_w + 1e-6
        await wait_for(lambda: abs(r.sim.physics.state.setpoint_w - r.daemon.status.setpoint_w) < 1.0,
                       what="the planned setpoint in the simulator's register")
        r.daemon.request_mode(ModeRequest(Mode.DISASTER_RESERVE, "drill", "staff:test", datetime.now(timezone.utc)))
        await wait_for(lambda: r.mode() is Mode.DISASTER_RESERVE, what="disaster_reserve")
        await wait_for(lambda: src.plan is not None and src.plan.mode == "disaster_reserve",
                       what="a disaster_reserve plan")
        await wait_for(lambda: r.daemon.status.setpoint_w <= 0.0, what="no discharge in disaster_reserve")
    finally:
        await r.stop_daemon()
        await r.sim.stop()


async def test_an_mqtt_meter_is_read_through_the_halls_device_broker(tmp_path):
    """A hall whose meter publishes JSON on its own Mosquitto: the daemon connects with the configured
    user and password file, reads the meter, and leaves safe only while the meter keeps publishing."""
    import threading
    import time

    import paho.mqtt.client as mqtt

    from ems.config import DeviceBrokerSpec
    from tests.servers import MosquittoServer, random_password

    site = fast_site()
    meter_id = next(d.id for d in site.devices if d.nature.value == "meter")
    pw = random_password()
    (tmp_path / "gw.pw").write_text(pw + "\n")
    with MosquittoServer(tmp_path / "mqtt", users={"gw": pw, "meter": pw}) as broker:
        mqtt_meter = DeviceConfig.model_validate({
            "id": meter_id, "nature": "meter", "period_s": 0.1,
            "transport": {"kind": "mqtt", "topic": "hall/meter", "fields": {"power_w": "p_kw"},
                          "scale": {"power_w": 1000}}})
        site = site.model_copy(update={
            "devices": [mqtt_meter if d.id == meter_id else d for d in site.devices],
            "device_broker": DeviceBrokerSpec(port=broker.port, username="gw",
                                              password_file=str(tmp_path / "gw.pw"))})
        rig = Rig(site, tmp_path / "state")
        await rig.sim.start()
        publishing = threading.Event()
        publishing.set()
        pub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        pub.username_pw_set("meter", pw)
        pub.connect("127.0.0.1", broker.port)
        pub.loop_start()

        def publish():
            while publishing.is_set():
                pub.publish("hall/meter", b'{"p_kw": 1.234}')
                time.sleep(0.05)

        thread = threading.Thread(target=publish, daemon=True)
        thread.start()
        try:
            daemon = await rig.start_daemon()
            await wait_for(lambda: daemon.status is not None and daemon.status.grid_w == 1234.0,
                           what="the MQTT meter's 1.234 kW in the daemon's status")
            await wait_for(lambda: rig.mode() is Mode.VPP, what="vpp with a live MQTT meter")
            publishing.clear()  # the meter falls silent: its readings go stale, the daemon goes safe
            await wait_for(lambda: rig.mode() is Mode.SAFE, what="safe once the MQTT meter is silent")
        finally:
            publishing.clear()
            thread.join(5)
            pub.loop_stop()
            pub.disconnect()
            await rig.stop_daemon()
            await rig.sim.stop()


def test_the_guard_expects_a_setpoint_to_hold_as_long_as_recent_cycles_really_took():
    """Late cycles let the battery run on at the old setpoint: the guard plans for the longest recent gap
    (so near the reserve floor it tapers sooner), never less than the nominal cycle, at most 4x it."""
    from ems.gateway.daemon import expected_hold_s

    assert expected_hold_s(1.0, []) == 1.0
    assert expected_hold_s(1.0, [1.0, 0.98, 1.02]) == 1.02
    assert expected_hold_s(900.0, [900.0, 2700.0, 900.0]) == 2700.0  # a 3600x drill: 0.75 s wall late
    assert expected_hold_s(1.0, [0.5, 0.2]) == 1.0
    assert expected_hold_s(1.0, [1.0, 3600.0]) == 4.0  # a pause (restart, suspend) is not a cycle
