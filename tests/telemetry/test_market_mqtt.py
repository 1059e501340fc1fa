"""Fleet-wide inputs on a real Mosquitto with the production ACL: the central user publishes retained on
``ems/v1/_fleet/#``, every gateway reads it through ``EdgeMqtt.subscribe`` (again after a broker crash), no
gateway can write there, and the command path is unchanged beside the extra subscriptions."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid

import pytest

from telemetry.central_mqtt import CentralMqtt
from telemetry.edge_mqtt import EdgeMqtt
from telemetry.fleet_state import FleetStateStore
from telemetry.market import prices_topic, weather_topic
from telemetry.mosquitto_acl import acl_text, gateway_username
from telemetry.mqtt_client import MqttSettings
from tests.servers import MosquittoServer, random_password, wait_until
from tests.telemetry.mqtt_helpers import RawClient

SITES = ["hall-01", "hall-02"]
PRICES = prices_topic("chugoku")
WEATHER = weather_topic("3120100")


@pytest.fixture
def broker(tmp_path):
    # one broker per test: some tests crash it
    users = {"central": random_password(), **{gateway_username(s): random_password() for s in SITES}}
    with MosquittoServer(tmp_path / "mqtt", users=users, acl=acl_text(SITES)) as server:
        server.passwords = users
        yield server


def settings(broker, user) -> MqttSettings:
    return MqttSettings("127.0.0.1", broker.port, user, broker.passwords[user], min_reconnect_s=0.5,
                        max_reconnect_s=1)


@pytest.fixture
def central(broker):
    c = CentralMqtt(settings(broker, "central"), FleetStateStore(SITES), "central",
                    client_id=f"central-{uuid.uuid4().hex[:6]}")
    c.start()
    assert c.wait_connected(20)
    yield c
    c.stop()


class Inbox:
    """A thread-safe handler recording (topic, payload, thread name)."""

    def __init__(self):
        self.got: list[tuple[str, bytes, str]] = []
        self.lock = threading.Lock()

    def __call__(self, topic: str, payload: bytes) -> None:
        with self.lock:
            self.got.append((topic, payload, threading.current_thread().name))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.got if t == topic]


def make_edge(broker, site, tmp_path) -> EdgeMqtt:
    e = EdgeMqtt(site, settings(broker, gateway_username(site)), tmp_path / f"state-{site}",
                 client_id=f"edge-{uuid.uuid4().hex[:8]}")
    e.on_command(lambda cmd: {"done": cmd.kind})
    return e


async def test_retained_inputs_reach_the_gateway_on_subscribe_and_commands_still_work(broker, central, tmp_path):
    central.publish_retained(PRICES, b'{"v": 1}')
    central.publish_retained(WEATHER, b'{"w": 1}')
    edge = make_edge(broker, "hall-01", tmp_path)
    inbox = Inbox()
    edge.subscribe([PRICES, WEATHER], inbox)  # before start: made at connect
    edge.start()
    try:
        assert await edge.wait_connected(20)
        await asyncio.to_thread(wait_until, lambda: inbox.on(PRICES) and inbox.on(WEATHER), 20,
                                what="retained inputs")
        assert inbox.on(PRICES) == [b'{"v": 1}'] and inbox.on(WEATHER) == [b'{"w": 1}']
        assert all(name != threading.current_thread().name for _, _, name in inbox.got)  # paho's thread
        # A new value reaches the subscribed gateway at once.
        central.publish_retained(PRICES, b'{"v": 2}')
        await asyncio.to_thread(wait_until, lambda: inbox.on(PRICES)[-1:] == [b'{"v": 2}'], 20, what="update")
        # A subscription made after start, with a wildcard, gets the retained messages too.
        wild = Inbox()
        edge.subscribe(["ems/v1/_fleet/#"], wild)
        await asyncio.to_thread(wait_until, lambda: wild.on(PRICES) and wild.on(WEATHER), 20, what="wildcard")
        assert wild.on(PRICES)[-1] == b'{"v": 2}' and not edge.refused_filters
        # The command path is as before: handled and acked, never passed to the input handlers.
        ack = await central.command("hall-01", "mode", {"mode": "vpp", "reason": "check"}, timeout_s=20)
        assert ack["status"] == "ok" and ack["outcome"] == {"done": "mode"}
        assert all("/cmd/" not in t for t, _, _ in inbox.got + wild.got)
    finally:
        await edge.aclose()


async def test_a_failing_handler_does_not_stop_the_others_or_commands(broker, central, tmp_path):
    edge = make_edge(broker, "hall-01", tmp_path)
    inbox = Inbox()

    def broken(topic, payload):
        raise RuntimeError("handler bug")

    edge.subscribe([PRICES], broken)
    edge.subscribe([PRICES], inbox)
    edge.start()
    try:
        assert await edge.wait_connected(20)
        central.publish_retained(PRICES, b"x")
        await asyncio.to_thread(wait_until, lambda: inbox.on(PRICES), 20, what="second handler")
        ack = await central.command("hall-01", "mode", {"mode": "vpp", "reason": "check"}, timeout_s=20)
        assert ack["status"] == "ok"
    finally:
        await edge.aclose()


async def test_gateway_resubscribes_after_a_broker_crash_and_central_publishes_again(broker, central, tmp_path):
    central.publish_retained(PRICES, b'{"v": 1}')
    edge = make_edge(broker, "hall-01", tmp_path)
    inbox = Inbox()
    edge.subscribe([PRICES], inbox)
    edge.start()
    try:
        assert await edge.wait_connected(20)
        await asyncio.to_thread(wait_until, lambda: inbox.on(PRICES), 20, what="first delivery")
        # SIGKILL: the broker loses its retained messages and every session (nothing saved yet).
        await asyncio.to_thread(broker.kill)
        await asyncio.to_thread(broker.start)
        central.publish_retained(PRICES, b'{"v": 2}')  # while the central may still be reconnecting
        # Only a new subscription can bring messages now, and only the central's re-publish can fill it.
        await asyncio.to_thread(wait_until, lambda: inbox.on(PRICES)[-1:] == [b'{"v": 2}'], 30,
                                what="the new prices after the crash")
        assert edge.counts["connects"] >= 2
        fresh = RawClient(broker.port, "edge-hall-02", broker.passwords["edge-hall-02"])
        try:
            fresh.subscribe("ems/v1/_fleet/#")
            await asyncio.to_thread(wait_until, lambda: fresh.on(PRICES), 20, what="retained after the crash")
            assert fresh.on(PRICES) == [b'{"v": 2}']
        finally:
            fresh.close()
    finally:
        await edge.aclose()


async def test_gateways_cannot_write_fleet_inputs_nor_read_other_sites(broker, central, tmp_path):
    central.publish_retained(PRICES, b'{"from": "central"}')
    rogue = RawClient(broker.port, "edge-hall-01", broker.passwords["edge-hall-01"])
    try:
        # Mosquitto drops a publish the ACL forbids (the client still gets its PUBACK).
        rogue.publish(PRICES, b'{"from": "rogue"}', retain=True)
        rogue.publish("ems/v1/_fleet/weather/3120100", b'{"from": "rogue"}', retain=True)
        rogue.publish("ems/v1/_fleet/anything", b"rogue", retain=True)
    finally:
        rogue.close()
    reader = RawClient(broker.port, "edge-hall-02", broker.passwords["edge-hall-02"])
    try:
        assert not reader.subscribe("ems/v1/_fleet/#")[0].is_failure
        await asyncio.to_thread(wait_until, lambda: reader.on(PRICES), 20, what="central's prices")
        await asyncio.sleep(0.5)
        assert [json.loads(p) for t, p, _ in reader.messages] == [{"from": "central"}]
    finally:
        reader.close()
    # The extra read grant is only for _fleet: another site's state stays closed (Mosquitto 2 grants the
    # subscription and checks the read ACL on delivery).
    edge = make_edge(broker, "hall-01", tmp_path)
    inbox = Inbox()
    edge.subscribe(["ems/v1/hall-02/state", PRICES], inbox)
    edge.start()
    hall2 = RawClient(broker.port, "edge-hall-02", broker.passwords["edge-hall-02"])
    try:
        assert await edge.wait_connected(20)
        await asyncio.to_thread(wait_until, lambda: inbox.on(PRICES), 20, what="prices")
        hall2.publish("ems/v1/hall-02/state", b'{"soc_pct": 50}', retain=True)
        central.publish_retained(PRICES, b'{"from": "central", "n": 2}')  # published after hall-02's state
        await asyncio.to_thread(wait_until, lambda: len(inbox.on(PRICES)) == 2, 20, what="second prices")
        await asyncio.sleep(0.3)
        assert inbox.on("ems/v1/hall-02/state") == []
    finally:
        hall2.close()
        await edge.aclose()


def test_refused_extra_subscription_is_flagged_apart_from_the_command_one(tmp_path):
    import paho.mqtt.reasoncodes as rc
    from paho.mqtt.packettypes import PacketTypes
    e = EdgeMqtt("hall-01", MqttSettings("127.0.0.1", 1), tmp_path / "s")  # never started
    e._pending_subacks[7] = [PRICES, WEATHER]
    e._on_subscribe(None, None, 7, [rc.ReasonCode(PacketTypes.SUBACK, identifier=1),
                                    rc.ReasonCode(PacketTypes.SUBACK, identifier=0x80)], None)
    assert e.refused_filters == {WEATHER} and not e.subscribe_refused and not e._ready.is_set()
    e._on_subscribe(None, None, 8, [rc.ReasonCode(PacketTypes.SUBACK, identifier=1)], None)  # the command one
    assert e._ready.is_set() and not e.subscribe_refused
    e.replay.close()


def test_central_refuses_retained_topics_outside_the_fleet_tree(central):
    for topic in ("ems/v1/hall-01/state", "ems/v1/_fleet/#", "other/topic"):
        with pytest.raises(ValueError, match="not under ems/v1/_fleet/"):
            central.publish_retained(topic, b"x")
