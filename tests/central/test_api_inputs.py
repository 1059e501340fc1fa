"""Bad inputs are answered 422 with the field named (in detail[].loc and in message); nothing is sent."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

NOW = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
START, END = (NOW + timedelta(hours=1)).isoformat(), (NOW + timedelta(hours=2)).isoformat()
GOOD_DISPATCH = {"power_kw": 5, "start": START, "end": END, "reason": "call 1"}
GOOD_SWITCH = {"scope": "all", "reason": "typhoon", "confirm": True}


def fields_of(r) -> list[str]:
    assert r.status_code == 422, (r.status_code, r.text)
    body = r.json()
    names = [".".join(str(p) for p in d["loc"] if p not in ("body", "query", "path")) for d in body["detail"]]
    for n in names:
        assert n.split(".")[0] in body["message"]
    return names


@pytest.mark.parametrize("change, field", [
    ({"power_kw": "lots"}, "power_kw"),
    ({"power_kw": 1e9}, "power_kw"),
    ({"power_kw": 0}, "power_kw"),
    ({"start": "tomorrow"}, "start"),
    ({"start": NOW.replace(tzinfo=None).isoformat()}, "start"),  # no UTC offset
    ({"start": (NOW + timedelta(minutes=65)).isoformat()}, "start"),  # not on a slot boundary
    ({"end": START}, "end"),  # not after start
    ({"end": (NOW + timedelta(hours=30)).isoformat()}, "end"),  # longer than 24 h
    ({"start": (NOW - timedelta(hours=5)).isoformat(), "end": (NOW - timedelta(hours=4)).isoformat()}, "end"),
    ({"colour": "red"}, "colour"),  # unknown field
])
def test_dispatch_bad_inputs(shared_api, shared_env, change, field):
    c = shared_api.bearer("otto")
    for path in ("/api/vpp/preview", "/api/vpp/dispatch"):
        assert field in fields_of(c.post(path, json={**GOOD_DISPATCH, **change})), path
    assert shared_env.link.commands() == []


def test_dispatch_without_reason_is_refused_but_preview_is_not(shared_api, shared_env):
    c = shared_api.bearer("otto")
    assert c.post("/api/vpp/preview", json={**GOOD_DISPATCH, "reason": ""}).status_code == 200
    assert "reason" in fields_of(c.post("/api/vpp/dispatch", json={**GOOD_DISPATCH, "reason": "  "}))
    assert shared_env.link.commands() == []


@pytest.mark.parametrize("change, field", [
    ({"confirm": False}, "confirm"),
    ({"confirm": None}, "confirm"),
    ({"reason": ""}, "reason"),
    ({"reason": "   "}, "reason"),
    ({"reason": "x" * 600}, "reason"),
    ({"scope": "everything"}, "scope"),
    ({"scope": "area"}, "area_code"),
    ({"scope": "area", "area_code": "9999999"}, "area_code"),
    ({"scope": "area", "area_code": "Tottori"}, "area_code"),
    ({"scope": "sites"}, "sites"),
    ({"scope": "sites", "sites": []}, "sites"),
    ({"scope": "sites", "sites": ["hall-01", "hall-99"]}, "sites"),
])
def test_disaster_switch_bad_inputs(shared_api, shared_env, change, field):
    c = shared_api.bearer("mika")
    body = {k: v for k, v in {**GOOD_SWITCH, **change}.items() if v is not None}
    for path in ("/api/disaster/switch", "/api/disaster/return"):
        assert field in fields_of(c.post(path, json=body)), path
    assert shared_env.link.commands() == []


def test_malformed_json_body(shared_api):
    c = shared_api.bearer("mika")
    r = c.post("/api/disaster/switch", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422


@pytest.mark.parametrize("query, field", [
    ("range=2y", "range"),
    ("start=yesterday", "start"),
    ("start=2025-07-01T00:00:00", "start"),
    ("start=2025-07-02T00:00:00Z&end=2025-07-01T00:00:00Z", "end"),
    ("start=2024-01-01T00:00:00Z&end=2025-07-01T00:00:00Z", "start"),
])
def test_history_bad_queries(shared_api, query, field):
    assert field in fields_of(shared_api.bearer("vera").get(f"/api/sites/hall-01/history?{query}"))


def test_other_bad_queries(shared_api):
    c = shared_api.bearer("ada")
    assert "area" in fields_of(c.get("/api/fleet?area=tottori"))
    assert "sort" in fields_of(c.get("/api/fleet?sort=password"))
    assert "state" in fields_of(c.get("/api/alarms?state=maybe"))
    assert "limit" in fields_of(c.get("/api/audit?limit=0"))
    assert "since_seq" in fields_of(c.get("/api/audit?since_seq=-1"))
    assert "suggestion_id" in fields_of(c.post("/api/jma/suggestions/abc/dismiss"))
    assert "username" in fields_of(shared_api.client().post("/api/login", json={"password": "x"}))
    assert c.get("/api/sites/hall-99").status_code == 404
    assert c.get("/api/sites/hall-99/history").status_code == 404
    assert c.get("/api/operations/op-nope").status_code == 404
