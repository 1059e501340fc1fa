"""Hostile callers of the central API: login attacks behind the shared proxy address, forged
X-Forwarded-For, junk in the disaster switch and dispatch, out-of-range query parameters."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from devices.configfile import ConfigError
from ems.central.cli import build_service
from ems.central.config import load_central_config
from ems.central.ratelimit import LoginLimiter
from tests.central.conftest import Api, feed_fleet, make_env

ROOT = Path(__file__).resolve().parents[2]
PROXY = ("127.0.0.1", 40000)  # the reverse proxy: every user arrives from here


class Clock:
    def __init__(self):
        self.t = 5000.0

    def __call__(self):
        return self.t


@pytest.fixture
def hostile(tmp_path, fleet):
    """An app whose limiter locks an account after 3 failures (60 s, at most 480 s), slows an address after
    6 failures by 0.5 s, runs on a clock the test moves, and trusts the proxy at 127.0.0.1."""
    env = make_env(tmp_path / "central", fleet)
    feed_fleet(env.store, fleet)
    clock = Clock()
    env.service.security.limiter = LoginLimiter(max_failures=3, lockout_s=60, max_lockout_s=480,
                                                address_max_failures=6, throttle_delay_s=0.5, clock=clock,
                                                trusted_proxies=["127.0.0.1"])
    api = Api(env)
    api.clock = clock
    yield api
    api.close()


def client(api: Api, peer=PROXY, forwarded_for: str | None = None) -> TestClient:
    c = TestClient(api.app, client=peer)
    c.__enter__()
    api._clients.append(c)
    if forwarded_for is not None:
        c.headers["X-Forwarded-For"] = forwarded_for
    return c


def login(c: TestClient, name: str, password: str):
    return c.post("/api/login", json={"username": name, "password": password})


def audits(api: Api, action: str):
    return api.env.service.audit.records(action=action)


# -- item 3: lock the account, slow the address, never lock the address --------------------------------

def test_municipal_user_logs_in_while_another_account_is_hammered_from_the_proxy_address(hostile):
    attacker, staff = client(hostile), client(hostile)
    codes = [login(attacker, "otto", f"guess-number-{i:04d}").status_code for i in range(30)]
    assert codes[:3] == [401] * 3 and set(codes[3:]) == {429}
    for i in range(4):  # and sprays made-up names: the (shared) address is now over its failure budget
        assert login(attacker, f"nobody{i}", "guess-number-0000").status_code == 401
    assert audits(hostile, "login_throttled")[-1].target == "127.0.0.1"
    t0 = time.monotonic()
    r = login(staff, "mika", hostile.env.passwords["mika"])
    assert r.status_code == 200, r.text
    assert time.monotonic() - t0 < 0.5  # a correct login is not slowed by the address's failures
    assert "switch_disaster" in r.json()["permissions"]
    assert login(client(hostile), "ada", hostile.env.passwords["ada"]).status_code == 200


def test_the_hammered_account_is_locked_with_backoff_and_audited(hostile):
    c, clock = client(hostile), hostile.clock
    right = hostile.env.passwords["otto"]
    for _ in range(3):
        assert login(c, "otto", "wrong-password-123").status_code == 401
    locked = audits(hostile, "login_locked")
    assert [r.target for r in locked] == ["otto"] and locked[-1].details["lock_s"] == 60
    for _ in range(20):  # even the right password waits; refusals are audited once per lock, not 20 times
        r = login(c, "otto", right)
        assert r.status_code == 429 and r.headers["retry-after"] == "60"
    assert [r.reason for r in audits(hostile, "login_failed")].count("rate limited") == 1
    waits = []
    for _ in range(4):  # every failure after a lock doubles the next one, capped at 480 s
        clock.t += int(login(c, "otto", right).headers["retry-after"])
        assert login(c, "otto", "wrong-password-123").status_code == 401
        waits.append(int(login(c, "otto", right).headers["retry-after"]))
    assert waits == [120, 240, 480, 480]
    assert [r.details["lock_s"] for r in audits(hostile, "login_locked")] == [60, 120, 240, 480, 480]
    clock.t += 480
    assert login(c, "otto", right).status_code == 200  # the lock ends; a correct login clears the count
    assert login(c, "otto", "wrong-password-123").status_code == 401
    assert login(c, "otto", right).status_code == 200


def test_a_throttled_address_gets_its_failures_answered_late_but_is_never_locked(hostile):
    c = client(hostile)
    for i in range(5):
        assert login(c, f"name{i}", "wrong-password-123").status_code == 401
    t0 = time.monotonic()
    assert login(c, "name5", "wrong-password-123").status_code == 401  # the 6th failure: throttled
    assert time.monotonic() - t0 >= 0.5
    assert login(c, "vera", hostile.env.passwords["vera"]).status_code == 200


def test_forwarded_for_from_an_untrusted_peer_is_ignored(hostile):
    c = client(hostile, peer=("198.51.100.7", 1234), forwarded_for="203.0.113.9")
    assert login(c, "vera", hostile.env.passwords["vera"]).status_code == 200
    assert audits(hostile, "login")[-1].details["ip"] == "198.51.100.7"
    # Forging addresses does not spread an attacker's failures over many "addresses" either.
    for i in range(6):
        c.headers["X-Forwarded-For"] = f"203.0.113.{i}"
        assert login(c, f"name{i}", "wrong-password-123").status_code == 401
    assert audits(hostile, "login_throttled")[-1].target == "198.51.100.7"


def test_forwarded_for_from_the_trusted_proxy_names_the_client(hostile):
    # The client wrote a forged entry; the proxy appended the address it saw: that one counts.
    attacker = client(hostile, forwarded_for="10.9.9.9, 203.0.113.66")
    for i in range(6):
        assert login(attacker, f"name{i}", "wrong-password-123").status_code == 401
    assert audits(hostile, "login_failed")[-1].details["ip"] == "203.0.113.66"
    assert [r.target for r in audits(hostile, "login_throttled")] == ["203.0.113.66"]
    # Another client behind the same proxy is not slowed by that: its typo is answered at once.
    staff = client(hostile, forwarded_for="198.51.100.20")
    t0 = time.monotonic()
    assert login(staff, "mika", "typo-password-12").status_code == 401
    assert time.monotonic() - t0 < 0.5
    assert login(staff, "mika", hostile.env.passwords["mika"]).status_code == 200
    assert audits(hostile, "login")[-1].details["ip"] == "198.51.100.20"


def _central(tmp_path: Path, text: str) -> Path:
    (tmp_path / "fleet.yaml").write_text((ROOT / "config" / "fleet.yaml").read_text(encoding="utf-8"),
                                         encoding="utf-8")
    (tmp_path / "devicemaps").symlink_to(ROOT / "config" / "devicemaps")
    p = tmp_path / "central.yaml"
    p.write_text("data_dir: data\nmqtt: {username: null}\n" + text, encoding="utf-8")
    return p


def test_trusted_proxies_and_login_limits_come_from_the_config(tmp_path):
    cfg = load_central_config(_central(tmp_path, "listen: {trusted_proxies: [127.0.0.1, '10.0.0.0/8']}\n"
                                                 "sessions: {max_login_failures: 4, lockout_s: 30, "
                                                 "max_lockout_s: 900, address_max_failures: 50, "
                                                 "throttle_delay_s: 1}\n"))
    lim = build_service(cfg).security.limiter
    assert lim.proxies.trusts("10.2.3.4") and lim.proxies.trusts("127.0.0.1") and not lim.proxies.trusts("8.8.8.8")
    assert (lim.max_failures, lim.lockout_s, lim.max_lockout_s, lim.address_limit, lim.throttle_delay_s) == (
        4, 30, 900, 50, 1)


@pytest.mark.parametrize("text, field", [
    ("listen: {trusted_proxies: [proxy.example]}\n", "listen.trusted_proxies"),
    ("sessions: {lockout_s: 600, max_lockout_s: 60}\n", "max_lockout_s"),
])
def test_bad_login_limit_settings_name_the_field(tmp_path, text, field):
    with pytest.raises(ConfigError) as err:
        load_central_config(_central(tmp_path, text))
    assert field in str(err.value), str(err.value)


# -- item 5: the disaster switch and dispatch take visible reasons and a real true ---------------------

NOW = datetime.now(timezone.utc).replace(minute=0, second=0, microsecond=0)
DISPATCH = {"power_kw": 5, "start": (NOW + timedelta(hours=1)).isoformat(),
            "end": (NOW + timedelta(hours=2)).isoformat(), "reason": "call 1"}
SWITCH = {"scope": "sites", "sites": ["hall-02"], "reason": "typhoon warning", "confirm": True}
JUNK_REASONS = ["   ", "\x00\x00\x00", "\u200b\u200b\u200b", "\u200b \ufeff\u2060\u3000", "\u2028\u2029\u00a0",
                "abc\x00def", "ok\nreason", "typhoon\x1b[31m", "\u202e\u202d\u200c\u200d", "\t\t\t"]


def field_names(r) -> list[str]:
    assert r.status_code == 422, (r.status_code, r.text)
    body = r.json()
    names = [".".join(str(p) for p in d["loc"] if p not in ("body", "query", "path")) for d in body["detail"]]
    assert all(n in body["message"] for n in names)
    return names


@pytest.mark.parametrize("path", ["/api/disaster/switch", "/api/disaster/return"])
@pytest.mark.parametrize("reason", JUNK_REASONS)
def test_switch_reason_must_hold_visible_text(shared_api, shared_env, path, reason):
    c = shared_api.bearer("mika")
    assert field_names(c.post(path, json={**SWITCH, "reason": reason})) == ["reason"]
    assert shared_env.link.commands() == []


@pytest.mark.parametrize("path", ["/api/disaster/switch", "/api/disaster/return"])
@pytest.mark.parametrize("confirm", ["true", "True", 1, "1", "yes", "on", 1.0, [True], {"v": True}])
def test_switch_confirm_must_be_the_json_boolean_true(shared_api, shared_env, path, confirm):
    c = shared_api.bearer("mika")
    assert field_names(c.post(path, json={**SWITCH, "confirm": confirm})) == ["confirm"]
    assert shared_env.link.commands() == []


@pytest.mark.parametrize("path", ["/api/vpp/preview", "/api/vpp/dispatch"])
@pytest.mark.parametrize("reason", JUNK_REASONS)
def test_dispatch_reason_must_hold_visible_text(shared_api, shared_env, path, reason):
    c = shared_api.bearer("otto")
    assert field_names(c.post(path, json={**DISPATCH, "reason": reason})) == ["reason"]
    assert shared_env.link.commands() == []


def test_visible_reasons_in_any_script_still_switch(api, env):
    c = api.bearer("mika")
    for reason in ("台風接近", " \u200b大雨警報 ", "Évacuation"):
        r = c.post("/api/disaster/switch", json={**SWITCH, "reason": reason})
        assert r.status_code == 200, r.text
    reasons = [r.reason for r in env.service.audit.records(action="mode_switch")]
    assert reasons == ["台風接近", "大雨警報", "Évacuation"]  # trimmed of invisible characters at the ends
    r = api.bearer("otto").post("/api/vpp/preview", json={**DISPATCH, "reason": ""})  # a preview needs no reason
    assert r.status_code == 200, r.text


# -- item 9: out-of-range query parameters are 422 naming the field, never 500 -------------------------

@pytest.mark.parametrize("url, field", [
    ("/api/audit?since_seq=9223372036854775808", "since_seq"),
    ("/api/audit?since_seq=" + "9" * 40, "since_seq"),
    ("/api/sites/hall-01/history?start=0001-01-01T00:00:00%2B09:00", "start"),
    ("/api/sites/hall-01/history?end=0001-01-01T00:30:00%2B09:00&range=1h", "end"),
    ("/api/sites/hall-01/history?end=9999-12-31T23:59:59-09:00", "end"),
    ("/api/sites/hall-01/history?start=9999-12-31T20:00:00-09:00&end=2025-01-01T00:00:00Z", "start"),
    ("/api/sites/hall-01/history?start=0001-01-01T00:00:00Z&end=0001-01-02T00:00:00Z", "end"),
    ("/api/sites/hall-01/history?start=1999-12-31T00:00:00Z&end=2000-01-01T00:00:00Z", "start"),
])
def test_out_of_range_query_parameters_are_422(shared_api, url, field):
    c = TestClient(shared_api.app, raise_server_exceptions=False)
    c.headers["Authorization"] = shared_api.bearer("ada").headers["Authorization"]
    assert field_names(c.get(url)) == [field]


def test_huge_path_ids_are_422(shared_api):
    c = TestClient(shared_api.app, raise_server_exceptions=False)
    c.headers["Authorization"] = shared_api.bearer("mika").headers["Authorization"]
    assert field_names(c.post("/api/jma/suggestions/" + "9" * 30 + "/dismiss")) == ["suggestion_id"]


@pytest.mark.parametrize("path", ["/api/vpp/preview", "/api/vpp/dispatch"])
@pytest.mark.parametrize("start, end", [("9999-12-31T22:00:00-09:00", "9999-12-31T23:00:00-09:00"),
                                        ("9999-12-31T22:00:00Z", "9999-12-31T23:00:00Z"),
                                        ("2101-01-01T00:00:00Z", "2101-01-01T01:00:00Z")])
def test_dispatch_in_year_9999_is_refused(shared_api, shared_env, path, start, end):
    c = TestClient(shared_api.app, raise_server_exceptions=False)
    c.headers["Authorization"] = shared_api.bearer("otto").headers["Authorization"]
    assert field_names(c.post(path, json={**DISPATCH, "start": start, "end": end})) == ["start", "end"]
    assert shared_env.link.commands() == []


# -- item 9: what the fuzzer (tests/central/test_api_fuzz.py) and its neighbours turned up ------------

def test_a_body_that_is_not_utf8_is_422_naming_the_body(shared_api):
    c = TestClient(shared_api.app, raise_server_exceptions=False)
    for path in ("/api/login", "/api/disaster/switch", "/api/vpp/preview"):
        r = c.post(path, content=b"{\"reason\": \"\xff\x80\"}", headers={"Content-Type": "application/json"})
        assert r.status_code == 422, (path, r.status_code, r.text)
        assert r.json()["detail"][0]["loc"] == ["body"] and "body" in r.json()["message"]


@pytest.mark.parametrize("username", [" ", "\u200b", "\u3000\u200b", "ada\x00", "\x1b[2J"])
def test_a_blank_or_control_character_user_name_is_422_not_500(shared_api, username):
    c = TestClient(shared_api.app, raise_server_exceptions=False)
    r = c.post("/api/login", json={"username": username, "password": "whatever-long-pw"})
    assert field_names(r) == ["username"]


@pytest.mark.parametrize("note", ["\x00", "done\nrm -rf /", "\x1b[31mred"])
def test_an_alarm_note_with_control_characters_is_422(shared_api, note):
    c = TestClient(shared_api.app, raise_server_exceptions=False)
    c.headers["Authorization"] = shared_api.bearer("otto").headers["Authorization"]
    assert field_names(c.post("/api/alarms/hall-01:X/ack", json={"note": note})) == ["note"]


def test_the_schema_declares_the_error_answers_each_route_gives(shared_api):
    spec = TestClient(shared_api.app).get("/api/openapi.json").json()
    for path, item in spec["paths"].items():
        for method, op in item.items():
            codes = set(op["responses"])
            if path == "/api/login":
                assert {"200", "401", "422", "429"} <= codes
            elif path.startswith("/api/public/"):
                assert "404" in codes
            else:
                assert {"401"} <= codes and (path == "/api/me" or "403" in codes), (method, path, codes)
    assert "text/csv" in spec["paths"]["/api/audit/export.csv"]["get"]["responses"]["200"]["content"]
    assert {"404", "502"} <= set(spec["paths"]["/api/sites/{site_id}/history"]["get"]["responses"])
