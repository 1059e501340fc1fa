"""Every endpoint against every role: allowed (not 401/403), refused (403), anonymous (401)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from tests.central.conftest import ROLES, Api, feed_fleet, make_env


def _slot(hours: float) -> str:
    now = datetime.now(timezone.utc)
    t = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=hours)
    return t.isoformat()


DISPATCH = {"power_kw": 5, "start": _slot(1), "end": _slot(2), "reason": "test call"}
SWITCH = {"scope": "sites", "sites": ["hall-01"], "reason": "roles test", "confirm": True}

ALL = set(ROLES)
OPERATORS = {"otto", "omar", "ada"}
MUNICIPAL = {"mika", "omar", "ada"}
ADMINS = {"ada"}

#: (method, path, body, users allowed)
ENDPOINTS = [
    ("GET", "/api/me", None, ALL),
    ("GET", "/api/fleet", None, ALL),
    ("GET", "/api/fleet?area=3120100&sort=hours_left&desc=true", None, ALL),
    ("GET", "/api/sites/hall-01", None, ALL),
    ("GET", "/api/sites/hall-01/history?range=1h", None, ALL),
    ("GET", "/api/alarms?state=all", None, ALL),
    ("POST", "/api/alarms/hall-01%2Fnone/ack", {"note": "x"}, OPERATORS),
    ("GET", "/api/operations", None, ALL),
    ("POST", "/api/vpp/preview", DISPATCH, OPERATORS),
    ("POST", "/api/vpp/dispatch", DISPATCH, OPERATORS),
    ("POST", "/api/disaster/switch", SWITCH, MUNICIPAL),
    ("POST", "/api/disaster/return", SWITCH, MUNICIPAL),
    ("GET", "/api/jma/status", None, ALL),
    ("GET", "/api/jma/suggestions", None, ALL),
    ("POST", "/api/jma/suggestions/999/dismiss", None, MUNICIPAL),
    ("GET", "/api/audit", None, ADMINS),
    ("GET", "/api/audit/verify", None, ADMINS),
    ("GET", "/api/audit/export.csv", None, ADMINS),
]


@pytest.fixture(scope="module")
def role_api(tmp_path_factory, fleet):
    env = make_env(tmp_path_factory.mktemp("roles"), fleet)
    feed_fleet(env.store, fleet)
    api = Api(env)
    yield api
    api.close()


@pytest.mark.parametrize("user", sorted(ROLES))
def test_every_endpoint_checks_the_role(role_api, user):
    c = role_api.bearer(user)
    for method, path, body, allowed in ENDPOINTS:
        r = c.request(method, path, json=body)
        if user in allowed:
            assert r.status_code not in (401, 403), (user, method, path, r.status_code, r.text)
        else:
            assert r.status_code == 403, (user, method, path, r.status_code, r.text)
            assert "do not allow" in r.json()["detail"]


def test_anonymous_gets_401_everywhere_but_the_public_page(role_api):
    c = role_api.client()
    for method, path, body, _ in ENDPOINTS:
        r = c.request(method, path, json=body)
        assert r.status_code == 401, (method, path, r.status_code)
    assert c.get("/api/public/shelters").status_code == 200
    assert c.get("/public").status_code == 200
    assert c.get("/").status_code == 200


def test_refused_actions_send_nothing(tmp_path, fleet):
    env = make_env(tmp_path / "c", fleet)
    feed_fleet(env.store, fleet)
    api = Api(env)
    try:
        viewer, operator = api.login("vera"), api.login("otto")
        assert viewer.post("/api/vpp/dispatch", json=DISPATCH).status_code == 403
        assert viewer.post("/api/disaster/switch", json=SWITCH).status_code == 403
        # An operator trades energy but may not switch disaster mode (not municipal).
        assert operator.post("/api/disaster/switch", json={**SWITCH, "scope": "all"}).status_code == 403
        assert operator.post("/api/disaster/return", json=SWITCH).status_code == 403
        assert env.link.commands() == []
        assert env.service.audit.records(action="mode_switch") == []
        # Operator + municipal may do both.
        both = api.login("omar")
        assert both.post("/api/disaster/switch", json=SWITCH).status_code == 200
        assert [c["payload"]["mode"] for c in env.link.commands("mode")] == ["disaster_reserve"]
    finally:
        api.close()


def test_role_change_and_disabling_take_effect_at_once(tmp_path, fleet):
    env = make_env(tmp_path / "c", fleet, users={"otto": ["operator"], "ada": ["admin"]})
    feed_fleet(env.store, fleet)
    api = Api(env)
    try:
        c = api.login("otto")
        assert c.post("/api/disaster/switch", json=SWITCH).status_code == 403
        env.service.security.users.set_roles("otto", ["operator", "municipal"])
        assert c.post("/api/disaster/switch", json=SWITCH).status_code == 200
        env.service.security.users.disable("otto")
        assert c.get("/api/fleet").status_code == 401
    finally:
        api.close()
