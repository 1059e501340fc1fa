"""Login with session cookie and CSRF, bearer tokens, rate limiting, logout; all audited."""

from __future__ import annotations

from tests.central.conftest import Api, make_env

SWITCH = {"scope": "sites", "sites": ["hall-02"], "reason": "auth test", "confirm": True}


def test_login_sets_an_httponly_strict_cookie_and_audits(api, env):
    c = api.client()
    r = c.post("/api/login", json={"username": "mika", "password": env.passwords["mika"]})
    assert r.status_code == 200
    body = r.json()
    assert body["roles"] == ["municipal"] and "switch_disaster" in body["permissions"] and body["csrf_token"]
    cookie = r.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
    assert c.get("/api/me").json()["username"] == "mika"
    rec = env.service.audit.records(action="login")[-1]
    assert rec.actor == "mika" and rec.details["ip"]


def test_wrong_password_is_401_and_audited_without_the_password(api, env):
    c = api.client()
    r = c.post("/api/login", json={"username": "mika", "password": "not-the-password-at-all"})
    assert r.status_code == 401
    assert c.get("/api/me").status_code == 401
    rec = env.service.audit.records(action="login_failed")[-1]
    assert rec.target == "mika" and "not-the-password" not in str(rec.details) + rec.reason
    # Unknown users get the same answer.
    assert c.post("/api/login", json={"username": "nobody", "password": "whatever-long-pw"}).status_code == 401


def test_login_is_rate_limited(api, env):
    c = api.client()
    for _ in range(3):  # the test limiter locks after 3 failures
        assert c.post("/api/login", json={"username": "otto", "password": "wrong-password-123"}).status_code == 401
    r = c.post("/api/login", json={"username": "otto", "password": env.passwords["otto"]})
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert "too many" in r.json()["detail"]
    assert env.service.audit.records(action="login_failed")[-1].reason == "rate limited"
    # Another user from the same address is not locked by otto's failures (pair lock only).
    assert c.post("/api/login", json={"username": "vera", "password": env.passwords["vera"]}).status_code == 200


def test_unsafe_methods_need_the_csrf_header_with_a_cookie(api, env):
    c = api.login("mika")
    token = c.headers.pop("X-CSRF-Token")
    assert c.post("/api/disaster/switch", json=SWITCH).status_code == 403
    assert c.post("/api/disaster/switch", json=SWITCH, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert env.link.commands() == []
    assert c.post("/api/disaster/switch", json=SWITCH, headers={"X-CSRF-Token": token}).status_code == 200
    assert len(env.link.commands()) == 1
    # GET needs no CSRF header.
    assert c.get("/api/fleet").status_code == 200


def test_bearer_tokens_need_no_csrf_and_bad_tokens_are_401(api, env):
    c = api.bearer("mika")
    assert c.post("/api/disaster/switch", json=SWITCH).status_code == 200
    bad = api.client()
    for header in ("Bearer nope", "Basic abc", "Bearer "):
        bad.headers["Authorization"] = header
        assert bad.get("/api/fleet").status_code == 401, header
    token = env.service.security.sessions.create_token("vera", "revoke me")
    bad.headers["Authorization"] = f"Bearer {token}"
    assert bad.get("/api/fleet").status_code == 200
    env.service.security.sessions.revoke_token(token)
    assert bad.get("/api/fleet").status_code == 401


def test_logout_ends_the_session(api, env):
    c = api.login("vera")
    assert c.post("/api/logout").status_code == 200
    assert c.get("/api/fleet").status_code == 401
    assert env.service.audit.records(action="logout")[-1].actor == "vera"


def test_session_cookie_is_secure_when_configured(tmp_path, fleet):
    env = make_env(tmp_path / "c", fleet, users={"vera": ["viewer"]})
    env.service.security.secure_cookies = True
    api = Api(env)
    try:
        c = api.client()
        r = c.post("/api/login", json={"username": "vera", "password": env.passwords["vera"]})
        assert r.status_code == 200
        assert "secure" in r.headers["set-cookie"].lower() and r.headers["set-cookie"].startswith("__Host-")
    finally:
        api.close()


def test_security_headers_and_openapi(api):
    c = api.client()
    r = c.get("/")
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    spec = c.get("/api/openapi.json").json()
    for path in ("/api/fleet", "/api/disaster/switch", "/api/vpp/dispatch", "/api/audit/export.csv",
                 "/api/public/shelters", "/api/sites/{site_id}/history"):
        assert path in spec["paths"], path
    docs = c.get("/api/docs")
    assert docs.status_code == 200 and "/api/docs-assets/swagger-ui-bundle.js" in docs.text
    assert "cdn" not in docs.text.lower()
    assert c.get("/api/docs-assets/swagger-ui-bundle.js").status_code == 200
