"""Hostile input and failing storage on the command path, against a real Mosquitto: every command gets
an ack, whatever the sender or the gateway's disk does."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import sqlite3
import uuid

import pytest

from telemetry.central_mqtt import CentralMqtt
from telemetry.commands import new_command
from telemetry.edge_mqtt import COMMAND_STORE_FAILED, COMMAND_STORE_RECOVERED, EdgeMqtt
from telemetry.fleet_state import FleetStateStore
from telemetry.mosquitto_acl import acl_text, gateway_username
from telemetry.mqtt_client import MqttSettings
from tests.servers import MosquittoServer, random_password

SITE = "hall-01"


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    users = {"central": random_password(), gateway_username(SITE): random_password()}
    with MosquittoServer(tmp_path_factory.mktemp("mqtt"), users=users,
                         acl=acl_text([SITE], central=["central"])) as server:
        server.passwords = users
        yield server


def settings(broker, user):
    return MqttSettings("127.0.0.1", broker.port, user, broker.passwords[user], min_reconnect_s=0.5,
                        max_reconnect_s=2)


@pytest.fixture
def central(broker):
    c = CentralMqtt(settings(broker, "central"), FleetStateStore([SITE]), "operator:test",
                    client_id=f"central-{uuid.uuid4().hex[:6]}", clean_session=True)
    c.start()
    assert c.wait_connected(20)
    yield c
    c.stop()


async def start_edge(broker, state_dir) -> EdgeMqtt:
    e = EdgeMqtt(SITE, settings(broker, gateway_username(SITE)), state_dir, client_id=f"edge-{uuid.uuid4().hex[:8]}")
    e.on_command(lambda cmd: {"done": cmd.kind})
    e.start()
    assert await e.wait_connected(20)
    return e


def send(central, kind="setpoint", payload=None, **kw) -> dict | None:
    """Publish one command and wait for its ack (None after 20 s)."""
    env = new_command(SITE, kind, payload or {"power_w": 500}, "operator:test", **kw)
    central.publish_raw(f"ems/v1/{SITE}/cmd/{kind}", json.dumps(env))
    return central.wait_ack(env["id"], 20)


# -- a damaged replay database at start (item 6) --------------------------------------------------

async def test_edge_with_a_damaged_replay_database_connects_and_acks_commands(broker, central, tmp_path):
    state = tmp_path / "state"
    state.mkdir()
    (state / f"commands-{SITE}.sqlite").write_bytes(b"\x00garbage, not SQLite\n" * 400)
    edge = await start_edge(broker, state)
    try:
        ack = await asyncio.to_thread(send, central)
        assert ack is not None and ack["status"] == "ok" and ack["outcome"] == {"done": "setpoint"}, ack
        assert [c.active for c in edge.alarm_conditions() if c.code == COMMAND_STORE_RECOVERED] == [True]
        assert len(list(state.glob(f"commands-{SITE}.sqlite.corrupt-*"))) == 1
    finally:
        await edge.aclose()


# -- a full disk under the replay database (item 7) -----------------------------------------------

class FullDisk:
    """Stands in for the replay store's connection: every write fails as on a full disk (ENOSPC)."""

    def __init__(self, db):
        self.db = db

    def execute(self, sql, *args):
        if sql.lstrip().upper().startswith(("INSERT", "UPDATE", "DELETE")):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return self.db.execute(sql, *args)

    def close(self):
        self.db.close()


def store_alarm(edge) -> tuple[bool, str, str]:
    (c,) = [c for c in edge.alarm_conditions() if c.code == COMMAND_STORE_FAILED]
    return c.active, c.severity, c.message


async def test_a_command_the_full_disk_cannot_record_gets_a_storage_failed_ack(broker, central, tmp_path):
    ran = []
    edge = await start_edge(broker, tmp_path / "state")
    edge.on_command(lambda cmd: ran.append(cmd.id))
    real = edge.replay._db
    try:
        edge.replay._db = FullDisk(real)
        ack = await asyncio.to_thread(send, central, command_id="c-full-1")
        assert ack is not None, "no ack at all"
        assert (ack["status"], ack["code"]) == ("failed", "storage_failed"), ack
        assert ack["error"] == "cannot record command c-full-1: [Errno 28] No space left on device"
        assert ran == []  # not recorded, so not executed
        active, severity, message = store_alarm(edge)
        assert active and severity == "critical" and "No space left on device" in message
        # Space again: the next command is recorded and executed, the alarm clears.
        edge.replay._db = real
        ack = await asyncio.to_thread(send, central, command_id="c-full-2")
        assert ack["status"] == "ok" and ran == ["c-full-2"] and store_alarm(edge)[0] is False
    finally:
        edge.replay._db = real
        await edge.aclose()


async def test_sqlite_full_is_a_storage_failure_too(broker, central, tmp_path):
    edge = await start_edge(broker, tmp_path / "state")
    try:
        db = edge.replay._db
        pages = db.execute("PRAGMA page_count").fetchone()[0]
        db.execute(f"PRAGMA max_page_count = {pages}")  # the file may not grow: SQLITE_FULL on the next page
        filler = 0
        with pytest.raises(sqlite3.OperationalError, match="full"):
            while True:
                filler += 1
                db.execute("INSERT INTO seen (id, expires_at, received_at, issued_by) VALUES (?, 4e9, 0, ?)",
                           (f"fill-{filler}", "x" * 200))
        ack = await asyncio.to_thread(send, central, command_id="c-sqlite-full")
        assert ack is not None and (ack["status"], ack["code"]) == ("failed", "storage_failed"), ack
        assert ack["error"] == "cannot record command c-sqlite-full: database or disk is full"
        assert store_alarm(edge)[0] is True
    finally:
        await edge.aclose()
