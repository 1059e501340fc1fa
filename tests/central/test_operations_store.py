"""Operations survive a restart of the central service, and what was never answered is sent again.

Unit tests of the stored OperationLog, then the service with a recording
link, then a real Mosquitto broker with a real EdgeMqtt hall: a command sent
while the broker is down, then a restart of the central service before the
broker is back, still reaches the hall (the hostile drill lost it on a slow
machine); and a command the hall took while the central service was away is
not counted as "refused: replayed" when the restarted service sends it again.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from ems.central.operations import KEPT_OPERATIONS, Operation, OperationLog, SiteCommand
from tests.central.conftest import RecordingLink as ParsingLink
from tests.central.conftest import ack_for, make_env

T0 = datetime(2026, 9, 15, 3, 0, tzinfo=timezone.utc)


class RecordingLink(ParsingLink):
    """Records the bytes published as well as the parsed envelopes."""

    def __init__(self):
        super().__init__()
        self.raw: list[bytes] = []

    def publish_raw(self, topic, payload, qos=1):
        self.raw.append(payload.encode() if isinstance(payload, str) else bytes(payload))
        super().publish_raw(topic, payload, qos)


def _op(i: int, sites=("hall-01",), expires_in=timedelta(minutes=5), at=T0) -> Operation:
    op = Operation(f"op-{i:04d}", "disaster", "tanaka", "typhoon", at + timedelta(seconds=i), {"sites": list(sites)})
    for s in sites:
        env = {"id": f"c-{i}-{s}", "site": s, "kind": "mode", "expires_at": (at + expires_in).isoformat()}
        op.commands.append(SiteCommand(s, env["id"], "mode", {"mode": "disaster_reserve"}, op.created_at,
                                       envelope=json.dumps(env), expires_at=at + expires_in))
    return op


def test_operations_and_acks_are_read_back_after_a_restart(tmp_path):
    log = OperationLog(timedelta(seconds=30), tmp_path / "operations.sqlite")
    log.add(_op(1, sites=("hall-01", "hall-02")))
    log.on_ack({"command_id": "c-1-hall-01", "site": "hall-01", "status": "ok", "outcome": {"mode": "x"}}, T0)
    assert [c for _, c in log.expire(T0 + timedelta(minutes=1))][0].site == "hall-02"
    log.close()
    again = OperationLog(timedelta(seconds=30), tmp_path / "operations.sqlite")
    op = again.get("op-0001")
    assert [(c.site, c.status, c.outcome) for c in op.commands] == [("hall-01", "ok", {"mode": "x"}),
                                                                      ("hall-02", "timeout", None)]
    assert op.commands[0].acked_at == T0 and op.created_at == T0 + timedelta(seconds=1)
    # A late ack still counts, and matches by command id after the restart.
    assert again.on_ack({"command_id": "c-1-hall-02", "site": "hall-02", "status": "ok"}, T0)[1].status == "ok"


def test_undelivered_is_unanswered_and_unexpired_oldest_first(tmp_path):
    log = OperationLog(timedelta(seconds=30), tmp_path / "operations.sqlite")
    log.add(_op(1, expires_in=timedelta(minutes=1)))
    log.add(_op(2, sites=("hall-01", "hall-02")))
    log.add(_op(3))
    log.on_ack({"command_id": "c-3-hall-01", "site": "hall-01", "status": "refused", "code": "rejected"}, T0)
    log.expire(T0 + timedelta(minutes=2))  # timed out is not answered: it may still arrive
    assert log.undelivered(T0) == []  # this run's own commands are in its MQTT client's hands
    log.close()
    log = OperationLog(timedelta(seconds=30), tmp_path / "operations.sqlite")
    log.add(_op(4))
    assert [c.command_id for _, c in log.undelivered(T0 + timedelta(minutes=2))] == ["c-2-hall-01", "c-2-hall-02"]
    assert log.undelivered(T0 + timedelta(minutes=5)) == []  # expired: the hall would refuse it


def db_count(path, table: str) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
    finally:
        db.close()


def test_a_replayed_refusal_of_our_second_sending_is_not_the_outcome(tmp_path):
    log = OperationLog(timedelta(seconds=30), tmp_path / "operations.sqlite")
    op = _op(1)
    log.add(op)
    replayed = {"command_id": "c-1-hall-01", "site": "hall-01", "status": "refused", "code": "replayed"}
    log.mark_resent(op, op.commands[0])
    assert log.on_ack(replayed, T0) is None and op.commands[0].status == "sent"
    assert log.on_ack({**replayed, "status": "ok", "code": None}, T0)[1].status == "ok"
    # Once the outcome is known, a refusal of the copy (it expired while the hall was away) does not undo it.
    assert log.on_ack({**replayed, "code": "expired"}, T0) is None and op.commands[0].status == "ok"
    # Nor is a copy we did not send: a broker restarted from an older persistence file sends it again.
    other = _op(2)
    log.add(other)
    log.on_ack({**replayed, "command_id": "c-2-hall-01", "status": "ok", "code": None}, T0)
    assert log.on_ack({**replayed, "command_id": "c-2-hall-01"}, T0) is None and other.commands[0].status == "ok"


def _dispatch(i: int, start_h: float, end_h: float, at=T0) -> Operation:
    op = Operation(f"op-d{i}", "dispatch", "tanaka", "peak cut", at, {})
    payload = {"power_w": 1000.0, "start": (at + timedelta(hours=start_h)).isoformat(),
               "end": (at + timedelta(hours=end_h)).isoformat(), "reason": "peak cut"}
    op.commands.append(SiteCommand("hall-01", f"c-d{i}", "dispatch", payload, at, envelope="{}",
                                   expires_at=at + timedelta(minutes=5)))
    return op


def test_what_replaces_a_command_goes_by_the_order_sent_not_by_the_clock(tmp_path):
    log = OperationLog(timedelta(seconds=30), tmp_path / "operations.sqlite")
    old = _op(1, at=T0 + timedelta(hours=1))  # a clock that later stepped back
    log.add(old)
    log.add(_dispatch(1, 1, 2))
    log.close()
    log = OperationLog(timedelta(seconds=30), tmp_path / "operations.sqlite")
    old = log.get("op-0001").commands[0]
    assert log.superseded_by(old) is None
    newer = _op(2, sites=("hall-02", "hall-01"))  # earlier by the clock, but sent after
    log.add(newer)
    assert log.superseded_by(old) is newer.commands[1]
    # A dispatch lease is replaced by a later one to the same hall whose time overlaps, and only by that.
    lease = log.get("op-d1").commands[0]
    log.add(_dispatch(2, 2, 3))
    assert log.superseded_by(lease) is None
    overlapping = _dispatch(3, 1.5, 2.5)
    log.add(overlapping)
    assert log.superseded_by(lease) is overlapping.commands[0]
    log.on_ack({"command_id": "c-d3", "site": "hall-01", "status": "refused", "code": "rejected"}, T0)
    assert log.superseded_by(lease) is None  # refused at the hall: it replaced nothing


def test_the_store_keeps_the_latest_operations_and_skips_a_row_it_cannot_read(tmp_path, caplog):
    path = tmp_path / "operations.sqlite"
    log = OperationLog(timedelta(seconds=30), path)
    for i in range(KEPT_OPERATIONS + 5):
        log.add(_op(i))
    log.close()
    db = sqlite3.connect(path)
    assert db.execute("SELECT COUNT(*) FROM operations").fetchone()[0] == KEPT_OPERATIONS
    db.execute("UPDATE operations SET head = '{\"id\": \"op-0100\"' WHERE id = 'op-0100'")
    db.commit()
    db.close()
    with caplog.at_level(logging.ERROR):
        again = OperationLog(timedelta(seconds=30), path)
    assert again.get("op-0100") is None and "op-0100" in caplog.text and "cannot be read" in caplog.text
    assert db_count(path, "commands") == KEPT_OPERATIONS  # the commands of dropped operations went with them
    assert again.get("op-0101") is not None and again.get("op-0004") is None and again.get("op-0504") is not None


def test_a_store_that_cannot_be_written_keeps_the_operation_in_memory(tmp_path, caplog):
    log = OperationLog(timedelta(seconds=30), tmp_path / "operations.sqlite")
    log._db.execute("PRAGMA query_only = ON")  # every write now fails, as on a full disk
    with caplog.at_level(logging.ERROR):
        log.add(_op(1))
        assert log.on_ack({"command_id": "c-1-hall-01", "site": "hall-01", "status": "ok"}, T0) is not None
    assert log.get("op-0001").commands[0].status == "ok" and "cannot store op-0001" in caplog.text


# -- the service -----------------------------------------------------------------------------------------
def _service(tmp_path, fleet, link):
    return make_env(tmp_path / "central", fleet, users={}, link_factory=lambda store: link,
                    operations=OperationLog(timedelta(seconds=30), tmp_path / "central" / "operations.sqlite"))


async def _run_briefly(service, until, timeout_s=10.0):
    await service.start()
    try:
        for _ in range(int(timeout_s / 0.05)):
            if until():
                return True
            await asyncio.sleep(0.05)
        return until()
    finally:
        await service.stop()


def test_a_restarted_service_sends_unanswered_commands_again_and_audits_it(tmp_path, fleet):
    first = _service(tmp_path, fleet, RecordingLink())
    op = first.service.switch_mode(["hall-01", "hall-02"], "disaster_reserve", "typhoon 14", "tanaka", "disaster")
    sent = first.link.commands()
    first.service._on_ack("hall-02", ack_for(sent[1]), first.service.clock())
    first.service.operations.close()

    link = RecordingLink()
    second = _service(tmp_path, fleet, link)
    assert asyncio.run(_run_briefly(second.service, lambda: link.commands()))
    # Exactly the unanswered one, byte for byte the envelope sent before (same id, same expiry).
    assert link.commands() == [sent[0]] and link.raw == [first.link.raw[0]]
    records = second.service.audit.records(action="command_resent")
    assert [(r.target, r.details["command_id"], r.details["operation"]) for r in records] == \
        [("hall-01", sent[0]["id"], op.id)]
    shown = second.service.operations.get(op.id).to_dict()
    assert [(c["site"], c["status"], c["resent"]) for c in shown["commands"]] == [("hall-01", "sent", 1),
                                                                                  ("hall-02", "ok", 0)]


def test_nothing_is_sent_again_when_every_command_was_answered_or_expired(tmp_path, fleet):
    first = _service(tmp_path, fleet, RecordingLink())
    first.service.switch_mode(["hall-01"], "disaster_reserve", "typhoon", "tanaka", "disaster")
    first.service._on_ack("hall-01", ack_for(first.link.commands()[0]), first.service.clock())
    first.service.command_ttl = timedelta(seconds=-1)  # already expired when sent
    first.service.switch_mode(["hall-02"], "disaster_reserve", "typhoon", "tanaka", "disaster")
    first.service.operations.close()
    link = RecordingLink()
    second = _service(tmp_path, fleet, link)
    asyncio.run(_run_briefly(second.service, lambda: False, timeout_s=1.5))
    assert link.commands() == [] and second.service.audit.records(action="command_resent") == []


# -- a real broker and a real EdgeMqtt -----------------------------------------------------------------------
@pytest.fixture
def mqtt(tmp_path, fleet):
    from telemetry.mosquitto_acl import acl_text, gateway_username
    from tests.servers import MosquittoServer, random_password, require_binary

    require_binary("mosquitto", "mosquitto")
    sites = [s.id for s in fleet.sites]
    users = {"central": random_password(), **{gateway_username(s): random_password() for s in sites}}
    with MosquittoServer(tmp_path / "mqtt", users=users, acl=acl_text(sites)) as broker:
        broker.passwords = users
        yield broker


def _central(tmp_path, fleet, broker, client_id):
    from telemetry.central_mqtt import CentralMqtt
    from telemetry.mqtt_client import MqttSettings

    def link(store):
        return CentralMqtt(MqttSettings("127.0.0.1", broker.port, "central", broker.passwords["central"],
                                        min_reconnect_s=0.5, max_reconnect_s=1), store, "central",
                           client_id=client_id)
    env = make_env(tmp_path / "central", fleet, users={}, link_factory=link,
                   operations=OperationLog(timedelta(seconds=30), tmp_path / "central" / "operations.sqlite"))
    return env


def _hall(tmp_path, fleet, broker):
    from telemetry.mosquitto_acl import gateway_username
    from tests.central.conftest import mqtt_settings
    from tests.central.edge_fakes import FakeHall

    return FakeHall(fleet.sites[0], mqtt_settings(broker, gateway_username(fleet.sites[0].id)), tmp_path / "edge")


async def _until(predicate, timeout_s: float, what: str) -> None:
    for _ in range(int(timeout_s / 0.05)):
        if predicate():
            return
        await asyncio.sleep(0.05)
    assert predicate(), what


def test_a_command_sent_while_the_broker_is_down_survives_a_central_restart(tmp_path, fleet, mqtt):
    client_id = f"central-{uuid.uuid4().hex[:6]}"
    hall = _hall(tmp_path, fleet, mqtt)
    site = fleet.sites[0].id

    async def scenario():
        hall.start()
        assert await hall.edge.wait_connected(20)
        first = _central(tmp_path, fleet, mqtt, client_id)
        await first.service.start()
        await _until(lambda: first.link.wait_connected(0), 20, "central connected")
        mqtt.stop()  # saves the sessions, as the drill's broker does every second
        await _until(lambda: not first.link.connected, 20, "central saw the broker go")
        op = first.service.switch_mode([site], "disaster_reserve", "typhoon while the broker is down", "tanaka",
                                       "disaster")
        await first.service.stop()  # the command is only in this process' MQTT client: gone with it
        first.service.operations.close()
        mqtt.start()
        second = _central(tmp_path, fleet, mqtt, client_id)
        await second.service.start()
        try:
            await _until(lambda: second.service.operations.get(op.id).commands[0].status == "ok", 30,
                         "the restarted central's ack")
        finally:
            await second.service.stop()
        return op

    try:
        op = asyncio.run(scenario())
    finally:
        hall.stop()
    assert hall.mode == "disaster_reserve" and [c.id for c in hall.commands] == [op.commands[0].command_id]


def test_the_hall_refuses_the_second_copy_and_its_first_answer_counts(tmp_path, fleet, mqtt):
    client_id = f"central-{uuid.uuid4().hex[:6]}"
    site = fleet.sites[0].id

    async def scenario():
        away = _hall(tmp_path, fleet, mqtt)
        away.start()
        assert await away.edge.wait_connected(20)
        away.stop()  # the hall's uplink is down: the broker keeps its commands for its session
        first = _central(tmp_path, fleet, mqtt, client_id)
        await first.service.start()
        await _until(lambda: first.link.wait_connected(0), 20, "central connected")
        op = first.service.switch_mode([site], "disaster_reserve", "typhoon", "tanaka", "disaster")
        await asyncio.sleep(0.3)  # the broker has it (QoS 1), but the central cannot know that
        await first.service.stop()
        first.service.operations.close()
        second = _central(tmp_path, fleet, mqtt, client_id)
        await second.service.start()
        try:
            await _until(lambda: second.service.audit.records(action="command_resent"), 20, "the second sending")
            hall = _hall(tmp_path, fleet, mqtt)  # back: both copies wait for it
            hall.start()
            try:
                await _until(lambda: hall.edge.counts.get("refused_replayed", 0) == 1, 20, "the hall refused the copy")
                await _until(lambda: second.service.operations.get(op.id).commands[0].status != "sent", 20, "ack")
                await asyncio.sleep(0.5)  # the refusal of the copy has arrived too
                acks = [r.details for r in second.service.audit.records(action="ack")]
                return op, second.service.operations.get(op.id).commands[0], hall, acks
            finally:
                hall.stop()
        finally:
            await second.service.stop()

    op, cmd, hall, acks = asyncio.run(scenario())
    assert cmd.status == "ok" and cmd.resent == 1, cmd
    assert [c.id for c in hall.commands] == [cmd.command_id] and hall.mode == "disaster_reserve"  # executed once
    # Both answers are in the audit; only the first is the command's outcome.
    assert sorted((a["status"], a["code"]) for a in acks) == [("ok", None), ("refused", "replayed")], acks


def test_a_command_replaced_by_a_newer_one_is_not_sent_again(tmp_path, fleet):
    """A return to VPP lost in a restart must not arrive after the JMA switch that followed it."""
    first = _service(tmp_path, fleet, RecordingLink())
    first.service.switch_mode(["hall-01", "hall-02"], "vpp", "event over", "tanaka", "return_to_vpp")
    first.service.operations.close()
    link = RecordingLink()
    link.started = False
    second = _service(tmp_path, fleet, link)
    jma = second.service.switch_mode(["hall-01", "hall-03"], "disaster_reserve", "JMA storm warning",
                                     "jma-warning-service", "jma_warning")
    refused = second.service.switch_mode(["hall-02"], "disaster_reserve", "test", "tanaka", "disaster")
    second.service._on_ack("hall-02", {**ack_for(link.commands()[-1], status="refused"), "site": "hall-02"},
                           second.service.clock())
    assert asyncio.run(_run_briefly(second.service, lambda: len(link.commands()) > 3))
    again = link.commands()[3:]
    # hall-01's return is replaced by the JMA switch; hall-02's refused switch replaces nothing.
    assert [(e["site"], e["payload"]["mode"]) for e in again] == [("hall-02", "vpp")], again
    assert jma.commands[0].status == "sent" and refused.commands[0].status == "refused"


def test_a_command_is_in_the_log_before_it_is_published(tmp_path, fleet):
    """An ack that comes back at once finds its command (it used to be logged after publishing)."""
    link = RecordingLink()
    env = _service(tmp_path, fleet, link)
    answered = []

    def publish_and_answer(topic, payload, qos=1):
        RecordingLink.publish_raw(link, topic, payload, qos)
        answered.append(env.service.operations.on_ack(ack_for(json.loads(payload)), env.service.clock()))

    link.publish_raw = publish_and_answer
    op = env.service.switch_mode(["hall-01", "hall-02"], "disaster_reserve", "typhoon", "tanaka", "disaster")
    assert all(a is not None for a in answered) and [c.status for c in op.commands] == ["ok", "ok"]
