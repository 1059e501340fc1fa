"""Hostile input and failing storage on the command path, against a real Mosquitto: every command gets
an ack, whatever the sender or the gateway's disk does."""

from __future__ import annotations

import asyncio
import errno
import json
import os
import sqlite3
import uuid
from datetime import datetime, timezone

import pytest

from telemetry import commands
from telemetry.central_mqtt import CentralMqtt
from telemetry.commands import CommandRefused, new_command, parse_command
from telemetry.edge_mqtt import COMMAND_STORE_FAILED, COMMAND_STORE_RECOVERED, EdgeMqtt
from telemetry.fleet_state import FleetStateStore
from telemetry.mosquitto_acl import acl_text, gateway_username
from telemetry.mqtt_client import MqttSettings
from tests.servers import MosquittoServer, random_password, wait_until
from tests.telemetry.mqtt_helpers import RawClient

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


# -- hostile documents and unexpected exceptions (item 8) -----------------------------------------

@pytest.fixture
def acks(broker):
    """Every ack of the site as the central service's user sees it on the wire (also those without an id)."""
    spy = RawClient(broker.port, "central", broker.passwords["central"])
    assert not spy.subscribe(f"ems/v1/{SITE}/ack")[0].is_failure
    yield lambda: [json.loads(p) for p in spy.on(f"ems/v1/{SITE}/ack")]
    spy.close()


async def wait_for_ack(acks, pred, timeout_s=20.0) -> dict:
    found = await asyncio.to_thread(wait_until, lambda: [a for a in acks() if pred(a)], timeout_s,
                                    what="the ack")
    return found[-1]


async def test_a_command_of_100000_nested_brackets_gets_an_error_ack(broker, central, acks, tmp_path):
    edge = await start_edge(broker, tmp_path / "state")
    try:
        central.publish_raw(f"ems/v1/{SITE}/cmd/mode", b"[" * 100_000 + b"]" * 100_000)
        deep = b'{"id": "c-deep", "payload": ' + b"[" * 20_000 + b"]" * 20_000 + b"}"  # under the size limit
        central.publish_raw(f"ems/v1/{SITE}/cmd/mode", deep)
        first = await wait_for_ack(acks, lambda a: "too large" in (a["error"] or ""))
        assert (first["status"], first["code"], first["command_id"], first["kind"]) == \
            ("refused", "malformed", None, "mode")
        assert first["error"] == "too large: 200000 bytes (at most 65536)"
        second = await wait_for_ack(acks, lambda a: "nested deeper" in (a["error"] or ""))
        # refused before parsing, so without the id: a real command is never nested (the central checks it)
        assert (second["status"], second["code"], second["command_id"]) == ("refused", "malformed", None)
        # The gateway still takes commands.
        ack = await asyncio.to_thread(send, central)
        assert ack is not None and ack["status"] == "ok"
    finally:
        await edge.aclose()


async def test_an_unexpected_exception_while_parsing_or_handling_still_gets_an_ack(broker, central, acks, tmp_path,
                                                                                   monkeypatch):
    import telemetry.edge_mqtt as edge_mqtt

    edge = await start_edge(broker, tmp_path / "state")
    try:
        def broken_parser(*args, **kwargs):
            raise KeyError("a bug in the parser")

        with monkeypatch.context() as m:
            m.setattr(edge_mqtt, "parse_command", broken_parser)
            central.publish_raw(f"ems/v1/{SITE}/cmd/mode", b'{"id": "c-bug-1"}')
            ack = await wait_for_ack(acks, lambda a: a["code"] == "internal_error")
        assert (ack["status"], ack["command_id"], ack["kind"]) == ("failed", None, "mode")
        assert ack["error"] == "the site could not handle the command: KeyError: 'a bug in the parser'"

        def broken_record(cmd):
            raise TypeError("a bug after parsing")

        with monkeypatch.context() as m:
            m.setattr(edge.replay, "record", broken_record)
            ack = await asyncio.to_thread(send, central, command_id="c-bug-2")
        assert ack is not None and (ack["status"], ack["code"]) == ("failed", "internal_error"), ack
        assert "TypeError: a bug after parsing" in ack["error"]
        assert edge.counts["internal_error"] == 2
        ack = await asyncio.to_thread(send, central)  # and it goes on taking commands
        assert ack is not None and ack["status"] == "ok"
    finally:
        await edge.aclose()


# -- the parser's bounds, without a broker ---------------------------------------------------------

NOW = datetime(2025, 9, 1, 12, 0, tzinfo=timezone.utc)


def refusal(raw) -> CommandRefused:
    with pytest.raises(CommandRefused) as info:
        parse_command(raw, SITE, "mode", NOW)
    return info.value


def test_recursion_in_the_json_parser_is_a_refusal(monkeypatch):
    monkeypatch.setattr(commands, "MAX_COMMAND_BYTES", 10**7)
    monkeypatch.setattr(commands, "MAX_NESTING", 10**7)  # the pre-check off: the parser itself recurses too deep
    r = refusal(b"[" * 100_000 + b"]" * 100_000)
    assert r.code == "malformed" and "nested too deeply" in r.message


def test_brackets_inside_strings_do_not_count_as_nesting():
    env = new_command(SITE, "mode", {"mode": "vpp", "reason": "[[[[[[[[[[{{{{{{{{{{ \\\" [[[[[[[["}, "op", now=NOW)
    cmd = parse_command(json.dumps(env), SITE, "mode", NOW)  # as text, too
    assert cmd.payload.reason.startswith("[[[[")
    assert refusal(b'{"a": "\\\\"' + b", [" * 9 + b"]" * 9 + b"}").message.endswith("deeper than 8 levels")


def test_nesting_at_the_limit_is_parsed_and_refused_for_its_shape():
    r = refusal(b'{"id": "c-1", "x": ' + b"[" * 7 + b"]" * 7 + b"}")
    assert r.code == "malformed" and "nested" not in r.message and "x: Extra inputs" in r.message
