"""Fake halls for the command path: one EdgeMqtt per hall that acks mode and dispatch commands and
publishes its state as the real daemon would (mode, SoC, hours left)."""

from __future__ import annotations

import threading
from pathlib import Path

from telemetry.commands import CommandRejected
from telemetry.edge_mqtt import EdgeMqtt
from telemetry.mqtt_client import MqttSettings
from tests.central.conftest import state_message


class FakeHall:
    """Acks commands from paho's thread (started outside an event loop); ``refuse``: reject mode commands."""

    def __init__(self, site, settings: MqttSettings, state_dir: Path, refuse: bool = False):
        self.site = site
        self.refuse = refuse
        self.mode, self.reason = "vpp", "default"
        self.commands: list = []
        self._lock = threading.Lock()
        self.edge = EdgeMqtt(site.id, settings, state_dir, client_id=f"fake-{site.id}")
        self.edge.on_command(self.handle)

    def state(self) -> dict:
        return state_message(self.site.id, mode=self.mode, reason=self.reason, capacity_wh=self.site.battery.capacity_wh,
                             hours_left=13.0 if self.mode == "disaster_reserve" else 6.0, soc_pct=55.0)

    def handle(self, cmd):
        with self._lock:
            self.commands.append(cmd)
        if cmd.kind == "mode":
            if self.refuse:
                raise CommandRejected("the hall is islanded; mode change deferred")
            self.mode, self.reason = cmd.payload.mode, cmd.payload.reason
            self.edge.publish_state(self.state())
            return {"mode": self.mode}
        if cmd.kind == "dispatch":
            return {"lease_until": cmd.payload.end.isoformat(), "power_w": cmd.payload.power_w}
        raise CommandRejected(f"{cmd.kind} not supported by the fake")

    def start(self) -> None:
        self.edge.start()
        self.edge.publish_state(self.state())

    def stop(self) -> None:
        self.edge.stop()
