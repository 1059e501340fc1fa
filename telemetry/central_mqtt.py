"""The central service's MQTT side: follow the whole fleet, send commands, collect acks.

    central = CentralMqtt(MqttSettings(host=..., username="central", password=...),
                          FleetStateStore(site_ids), issued_by="operator:tanaka")
    central.start(); central.wait_connected()
    ack = await central.command("hall-01", "mode", {"mode": "disaster_reserve", "reason": "typhoon"})

Subscribes (QoS 1) to state, online, plan, ack and alarm of every site and
feeds them into the :class:`FleetStateStore`.  Commands go out with QoS 1.

Fleet-wide inputs (day-ahead prices, weather: :mod:`telemetry.market`) go
out retained with :meth:`CentralMqtt.publish_retained`; the client keeps the
latest payload of each such topic and publishes it again after every
reconnect, so a broker that lost its retained messages (restart without
persistence) has them back at once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import OrderedDict
from datetime import timedelta
from typing import Any, Callable

from telemetry.commands import new_command
from telemetry.fleet_state import FleetStateStore
from telemetry.market import FLEET_BASE, QOS_MARKET
from telemetry.mqtt_client import MqttSettings, make_client, to_json
from telemetry.mqtt_topics import FLEET_FILTERS, QOS_COMMAND, SiteTopics, parse_topic

log = logging.getLogger(__name__)

#: Acks remembered for late :meth:`CentralMqtt.wait_ack` calls.
KEPT_ACKS = 10_000


class CentralMqtt:
    """Fleet-wide MQTT client of the central service (paho network thread inside)."""

    def __init__(self, settings: MqttSettings, store: FleetStateStore, issued_by: str,
                 client_id: str = "ems-central", clean_session: bool = False):
        self.settings = settings
        self.store = store
        self.issued_by = issued_by
        self._client = make_client(settings, client_id, clean_session=clean_session)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_message = self._on_message
        self._client.on_subscribe = self._on_subscribe
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self._lock = threading.Lock()
        self._stopping = False
        self._acks: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._waiters: dict[str, list[Callable[[dict[str, Any]], None]]] = {}
        # Retained fleet-wide messages: topic -> latest payload, re-sent after every (re)connect.
        # _retained_lock is held around client.publish so the broker sees them in the order of the calls
        # (paho's network thread never waits for it while holding a lock publish() needs).
        self._retained: dict[str, bytes] = {}
        self._retained_lock = threading.Lock()
        self._retained_live = False

    def start(self) -> None:
        """Connect in the background and start the network thread."""
        self._client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self._client.loop_start()

    def wait_connected(self, timeout_s: float = 30.0) -> bool:
        """Block until connected and subscribed; False after ``timeout_s`` [s]."""
        return self._connected.wait(timeout_s) and self._subscribed.wait(timeout_s)

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    def stop(self) -> None:
        """Disconnect and stop the network thread."""
        self._stopping = True
        self._client.disconnect()
        self._client.loop_stop()

    # -- commands ------------------------------------------------------------------------
    def send_command(self, site: str, kind: str, payload: dict[str, Any], ttl: timedelta = timedelta(minutes=5),
                     command_id: str | None = None) -> dict[str, Any]:
        """Publish a new command (QoS 1) to ``site``; returns the envelope sent."""
        env = new_command(site, kind, payload, self.issued_by, ttl=ttl, command_id=command_id)
        self.publish_raw(SiteTopics(site).command(kind), to_json(env))
        return env

    def publish_raw(self, topic: str, payload: bytes | str, qos: int = QOS_COMMAND) -> None:
        """Publish bytes as they are (tests use it for malformed and replayed commands)."""
        self._client.publish(topic, payload, qos=qos)

    def publish_retained(self, topic: str, payload: bytes | str, qos: int = QOS_MARKET) -> None:
        """Publish a retained message (QoS 1) under ``ems/v1/_fleet/`` (prices, weather).

        Never blocks on the network.  While the broker is away the payload is
        only remembered; it goes out when the connection is back, and so does
        every other topic's latest payload (a broker restarted without its
        retained messages gets them again).  ValueError for a topic outside
        ``ems/v1/_fleet/`` (site topics are the gateways' own)."""
        if not topic.startswith(FLEET_BASE + "/") or "+" in topic or "#" in topic:
            raise ValueError(f"retained topic {topic!r} is not under {FLEET_BASE}/")
        data = payload.encode("utf-8") if isinstance(payload, str) else bytes(payload)
        with self._retained_lock:
            self._retained[topic] = data
            if self._retained_live:
                self._client.publish(topic, data, qos=qos, retain=True)

    def retained(self) -> dict[str, bytes]:
        """The latest payload of every retained topic published so far."""
        with self._retained_lock:
            return dict(self._retained)

    def wait_ack(self, command_id: str, timeout_s: float = 10.0) -> dict[str, Any] | None:
        """Block until the ack of ``command_id`` arrives (or was already here); None on timeout."""
        done = threading.Event()
        box: list[dict[str, Any]] = []

        def resolve(ack: dict[str, Any]) -> None:
            box.append(ack)
            done.set()

        self._add_waiter(command_id, resolve)
        done.wait(timeout_s)
        self._remove_waiter(command_id, resolve)
        return box[0] if box else None

    async def command(self, site: str, kind: str, payload: dict[str, Any], ttl: timedelta = timedelta(minutes=5),
                      timeout_s: float = 10.0, command_id: str | None = None) -> dict[str, Any] | None:
        """Send a command and wait for its ack without blocking the loop; None on timeout."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future = loop.create_future()
        env = new_command(site, kind, payload, self.issued_by, ttl=ttl, command_id=command_id)

        def resolve(ack: dict[str, Any]) -> None:
            loop.call_soon_threadsafe(lambda: fut.done() or fut.set_result(ack))

        self._add_waiter(env["id"], resolve)
        try:
            self.publish_raw(SiteTopics(site).command(kind), to_json(env))
            return await asyncio.wait_for(fut, timeout_s)
        except asyncio.TimeoutError:
            return None
        finally:
            self._remove_waiter(env["id"], resolve)

    def _add_waiter(self, command_id: str, fn: Callable[[dict[str, Any]], None]) -> None:
        with self._lock:
            ack = self._acks.get(command_id)
            if ack is None:
                self._waiters.setdefault(command_id, []).append(fn)
        if ack is not None:
            fn(ack)

    def _remove_waiter(self, command_id: str, fn: Callable[[dict[str, Any]], None]) -> None:
        with self._lock:
            fns = self._waiters.get(command_id, [])
            if fn in fns:
                fns.remove(fn)
            if not fns:
                self._waiters.pop(command_id, None)

    def last_ack(self, command_id: str) -> dict[str, Any] | None:
        """The ack of ``command_id`` if it arrived (the most recent one if several did)."""
        with self._lock:
            return self._acks.get(command_id)

    # -- paho callbacks (network thread) -------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("central: broker refused the connection: %s", reason_code)
            return
        client.subscribe([(f, 1) for f in FLEET_FILTERS.values()])
        self._connected.set()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        # The retained messages go out only now: paho re-sends the messages still in flight from the
        # previous connection right after CONNACK, so an older payload cannot overtake a newer one.
        self._send_retained(client)
        if any(rc.is_failure for rc in reason_codes):
            log.error("central: broker refused a fleet subscription (check the ACL)")
            return
        self._subscribed.set()

    def _send_retained(self, client) -> None:
        with self._retained_lock:
            if self._retained_live:
                return
            self._retained_live = True
            for topic, data in self._retained.items():
                client.publish(topic, data, qos=QOS_MARKET, retain=True)

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set() and not self._stopping:
            log.warning("central: lost the broker (%s); reconnecting", reason_code)
        self._connected.clear()
        with self._retained_lock:
            self._retained_live = False

    def _on_message(self, client, userdata, msg) -> None:
        try:
            self.store.handle(msg.topic, msg.payload)
            parsed = parse_topic(msg.topic)
            if parsed is not None and parsed.leaf == "ack":
                self._on_ack(msg.payload)
        except Exception:
            log.exception("central: error handling %s", msg.topic)

    def _on_ack(self, payload: bytes) -> None:
        try:
            ack = json.loads(payload)
        except ValueError:
            return
        cid = ack.get("command_id") if isinstance(ack, dict) else None
        if not isinstance(cid, str):
            return
        with self._lock:
            self._acks[cid] = ack
            self._acks.move_to_end(cid)
            while len(self._acks) > KEPT_ACKS:
                self._acks.popitem(last=False)
            fns = list(self._waiters.get(cid, []))
        for fn in fns:
            fn(ack)
