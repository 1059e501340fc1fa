"""Fleet overview, operations with acks, alarms, public page, local history, audit view."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta, timezone

from tests.central.conftest import ack_for, feed, make_env, state_message
from ems.central.operations import OperationLog


def test_overview_has_every_hall_with_its_live_values(api, env, fleet):
    feed(env.store, "hall-03", "state", state_message("hall-03", mode="disaster_reserve", reason="typhoon", soc_pct=71,
                                                       hours_left=13.5, capacity_wh=15000))
    feed(env.store, "hall-04", "online", {"online": False})
    d = api.bearer("vera").get("/api/fleet").json()
    assert len(d["halls"]) == 14 and {a["area_code"] for a in d["areas"]} == {s.area_code for s in fleet.sites}
    h3 = next(h for h in d["halls"] if h["site"] == "hall-03")
    assert (h3["mode"], h3["mode_reason"], h3["soc_pct"], h3["hours_left"]) == ("disaster_reserve", "typhoon", 71, 13.5)
    assert h3["name"].startswith("福生公民館") and h3["reserve_progress"] == 1.0
    assert next(h for h in d["halls"] if h["site"] == "hall-04")["online"] is False
    # Area filter and sorting.
    area = api.bearer("vera").get("/api/fleet?area=3120100").json()["halls"]
    assert {h["site"] for h in area} == {"hall-01", "hall-02"}
    by_hours = api.bearer("vera").get("/api/fleet?sort=hours_left&desc=true").json()["halls"]
    assert by_hours[0]["site"] == "hall-03"


def test_stale_state_is_flagged(tmp_path, fleet):
    clock = [datetime.now(timezone.utc)]
    env = make_env(tmp_path / "c", fleet, users={}, clock=lambda: clock[0])
    feed(env.store, "hall-01", "online", {"online": True})
    feed(env.store, "hall-01", "state", state_message("hall-01"))
    assert env.service.fleet_rows()[0]["stale"] is False
    clock[0] += timedelta(seconds=120)
    assert env.service.fleet_rows()[0]["stale"] is True
    assert env.service.public_shelters()[0]["power"] == "unknown"


def test_switch_tracks_every_ack_and_audits_them(api, env, fleet):
    c = api.bearer("mika")
    op = c.post("/api/disaster/switch", json={"scope": "area", "area_code": "3120200", "reason": "大雨 heavy rain",
                                              "confirm": True}).json()
    assert {cmd["site"] for cmd in op["commands"]} == {"hall-03", "hall-04"} and op["counts"]["sent"] == 2
    sent = env.link.commands("mode")
    assert [e["payload"] for e in sent] == [{"mode": "disaster_reserve", "reason": "大雨 heavy rain"}] * 2
    assert all(e["issued_by"] == "user:mika" for e in sent)
    feed(env.store, "hall-03", "ack", ack_for(sent[0]))
    feed(env.store, "hall-04", "ack", ack_for(sent[1], "refused", "hall is islanded"))
    got = c.get(f"/api/operations/{op['id']}").json()
    status = {cmd["site"]: (cmd["status"], cmd["error"]) for cmd in got["commands"]}
    assert status == {"hall-03": ("ok", None), "hall-04": ("refused", "hall is islanded")}
    assert got["done"] and got["counts"]["ok"] == 1 and got["counts"]["refused"] == 1
    audit = env.service.audit
    switches = audit.records(action="mode_switch")
    assert [(r.actor, r.target, r.reason, r.details["mode"]) for r in switches] == [
        ("mika", "hall-03", "大雨 heavy rain", "disaster_reserve"), ("mika", "hall-04", "大雨 heavy rain", "disaster_reserve")]
    acks = audit.records(action="ack")
    assert [(r.actor, r.details["status"], r.details["operation"]) for r in acks] == [
        ("site:hall-03", "ok", op["id"]), ("site:hall-04", "refused", op["id"])]
    # An ack claiming to answer hall-03's command from another site is not taken.
    assert env.service.operations.on_ack({**ack_for(sent[0]), "site": "hall-09"}, datetime.now(timezone.utc)) is None
    # Listed among recent operations, filterable by kind.
    assert c.get("/api/operations?kind=disaster").json()["operations"][0]["id"] == op["id"]
    assert c.get("/api/operations?kind=dispatch").json()["operations"] == []


def test_unanswered_commands_time_out():
    log = OperationLog(timedelta(seconds=30))
    from ems.central.operations import Operation, SiteCommand

    t0 = datetime(2025, 7, 1, tzinfo=timezone.utc)
    op = Operation("op-1", "disaster", "mika", "test", t0, {}, [SiteCommand("hall-01", "c-1", "mode", {}, t0)])
    log.add(op)
    assert log.expire(t0 + timedelta(seconds=29)) == []
    assert [c.site for _, c in log.expire(t0 + timedelta(seconds=31))] == ["hall-01"]
    assert op.commands[0].status == "timeout" and not op.done
    # A late ack still counts.
    log.on_ack({"command_id": "c-1", "site": "hall-01", "status": "ok"}, t0 + timedelta(seconds=40))
    assert op.commands[0].status == "ok" and op.done


def test_dispatch_solves_once_and_sends_the_allocation_it_checked(api, env, monkeypatch):
    import ems.central.service as service_module

    solved = []
    real = service_module.preview

    def counting(*args, **kw):
        pre = real(*args, **kw)
        solved.append(pre)
        return pre

    monkeypatch.setattr(service_module, "preview", counting)
    start = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    body = {"power_kw": 5, "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat(),
            "reason": "call 7"}
    r = api.bearer("otto").post("/api/vpp/dispatch", json=body)
    assert r.status_code == 200, r.text
    assert len(solved) == 1  # the 409 check and the commands come from one solve
    leases = {(site, s.isoformat(), e.isoformat(), target)
              for site, ls in solved[0].leases().items() for s, e, target in ls}
    sent = {(env_["site"], env_["payload"]["start"], env_["payload"]["end"], env_["payload"]["power_w"])
            for env_ in env.link.commands("dispatch")}
    assert leases and sent == leases
    assert r.json()["details"]["preview"] == solved[0].to_dict()
    # Without a preview given, the service still allocates on its own (one more solve).
    env.service.dispatch(5000, start, start + timedelta(hours=1), "call 8", "otto")
    assert len(solved) == 2


def test_return_to_vpp_is_its_own_action(api, env):
    c = api.bearer("mika")
    op = c.post("/api/disaster/return", json={"scope": "sites", "sites": ["hall-05"], "reason": "warning lifted",
                                              "confirm": True}).json()
    assert op["kind"] == "return_to_vpp"
    assert [e["payload"]["mode"] for e in env.link.commands("mode")] == ["vpp"]


def test_alarms_are_listed_acknowledged_once_and_cleared(api, env):
    alarm = {"id": "a-1", "site": "hall-02", "severity": "critical", "code": "stale_data",
             "message": "battery data stale", "raised_at": "2025-07-01T00:00:00+00:00", "cleared_at": None}
    feed(env.store, "hall-02", "state", state_message("hall-02", alarms=[alarm]))
    viewer, operator = api.bearer("vera"), api.bearer("otto")
    listed = viewer.get("/api/alarms").json()["alarms"]
    assert [(a["site"], a["code"], a["active"]) for a in listed] == [("hall-02", "stale_data", True)]
    assert next(h for h in viewer.get("/api/fleet").json()["halls"] if h["site"] == "hall-02")["open_alarms"] == 1
    alarm_id = listed[0]["id"]
    assert viewer.post(f"/api/alarms/{alarm_id}/ack", json={"note": "x"}).status_code == 403
    r = operator.post(f"/api/alarms/{alarm_id}/ack", json={"note": "sent a technician"})
    assert r.status_code == 200 and r.json()["acked_by"] == "otto"
    assert operator.post(f"/api/alarms/{alarm_id}/ack", json={}).status_code == 409
    assert operator.post("/api/alarms/hall-02%2Fnope/ack", json={}).status_code == 404
    rec = env.service.audit.records(action="alarm_ack")[-1]
    assert (rec.actor, rec.target, rec.reason) == ("otto", alarm_id, "sent a technician")
    # Still open while active; cleared when the site stops reporting it; then it is history.
    assert len(viewer.get("/api/alarms?state=open").json()["alarms"]) == 1
    feed(env.store, "hall-02", "state", state_message("hall-02", alarms=[]))
    assert viewer.get("/api/alarms?state=open").json()["alarms"] == []
    history = viewer.get("/api/alarms?state=all").json()["alarms"]
    assert history[0]["cleared_at"] is not None and history[0]["acked_by"] == "otto"
    # Alarm events on the alarm topic are booked too.
    feed(env.store, "hall-07", "alarm", {"id": "a-9", "code": "grid_lost", "severity": "warning",
                                          "message": "grid lost", "raised_at": "2025-07-01T01:00:00+00:00"})
    assert [a["code"] for a in viewer.get("/api/alarms?site=hall-07").json()["alarms"]] == ["grid_lost"]


def test_public_page_shows_only_harmless_fields(api, env):
    feed(env.store, "hall-01", "state", state_message("hall-01", mode="islanded", grid_ok=False, hours_left=10.26,
                                                       reason="secret reason"))
    feed(env.store, "hall-02", "online", {"online": False})
    d = api.client().get("/api/public/shelters").json()
    assert len(d["shelters"]) == 14
    assert all(set(s) == {"name", "area_name", "power", "hours_left"} for s in d["shelters"])
    by_name = {s["name"]: s for s in d["shelters"]}
    assert by_name["湖山公民館 Koyama"] == {"name": "湖山公民館 Koyama", "area_name": "鳥取市", "power": "battery",
                                         "hours_left": 10.3}
    assert by_name["醇風公民館 Junpu"]["power"] == "unknown" and by_name["醇風公民館 Junpu"]["hours_left"] is None
    assert "secret" not in str(d) and "hall-0" not in str(d)


def test_public_page_can_be_switched_off(tmp_path, fleet):
    from tests.central.conftest import Api

    env = make_env(tmp_path / "c", fleet, users={}, public_page=False)
    api = Api(env)
    try:
        assert api.client().get("/api/public/shelters").status_code == 404
        assert api.client().get("/public").status_code == 404
    finally:
        api.close()


def test_local_history_feeds_the_charts(api, env):
    t0 = datetime.now(timezone.utc) - timedelta(minutes=50)
    for k in range(0, 50, 5):
        st = state_message("hall-06", soc_pct=50 + k, hours_left=5 + k / 10, battery_w=-1000.0,
                           mode="vpp" if k < 30 else "disaster_reserve", reason="r", time=t0 + timedelta(minutes=k))
        feed(env.store, "hall-06", "state", st)
    feed(env.store, "hall-06", "plan", {"slots": [{"time": t0.isoformat(), "battery_w": -2000, "soc_pct": 55,
                                                    "price_jpy_per_kwh": 12.5}]})
    d = api.bearer("vera").get("/api/sites/hall-06/history?range=1h").json()
    assert d["backend"] == "local" and d["step_s"] == 20
    soc = [v for _, v in d["series"]["soc_pct"]]
    assert soc[0] == 50 and max(soc) >= 95 and len(soc) >= 10
    assert d["series"]["price_jpy_per_kwh"][0][1] == 12.5
    switch = [m for m in d["modes"] if m["mode"] == "disaster_reserve"]
    assert len(switch) == 1 and switch[0]["previous"] == "vpp"
    assert switch[0]["time"].startswith((t0 + timedelta(minutes=30)).isoformat()[:16])
    assert d["series"]["battery_w"][0][1] == -1000.0


def test_audit_view_export_and_verify_for_admins(api, env):
    api.bearer("mika").post("/api/disaster/return", json={"scope": "sites", "sites": ["hall-02"], "reason": "earlier",
                                                          "confirm": True})
    api.bearer("mika").post("/api/disaster/switch", json={"scope": "sites", "sites": ["hall-01"], "reason": "=cmd|x",
                                                          "confirm": True})
    admin = api.bearer("ada")
    recs = admin.get("/api/audit?action=mode_switch").json()["records"]
    assert [(r["actor"], r["target"]) for r in recs] == [("mika", "hall-02"), ("mika", "hall-01")]
    assert recs[0]["seq"] < recs[1]["seq"]
    every = admin.get("/api/audit?limit=5000").json()["records"]
    newest = admin.get("/api/audit?newest_first=true&limit=1").json()["records"][0]
    assert newest["seq"] == max(r["seq"] for r in every) and newest["seq"] > min(r["seq"] for r in every)
    assert admin.get("/api/audit?limit=1").json()["records"][0]["seq"] == min(r["seq"] for r in every)
    newest_switch = admin.get("/api/audit?action=mode_switch&newest_first=true&limit=1").json()["records"][0]
    assert newest_switch["target"] == "hall-01" and newest_switch["seq"] > recs[0]["seq"]
    v = admin.get("/api/audit/verify").json()
    assert v["ok"] and v["checked"] >= 1
    r = admin.get("/api/audit/export.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert "attachment" in r.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(r.text)))
    switch = next(row for row in rows if row["action"] == "mode_switch" and row["target"] == "hall-01")
    assert switch["reason"].startswith("'=")  # a formula cannot run in a spreadsheet
    assert env.service.audit.records(action="audit_export")[-1].actor == "ada"
