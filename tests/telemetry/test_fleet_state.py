"""FleetStateStore: the central view of the fleet, fed message by message."""

import json

import pytest

from telemetry.fleet_state import FleetStateStore


def test_state_online_ack_alarm_plan_per_site():
    store = FleetStateStore(["hall-01", "hall-02"])
    seen = []
    store.add_listener(lambda view, leaf: seen.append((view.site, leaf)))
    assert store.get("hall-02").online is None
    assert store.handle("ems/v1/hall-01/state", json.dumps({"soc_pct": 50}).encode()) == "hall-01"
    store.handle("ems/v1/hall-01/online", b'{"online": true}')
    store.handle("ems/v1/hall-01/ack", b'{"command_id": "c1", "status": "ok"}')
    store.handle("ems/v1/hall-01/alarm", b'{"code": "stale"}')
    store.handle("ems/v1/hall-01/plan", b'{"slots": []}')
    v = store.get("hall-01")
    assert v.state == {"soc_pct": 50} and v.online is True and v.last_ack["command_id"] == "c1"
    assert v.last_alarm == {"code": "stale"} and v.plan == {"slots": []} and v.state_at is not None
    store.handle("ems/v1/hall-01/online", b'{"online": false}')
    assert store.get("hall-01").online is False and store.online_sites() == []
    assert seen[0] == ("hall-01", "state") and len(seen) == 6
    assert list(store.snapshot()) == ["hall-01", "hall-02"]


def test_unknown_site_is_added_and_foreign_topics_ignored():
    store = FleetStateStore()
    assert store.handle("ems/v1/hall-09/online", b'{"online": true}') == "hall-09"
    assert store.online_sites() == ["hall-09"]
    for topic in ("ems/v2/hall-01/state", "ems/v1/hall-01/cmd/mode", "other/topic", "ems/v1/HALL/state",
                  "ems/v1/hall-01/state/extra", "ems/v1/hall-01/telemetry"):
        assert store.handle(topic, b"{}") is None
    with pytest.raises(KeyError):
        store.get("hall-01")


@pytest.mark.parametrize("payload, problem", [(b"{not json", "not JSON"), (b"[1, 2]", "not a JSON object"),
                                               (b"\xff\xfe", "not JSON")])
def test_bad_payload_is_counted_and_keeps_the_last_good_state(payload, problem):
    store = FleetStateStore(["hall-01"])
    store.handle("ems/v1/hall-01/state", b'{"soc_pct": 40}')
    store.handle("ems/v1/hall-01/state", payload)
    v = store.get("hall-01")
    assert v.state == {"soc_pct": 40} and v.bad_payloads == 1
    assert problem in v.last_error and "ems/v1/hall-01/state" in v.last_error


def test_empty_retained_message_clears():
    store = FleetStateStore(["hall-01"])
    store.handle("ems/v1/hall-01/state", b'{"a": 1}')
    store.handle("ems/v1/hall-01/state", b"")
    assert store.get("hall-01").state is None


def test_listener_error_does_not_break_the_store():
    store = FleetStateStore()
    store.add_listener(lambda v, leaf: 1 / 0)
    assert store.handle("ems/v1/hall-01/online", b'{"online": true}') == "hall-01"
    assert store.get("hall-01").online
