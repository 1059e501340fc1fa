"""Helpers for tests against the real broker: a raw paho client that records what it gets."""

from __future__ import annotations

import threading
import uuid

import paho.mqtt.client as mqtt

from tests.servers import wait_until


class RawClient:
    """A plain paho client (MQTT 3.1.1) that records messages, SUBACK codes and the CONNACK code."""

    def __init__(self, port: int, username: str | None, password: str | None, tls_ca: str | None = None):
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"test-{uuid.uuid4().hex[:8]}",
                                  protocol=mqtt.MQTTv311)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls_ca:
            self.client.tls_set(ca_certs=tls_ca)
        self.messages: list[tuple[str, bytes, bool]] = []
        self.suback: dict[int, list] = {}
        self.connack = None
        self._lock = threading.Lock()
        self.client.on_connect = self._on_connect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.connect_async("127.0.0.1", port, keepalive=30)
        self.client.loop_start()

    def _on_connect(self, client, userdata, flags, rc, props):
        self.connack = rc

    def _on_message(self, client, userdata, msg):
        with self._lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def _on_subscribe(self, client, userdata, mid, codes, props):
        self.suback[mid] = list(codes)

    def wait_connack(self, timeout_s: float = 20.0):
        wait_until(lambda: self.connack is not None, timeout_s, what="CONNACK")
        return self.connack

    def subscribe(self, topic: str, qos: int = 1) -> list:
        """Subscribe (once connected) and return the SUBACK reason codes."""
        assert not self.wait_connack().is_failure
        rc, mid = self.client.subscribe(topic, qos)
        assert rc == 0, f"subscribe {topic}: {rc}"
        return wait_until(lambda: self.suback.get(mid), 20, what=f"SUBACK for {topic}")

    def publish(self, topic: str, payload: bytes | str, qos: int = 1, retain: bool = False) -> None:
        assert not self.wait_connack().is_failure
        self.client.publish(topic, payload, qos=qos, retain=retain).wait_for_publish(20)

    def on(self, topic: str) -> list[bytes]:
        with self._lock:
            return [p for t, p, _ in self.messages if t == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
