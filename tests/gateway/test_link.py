"""The daemon's link, end to end on real servers: simulator (Modbus) → daemon → Mosquitto (with
per-site ACLs) and outbox → InfluxDB 1.x; commands from the central side back to the daemon."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta, timezone

import pytest

from ems.gateway.daemon import EdgeDaemon
from ems.gateway.link import EdgeLink
from ems.gateway.modes import Mode
from ems.gateway.planning import OptimizerPlanSource
from telemetry.central_mqtt import CentralMqtt
from telemetry.edge_mqtt import EdgeMqtt
from telemetry.fleet_state import FleetStateStore
from telemetry.influx_writers import InfluxV1Writer
from telemetry.mosquitto_acl import acl_text, gateway_username
from telemetry.mqtt_client import MqttSettings
from telemetry.outbox import Outbox
from telemetry.shipper import InfluxShipper
from tests.gateway.test_daemon import Rig, fast_site, wait_for
from tests.servers import InfluxDB1Server, MosquittoServer, random_password


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    users = {gateway_username("hall-01"): random_password(), "central": random_password()}
    acl = acl_text(["hall-01"], central=["central"])
    with MosquittoServer(tmp_path_factory.mktemp("mosq"), users=users, acl=acl) as server:
        yield server, users


@pytest.fixture(scope="module")
def influx(tmp_path_factory):
    with InfluxDB1Server(tmp_path_factory.mktemp("influx")) as server:
        server.create_database("ems")
        yield server


@pytest.fixture
async def linked(tmp_path, broker, influx):
    server, users = broker
    site = fast_site("hall-01")
    rig = Rig(site, tmp_path / "state")
    await rig.sim.start()
    rig.daemon = EdgeDaemon(site, state_dir=rig.state_dir, clock=rig.clock, plan_source=OptimizerPlanSource(site))
    gw = gateway_username("hall-01")
    edge = EdgeMqtt("hall-01", MqttSettings("127.0.0.1", server.port, gw, users[gw]), tmp_path / "state")
    outbox = Outbox(tmp_path / "state" / "outbox-hall-01.sqlite")
    link = EdgeLink(rig.daemon, mqtt=edge, outbox=outbox)
    shipper = InfluxShipper(outbox, InfluxV1Writer(influx.url, "ems"))
    store = FleetStateStore(["hall-01"])
    central = CentralMqtt(MqttSettings("127.0.0.1", server.port, "central", users["central"]), store, "central-test")
    await rig.daemon.start()
    edge.start()
    central.start()
    ship_task = asyncio.create_task(shipper.run())
    rig.task = asyncio.create_task(rig.daemon.run(rig.stop_event))
    assert await edge.wait_connected(30)
    assert await asyncio.to_thread(central.wait_connected, 30)
    yield rig, link, central, store, outbox, shipper
    shipper.stop()
    await asyncio.gather(ship_task, return_exceptions=True)
    await rig.stop_daemon()
    await edge.aclose()
    await asyncio.to_thread(central.stop)
    outbox.close()
    await rig.sim.stop()


async def test_mode_command_round_trip_state_and_telemetry(linked, influx):
    rig, link, central, store, outbox, shipper = linked
    await wait_for(lambda: rig.mode() is Mode.VPP, what="vpp")
    ack = await central.command("hall-01", "mode", {"mode": "disaster_reserve", "reason": "typhoon No. 14"})
    assert ack is not None and ack["status"] == "ok", ack
    assert ack["outcome"]["requested"] == "disaster_reserve"
    await wait_for(lambda: rig.mode() is Mode.DISASTER_RESERVE, what="disaster_reserve")
    # Who asked and why is kept with the persisted mode.
    req = rig.daemon.machine.requested
    assert req.issued_by == "central-test" and req.reason == "typhoon No. 14" and req.command_id == ack["command_id"]
    # The central store sees the retained state with the new mode.
    await wait_for(lambda: (store.get("hall-01").state or {}).get("mode", {}).get("effective") == "disaster_reserve",
                   what="state in the fleet store")
    # Telemetry reaches InfluxDB through the outbox.
    def battery_points() -> int:
        rows = influx.rows("SELECT count(soc_pct) FROM battery WHERE site='hall-01'", "ems")
        return rows[0][1] if rows else 0

    await wait_for(lambda: battery_points() >= 20, timeout_s=30, what="20 battery readings in InfluxDB")
    plans = influx.rows("SELECT count(battery_w) FROM plan WHERE site='hall-01'", "ems")
    assert plans and plans[0][1] >= 48, plans  # a day of slots
    assert "slots" in (store.get("hall-01").plan or {}), "the plan is published for the central dispatch"
    modes = influx.rows("SELECT mode, reason FROM mode WHERE site='hall-01'", "ems")
    assert any(r[1] == "disaster_reserve" for r in modes), modes
    # The command and its ack are the hall's audit trail in InfluxDB.
    await wait_for(lambda: influx.rows(f"SELECT issued_by FROM command WHERE command_id = '{ack['command_id']}'",
                                       "ems") != [], timeout_s=30, what="the command point in InfluxDB")
    acks = influx.rows(f"SELECT command_id, status FROM ack WHERE command_id = '{ack['command_id']}'", "ems")
    assert [r[2] for r in acks] == ["ok"], acks


async def test_refused_commands_say_why(linked, influx):
    rig, link, central, store, outbox, shipper = linked
    await wait_for(lambda: rig.mode() is Mode.VPP, what="vpp")
    ack = await central.command("hall-01", "mode", {"mode": "safe", "reason": "try"})
    assert ack["status"] == "failed" or ack["status"] == "refused"
    assert "manual setpoint of 0 W" in (ack.get("error") or ""), ack
    ack = await central.command("hall-01", "mode", {"mode": "disaster_reserve", "reason": "warning"})
    assert ack["status"] == "ok"
    now = datetime.now(timezone.utc)
    ack = await central.command("hall-01", "dispatch", {"power_w": 3000, "start": now.isoformat(),
                                                        "end": (now + timedelta(hours=1)).isoformat()})
    assert ack["status"] != "ok" and "weaken the shelter reserve" in (ack.get("error") or ""), ack
    # Refusals are in the audit trail too, with the reason.
    query = f"SELECT command_id, error, status FROM ack WHERE command_id = '{ack['command_id']}'"
    await wait_for(lambda: influx.rows(query, "ems") != [], timeout_s=30, what="the refused command's ack point")
    row = influx.rows(query, "ems")[0]
    assert row[3] == ack["status"] and "weaken the shelter reserve" in row[2], row


async def test_dispatch_lease_and_manual_setpoint(linked):
    rig, link, central, store, outbox, shipper = linked
    await wait_for(lambda: rig.mode() is Mode.VPP, what="vpp")
    now = datetime.now(timezone.utc)
    ack = await central.command("hall-01", "dispatch", {"power_w": 2000, "start": now.isoformat(),
                                                        "end": (now + timedelta(hours=1)).isoformat(),
                                                        "reason": "aggregator call"})
    assert ack["status"] == "ok", ack
    assert len(rig.daemon.plan_source.commitments) == 1
    ack = await central.command("hall-01", "setpoint", {"power_w": -1500, "hold_s": 3600})
    assert ack["status"] == "ok" and ack["outcome"]["requested"] == "manual", ack
    await wait_for(lambda: rig.mode() is Mode.MANUAL, what="manual")
    await wait_for(lambda: rig.daemon.status.requested_w == -1500.0, what="the manual setpoint asked of the guard")
    # Charging 1.5 kW is inside hall-01's limits: once the ramp has passed, the battery gets exactly that.
    await wait_for(lambda: abs(rig.daemon.status.setpoint_w + 1500.0) < 1.0,
                   what="the manual -1500 W written by the daemon")
    await wait_for(lambda: abs(rig.sim.physics.state.setpoint_w + 1500.0) < 1.0,
                   what="the manual -1500 W in the battery's setpoint register")


async def test_a_full_outbox_drops_and_raises_an_alarm_at_the_site(tmp_path):
    site = fast_site("hall-01")
    rig = Rig(site, tmp_path / "state")
    await rig.sim.start()
    outbox = Outbox(tmp_path / "outbox.sqlite", max_bytes=4096)  # nothing ships it: it must fill and drop
    try:
        rig.daemon = EdgeDaemon(site, state_dir=rig.state_dir, clock=rig.clock)
        EdgeLink(rig.daemon, outbox=outbox, state_every=1)
        await rig.daemon.start()
        rig.task = asyncio.create_task(rig.daemon.run(rig.stop_event))
        await wait_for(lambda: outbox.stats().dropped_points > 0, what="points dropped at the disk limit")
        await wait_for(lambda: any(a.code == "telemetry_dropped" for a in rig.daemon.status.alarms),
                       what="the telemetry_dropped alarm")
        # The drop policy keeps the file within its limit.
        assert outbox.stats().bytes <= 4096
    finally:
        await rig.stop_daemon()
        outbox.close()
        await rig.sim.stop()
