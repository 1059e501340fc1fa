"""Pieces of the fleet runtime: ACL matching, the embedded broker, the history store and counted outboxes,
port relocation, the drill clock."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from ems.sim.drill.recorder import DrillClock
from ems.sim.runtime import relocated_fleet
from ems.sim.broker import AclRules, EmbeddedBroker, filter_covers, fleet_passwords, make_broker
from ems.sim.telemetry_count import CountingOutbox, HistoryStore, count_telemetry
from telemetry.mosquitto_acl import acl_text


@pytest.mark.parametrize("allowed, topic, ok", [
    ("ems/v1/#", "ems/v1/hall-01/state", True),
    ("ems/v1/#", "ems/v1/+/state", True),
    ("ems/v1/+/cmd/#", "ems/v1/hall-01/cmd/mode", True),
    ("ems/v1/+/cmd/#", "ems/v1/hall-01/state", False),
    ("ems/v1/hall-01/cmd/#", "ems/v1/hall-02/cmd/mode", False),
    ("ems/v1/hall-01/cmd/#", "ems/v1/+/cmd/mode", False),  # a wildcard asks for more than one hall
    ("ems/v1/hall-01/state", "ems/v1/hall-01/state", True),
    ("ems/v1/hall-01/state", "ems/v1/hall-01/state/x", False),
    ("ems/v1/+/state", "ems/v1/#", False),
])
def test_filter_covers(allowed, topic, ok):
    assert filter_covers(allowed, topic) is ok


def test_acl_rules_follow_the_production_acl():
    rules = AclRules.from_acl_text(acl_text(["hall-01", "hall-02"], central=("central",)))
    assert rules.allows("central", "ems/v1/hall-02/cmd/mode", write=True)
    assert not rules.allows("central", "ems/v1/hall-02/state", write=True)
    assert rules.allows("central", "ems/v1/+/state", write=False)
    assert rules.allows("edge-hall-01", "ems/v1/hall-01/ack", write=True)
    assert not rules.allows("edge-hall-01", "ems/v1/hall-02/ack", write=True)
    assert rules.allows("edge-hall-01", "ems/v1/hall-01/cmd/#", write=False)
    assert not rules.allows("edge-hall-01", "ems/v1/hall-02/cmd/#", write=False)
    assert not rules.allows("nobody", "ems/v1/hall-01/state", write=False)
    assert not rules.allows(None, "ems/v1/hall-01/state", write=False)


def test_passwords_are_random_per_run():
    a, b = fleet_passwords(["hall-01"]), fleet_passwords(["hall-01"])
    assert set(a) == {"central", "edge-hall-01"}
    assert a["central"] != b["central"] and len(a["central"]) >= 24


def test_unknown_broker_kind(tmp_path):
    with pytest.raises(ValueError, match="auto, mosquitto or embedded"):
        make_broker("rabbit", tmp_path, ["hall-01"])


def _client(port: int, user: str, password: str, results: list, subscribe: str | None = None):
    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{user}-{time.monotonic_ns()}")
    c.username_pw_set(user, password)
    connected = threading.Event()

    def on_connect(client, userdata, flags, rc, props):
        results.append((user, str(rc)))
        if not rc.is_failure and subscribe:
            client.subscribe(subscribe, 1)
        connected.set()

    c.on_connect = on_connect
    c.on_message = lambda client, userdata, msg: results.append((msg.topic, msg.payload))
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert connected.wait(15), f"{user} got no CONNACK"
    return c


def wait_for(pred, timeout_s=15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def test_embedded_broker_authenticates_and_applies_the_acl():
    broker = EmbeddedBroker(["hall-01", "hall-02"])
    broker.start()
    clients = []
    try:
        got: list = []
        pw = broker.passwords
        clients.append(_client(broker.port, "central", pw["central"], got, subscribe="ems/v1/#"))
        edge = _client(broker.port, "edge-hall-01", pw["edge-hall-01"], got)
        clients.append(edge)
        intruder: list = []
        clients.append(_client(broker.port, "edge-hall-01", "wrong-" + pw["edge-hall-01"], intruder))
        assert intruder and intruder[0][1] != "Success"
        time.sleep(0.3)  # let the central's SUBACK arrive
        edge.publish("ems/v1/hall-02/state", b"not mine", qos=1)  # refused by the ACL
        edge.publish("ems/v1/hall-01/state", b"mine", qos=1)
        assert wait_for(lambda: ("ems/v1/hall-01/state", b"mine") in got)
        time.sleep(0.3)
        assert ("ems/v1/hall-02/state", b"not mine") not in got
        assert broker.running
    finally:
        for c in clients:
            c.loop_stop()
            c.disconnect()
        broker.stop()
    assert not broker.running


def test_history_store_keeps_a_resent_point_once(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite")
    store.write(["m,site=a v=1 1", "m,site=a v=2 2"])
    store.write(["m,site=a v=2 2", "n,site=a v=3 3"])  # the shipper re-sends after a crash
    assert store.count() == 3 and store.count("m") == 2 and store.count("n") == 1
    store.close()


def test_counted_outboxes_find_a_lost_point(tmp_path):
    store = HistoryStore(tmp_path / "h.sqlite")
    a = CountingOutbox(tmp_path / "a.sqlite")
    b = CountingOutbox(tmp_path / "b.sqlite")
    a.put(["m,site=a v=1 1", "m,site=a v=2 2"])
    b.put(["m,site=b v=1 1"])
    rows = a.fetch(10)
    store.write([line for _, line in rows])
    a.ack(rows[0][0], rows[-1][0])
    count = count_telemetry([a, b], store)
    assert (count.produced, count.stored, count.pending, count.lost) == (3, 2, 1, 0)
    b.ack(*[r[0] for r in b.fetch(1)] * 2)  # deleted without being stored: lost
    count = count_telemetry([a, b], store)
    assert (count.produced, count.stored, count.pending, count.lost) == (3, 2, 0, 1)
    assert count.to_dict()["lost"] == 1
    for x in (a, b, store):
        x.close()


def test_relocated_fleet_moves_halls_to_free_ports(fleet):
    moved = relocated_fleet(fleet, free_ports=True, cycle_s=0.25, poll_s=0.2)
    for old, new in zip(fleet.sites, moved.sites):
        assert new.simulator.port != old.simulator.port
        assert {d.transport.port for d in new.devices} == {new.simulator.port}
        assert new.control.cycle_s == 0.25
        assert new.device("battery").period_s == 0.2 and new.device("meter").period_s == 0.2
        # PV keeps its slower poll, but within half the stale limit at the faster cycle (5 × 0.25 s).
        assert new.device("pv").period_s == min(old.device("pv").period_s, 0.5 * 5 * 0.25)
    assert len({s.simulator.port for s in moved.sites}) == len(moved.sites)
    same = relocated_fleet(fleet, free_ports=False, cycle_s=None, poll_s=None)
    assert [s.simulator.port for s in same.sites] == [s.simulator.port for s in fleet.sites]


def test_drill_clock_waits_for_release_then_runs_fast():
    start = datetime(2025, 9, 15, tzinfo=timezone.utc)
    clock = DrillClock(start, 3600)
    time.sleep(0.05)
    assert clock.now() == start and clock.sim_of_wall(datetime.now(timezone.utc)) == start
    clock.release()
    time.sleep(0.1)
    elapsed = (clock.now() - start).total_seconds()
    assert 300 <= elapsed <= 3600 * 5  # at least 0.1 s × 3600 (generous upper bound for a loaded machine)
    wall = clock.released_wall + timedelta(seconds=2)
    assert clock.sim_of_wall(wall) == start + timedelta(hours=2)
    with pytest.raises(ValueError):
        DrillClock(datetime(2025, 9, 15), 10)
    with pytest.raises(ValueError):
        DrillClock(start, 0)



def test_relocated_fleet_never_reuses_a_port_the_os_hands_out_twice(monkeypatch):
    import ems.sim.runtime as rt
    from ems.config import load_fleet

    ports = iter([40001, 40001, 40002, 40002, 40002] + list(range(40003, 40100)))
    monkeypatch.setattr(rt, "free_port", lambda: next(ports))
    fleet = load_fleet(Path(__file__).resolve().parents[2] / "config" / "fleet.yaml")
    moved = rt.relocated_fleet(fleet, free_ports=True, cycle_s=None, poll_s=None)
    sim_ports = [s.simulator.port for s in moved.sites]
    assert len(set(sim_ports)) == len(sim_ports) == 14
