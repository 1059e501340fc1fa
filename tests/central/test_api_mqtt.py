"""The command path over a real Mosquitto (users and ACL as in production): the API sends mode and
dispatch commands, fake halls (EdgeMqtt) ack them, acks come back into operations and the audit log.
Also the JMA trigger end to end: sample XML in a folder → disaster mode at the halls of the warned areas."""

from __future__ import annotations

import asyncio
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from ems.central.service import JMA_ACTOR, JmaParts
from telemetry.central_mqtt import CentralMqtt
from tests.central.conftest import Api, make_env, mqtt_settings
from tests.servers import wait_until

SAMPLES = Path(__file__).resolve().parent / "jma" / "samples"
REFUSING = "hall-14"


@pytest.fixture(scope="module")
def live(broker, halls, fleet, tmp_path_factory):
    def link(store):
        return CentralMqtt(mqtt_settings(broker, "central"), store, issued_by="central", client_id="central-test")

    env = make_env(tmp_path_factory.mktemp("central"), fleet, link_factory=link,
                   ack_timeout=timedelta(seconds=20))
    api = Api(env)
    client = api.bearer("omar")  # entering the client starts the service (and its MQTT link)
    assert env.link.wait_connected(30)
    wait_until(lambda: all(r["mode"] == "vpp" and r["online"] for r in env.service.fleet_rows()), 30,
               what="every hall's retained state")
    yield env, api, client
    api.close()


def wait_op_done(client, op_id, timeout_s=30.0) -> dict:
    return wait_until(lambda: (lambda d: d if d["counts"]["sent"] == 0 else None)(
        client.get(f"/api/operations/{op_id}").json()), timeout_s, 0.1, what=f"acks of {op_id}")


def test_disaster_switch_reaches_every_hall_and_every_ack_comes_back(live, halls):
    env, api, client = live
    r = client.post("/api/disaster/switch", json={"scope": "all", "reason": "台風10号接近 typhoon No.10", "confirm": True})
    assert r.status_code == 200, r.text
    op = wait_op_done(client, r.json()["id"])
    status = {c["site"]: c["status"] for c in op["commands"]}
    assert len(status) == 14
    assert status.pop(REFUSING) == "refused"
    assert set(status.values()) == {"ok"}
    refused = next(c for c in op["commands"] if c["site"] == REFUSING)
    assert "islanded" in refused["error"]
    # The halls got the command with who and why, and report the new mode back (the refusing one stays in vpp).
    cmd = halls["hall-01"].commands[-1]
    assert (cmd.payload.mode, cmd.payload.reason, cmd.issued_by) == ("disaster_reserve", "台風10号接近 typhoon No.10",
                                                                     "user:omar")
    wait_until(lambda: sum(r["mode"] == "disaster_reserve" for r in env.service.fleet_rows()) == 13, 20)
    acks = env.service.audit.records(action="ack", limit=100)
    assert {a.target for a in acks if a.details.get("operation") == op["id"]} == set(halls)
    # The return to VPP is its own action, for chosen halls only.
    r = client.post("/api/disaster/return", json={"scope": "sites", "sites": ["hall-01", "hall-02"],
                                                  "reason": "warning lifted", "confirm": True})
    op = wait_op_done(client, r.json()["id"])
    assert {c["site"]: c["status"] for c in op["commands"]} == {"hall-01": "ok", "hall-02": "ok"}
    wait_until(lambda: halls["hall-02"].mode == "vpp" and halls["hall-03"].mode == "disaster_reserve", 10)


def test_vpp_dispatch_is_allocated_sent_and_acked(live, halls):
    env, api, client = live
    client.post("/api/disaster/return", json={"scope": "all", "reason": "back to normal", "confirm": True})
    wait_until(lambda: all(r["mode"] == "vpp" for r in env.service.fleet_rows()), 20)
    now = datetime.now(timezone.utc)
    start = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    body = {"power_kw": 20, "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat(),
            "reason": "aggregator call 42"}
    operator = api.bearer("otto")
    pre = operator.post("/api/vpp/preview", json=body).json()
    assert pre["status"] == "optimal" and abs(sum(pre["allocated_w"]) / 2 - 20_000) < 1
    assert pre["excluded"] == {}
    r = operator.post("/api/vpp/dispatch", json=body)
    assert r.status_code == 200, r.text
    op = wait_op_done(client, r.json()["id"])
    assert op["commands"] and {c["status"] for c in op["commands"]} == {"ok"}
    sent = sum(c["payload"]["power_w"] for c in op["commands"] if c["payload"]["start"] == start.isoformat())
    assert abs(sent - 20_000) < 5  # idle baselines: the targets add up to the request in the first slot
    got = [c for h in halls.values() for c in h.commands if c.kind == "dispatch"]
    assert len(got) == len(op["commands"]) and all(c.issued_by == "user:otto" for c in got)
    recs = env.service.audit.records(action="dispatch", limit=100)
    assert {r.details["command_id"] for r in recs} == {c["command_id"] for c in op["commands"]}


def test_jma_warning_switches_the_warned_halls_end_to_end(live, halls, tmp_path, fleet):
    from ems.central.jma.feed import AtomFeedReader
    from ems.central.jma.trigger import WarningTrigger

    env, api, client = live
    client.post("/api/disaster/return", json={"scope": "all", "reason": "reset", "confirm": True})
    wait_until(lambda: all(h.mode == "vpp" for h in halls.values()), 20)
    folder = tmp_path / "jma"
    folder.mkdir()
    env.service.jma = JmaParts(AtomFeedReader(str(folder), tmp_path / "seen.sqlite"), WarningTrigger(fleet.sites),
                               poll_s=3600, source=str(folder))
    env.service.jma_status.enabled = True
    shutil.copy(SAMPLES / "vpww53_tottori_issued.xml", folder)
    run = lambda: asyncio.run(env.service.poll_jma_once())  # noqa: E731
    switched = run()
    # 大雨警報 for 鳥取市 (hall-01, hall-02) and 暴風警報 for 岩美町 (hall-07); an advisory (米子市) does not count.
    expect = {s.id for s in fleet.sites if s.area_code in ("3120100", "3130200")}
    assert expect == {"hall-01", "hall-02", "hall-07"} and switched == 3
    wait_until(lambda: {h for h, f in halls.items() if f.mode == "disaster_reserve"} == expect, 20,
               what="warned halls in disaster mode")
    cmd = halls["hall-07"].commands[-1]
    assert cmd.issued_by == JMA_ACTOR and "暴風" in cmd.payload.reason
    switches = [r for r in env.service.audit.records(action="mode_switch", limit=1000) if r.actor == JMA_ACTOR]
    assert {r.target for r in switches} == expect
    assert {r.target for r in env.service.audit.records(action="jma_warning", limit=100)} == expect
    # The same entry is never read twice; the continuing report changes nothing.
    assert run() == 0
    shutil.copy(SAMPLES / "vpww53_tottori_continuing.xml", folder)
    assert run() == 0
    # Lifted: a suggestion for staff, no command.
    before = sum(len(h.commands) for h in halls.values())
    shutil.copy(SAMPLES / "vpww53_tottori_lifted.xml", folder)
    assert run() == 0
    sugg = client.get("/api/jma/suggestions").json()["suggestions"]
    assert {s["site"] for s in sugg} & expect
    assert sum(len(h.commands) for h in halls.values()) == before
    assert halls["hall-07"].mode == "disaster_reserve"
    fleet_view = client.get("/api/fleet").json()
    assert fleet_view["suggestions"] and fleet_view["jma"]["switches"] == 3
    # Staff may dismiss a suggestion (it switches nothing either).
    assert api.bearer("vera").post(f"/api/jma/suggestions/{sugg[0]['id']}/dismiss").status_code == 403
    assert client.post(f"/api/jma/suggestions/{sugg[0]['id']}/dismiss").status_code == 200
    assert client.post(f"/api/jma/suggestions/{sugg[0]['id']}/dismiss").status_code == 404
    assert sum(len(h.commands) for h in halls.values()) == before
