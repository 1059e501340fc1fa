"""EdgeMqtt's command path without a broker: redelivery vs replay, handler outcomes, no event loop."""

import json
from datetime import datetime, timedelta, timezone

import pytest

from telemetry.commands import new_command
from telemetry.edge_mqtt import EdgeMqtt
from telemetry.mqtt_client import MqttSettings

NOW = datetime(2025, 9, 1, 12, 0, tzinfo=timezone.utc)


@pytest.fixture
def edge(tmp_path):
    e = EdgeMqtt("hall-01", MqttSettings("127.0.0.1", 1), tmp_path, clock=lambda: NOW)  # never connected
    e.sent = []
    e._client.publish = lambda topic, payload, qos=0, retain=False: e.sent.append((topic, json.loads(payload)))
    yield e
    e.replay.close()


def command(**kw):
    return json.dumps(new_command("hall-01", "setpoint", {"power_w": 1500}, "op", now=NOW, **kw)).encode()


def test_qos1_redelivery_repeats_the_original_ack_and_does_not_execute_again(edge):
    runs = []
    edge.on_command(lambda cmd: runs.append(cmd.id) or {"applied_w": 1500})
    raw = command(command_id="c-1")
    edge._receive("ems/v1/hall-01/cmd/setpoint", raw)
    edge._receive("ems/v1/hall-01/cmd/setpoint", raw, redelivery=True)
    assert runs == ["c-1"] and edge.counts["redelivered"] == 1
    assert [a["status"] for _, a in edge.sent] == ["ok", "ok"]
    assert edge.sent[0] == edge.sent[1] and edge.sent[0][0] == "ems/v1/hall-01/ack"
    # the same message without the DUP flag is a replay: refused, still not executed
    edge._receive("ems/v1/hall-01/cmd/setpoint", raw)
    assert runs == ["c-1"] and edge.sent[-1][1]["code"] == "replayed"


def test_without_a_handler_the_command_is_refused_as_unavailable(edge):
    edge._receive("ems/v1/hall-01/cmd/setpoint", command())
    ack = edge.sent[-1][1]
    assert (ack["status"], ack["code"]) == ("refused", "unavailable")


def test_async_handler_needs_an_event_loop(edge):
    async def handler(cmd):
        return 1

    edge.on_command(handler)
    edge._receive("ems/v1/hall-01/cmd/setpoint", command())
    ack = edge.sent[-1][1]
    assert ack["status"] == "failed" and "outside an event loop" in ack["error"]


def test_foreign_topics_and_unencodable_outcomes(edge):
    edge.on_command(lambda cmd: object())
    edge._receive("ems/v1/hall-02/cmd/setpoint", command())
    assert edge.sent[-1][1]["code"] == "wrong_kind" and "not on one of this site" in edge.sent[-1][1]["error"]
    edge._receive("ems/v1/hall-01/cmd/setpoint", command())
    assert edge.sent[-1][1]["status"] == "ok" and edge.sent[-1][1]["outcome"].startswith("<object")


def test_publish_while_never_connected_keeps_state_for_later(edge):
    edge.publish_state({"soc_pct": 40, "at": NOW})
    edge.publish_plan({"slots": []})
    assert edge.publish_telemetry({"x": 1}) is False and edge.sent == []
    assert json.loads(edge._last_state) == {"soc_pct": 40, "at": "2025-09-01T12:00:00+00:00"}
    with pytest.raises(TypeError):
        edge.publish_state({"bad": object()})
