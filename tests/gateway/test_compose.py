"""ems.gateway.compose: a gateway built from its wiring keeps controlling its hall while its uplink and its
InfluxDB are down, and catches up when they come back (real Mosquitto, real InfluxDB 1.x, real Modbus)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading

import paho.mqtt.client as mqtt

from devices.simulator.clock import WallClock
from devices.simulator.server import HallSimulator
from ems.config import load_fleet
from ems.gateway.compose import Gateway, GatewayWiring
from ems.gateway.config import PlannerSection, PricesSection, WeatherSection
from telemetry.influx_writers import InfluxV1Writer
from telemetry.mosquitto_acl import acl_text, gateway_username
from telemetry.mqtt_client import MqttSettings
from telemetry.mqtt_topics import SiteTopics
from tests.gateway.test_daemon import ROOT, fast_site, wait_for
from tests.servers import InfluxDB1Server, MosquittoServer, random_password


def _wiring(site, state_dir, **kw) -> GatewayWiring:
    """A hall's wiring on the tariff and typical weather, rule plan only (no Pyomo: fast)."""
    fleet = load_fleet(ROOT / "config" / "fleet.yaml")
    return GatewayWiring(site=site, slot_minutes=30, jepx_area=fleet.fleet.jepx_area, state_dir=state_dir,
                         maps_dir=ROOT / "config" / "devicemaps", prices=PricesSection(source="tariff"),
                         weather=WeatherSection(source="typical"), planner=PlannerSection(optimizer=False), **kw)


@contextlib.asynccontextmanager
async def running(wiring: GatewayWiring):
    """The hall's simulator and its composed gateway, cycling until the block ends."""
    clock = WallClock()
    sim = HallSimulator(wiring.site, clock)
    await sim.start()
    gateway = Gateway(wiring, clock)
    stop = asyncio.Event()
    await gateway.start()
    task = asyncio.create_task(gateway.run(stop))
    try:
        yield gateway
    finally:
        stop.set()
        await task
        await gateway.stop()
        gateway.close()
        await sim.stop()


def _battery_points(influx: InfluxDB1Server, site: str) -> int:
    rows = influx.rows(f"SELECT count(soc_pct) FROM battery WHERE site = '{site}'", db="ems")
    return int(rows[0][1]) if rows else 0


async def test_uplink_and_influx_down_the_hall_is_still_controlled_and_catches_up(tmp_path):
    site = fast_site("hall-02")
    gw_user, gw_pw, central_pw = gateway_username(site.id), random_password(), random_password()
    broker = MosquittoServer(tmp_path / "mqtt", users={gw_user: gw_pw, "central": central_pw},
                             acl=acl_text([site.id]))  # configured, not started: the uplink is down
    influx = InfluxDB1Server(tmp_path / "influx")  # not started either
    wiring = _wiring(site, tmp_path / "state",
                     uplink=MqttSettings("127.0.0.1", broker.port, gw_user, gw_pw, keepalive_s=5,
                                         min_reconnect_s=0.2, max_reconnect_s=1.0),
                     writer=InfluxV1Writer(influx.url, "ems", timeout_s=2.0))
    try:
        async with running(wiring) as gateway:
            # Alone: the cycle runs, the battery takes setpoints, telemetry waits in the outbox.
            await wait_for(lambda: gateway.daemon.status is not None and gateway.daemon.status.written
                           and gateway.daemon.status.mode.effective.value == "vpp", 20, "the hall controlled alone")
            await wait_for(lambda: len(gateway.outbox) > 50, 20, "telemetry kept in the outbox")
            assert not gateway.edge.connected
            cycles_alone = gateway.daemon.status.stats.cycle_count

            # The servers come back: the outbox empties into InfluxDB, the state reaches the broker.
            await asyncio.to_thread(influx.start)
            await asyncio.to_thread(influx.create_database, "ems")
            await asyncio.to_thread(broker.start)
            got: dict[str, dict] = {}
            seen = threading.Event()
            client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-central")
            client.username_pw_set("central", central_pw)
            client.on_connect = lambda c, u, f, rc, p: c.subscribe(SiteTopics(site.id).state, 1)

            def on_message(c, u, m):
                got["state"] = json.loads(m.payload)
                seen.set()

            client.on_message = on_message
            client.connect("127.0.0.1", broker.port)
            client.loop_start()
            try:
                assert await asyncio.to_thread(seen.wait, 30), "no state message after the broker came back"
                assert got["state"]["site_id"] == site.id
                await wait_for(lambda: len(gateway.outbox) < 20, 60, "the outbox shipped to InfluxDB")
                stored = await asyncio.to_thread(_battery_points, influx, site.id)
                assert stored >= cycles_alone // 2, (stored, cycles_alone)
            finally:
                client.loop_stop()
                client.disconnect()
            assert gateway.daemon.status.stats.cycle_count > cycles_alone  # control never stopped
    finally:
        broker.stop()
        influx.stop()


async def test_a_damaged_outbox_is_replaced_and_the_site_shows_the_alarm(tmp_path):
    """A garbage outbox.sqlite does not stop the gateway: the file goes aside, a fresh outbox takes the
    telemetry, and the site's alarms (what the dashboard shows) name it."""
    from telemetry.outbox import STORE_RECOVERED

    site = fast_site("hall-03")
    state = tmp_path / "state"
    state.mkdir()
    (state / "outbox.sqlite").write_bytes(b"this is not a database" * 100)
    async with running(_wiring(site, state)) as gateway:
        await wait_for(lambda: gateway.daemon.status is not None
                       and any(a.code == STORE_RECOVERED for a in gateway.daemon.status.alarms), 20,
                       "the recovered-store alarm at the site")
        assert list(state.glob("outbox.sqlite.corrupt-*")), list(state.iterdir())
        await wait_for(lambda: len(gateway.outbox) > 10, 20, "telemetry in the fresh outbox")
