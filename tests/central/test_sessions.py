"""Sessions (expiry, idle, revoke, live account state), CSRF compare, cookie settings, API tokens."""

import hmac
import sqlite3
from datetime import datetime, timedelta, timezone

import pytest

from ems.central import sessions as sessions_mod
from ems.central.roles import Role
from ems.central.sessions import SessionStore, check_csrf, cookie_kwargs, cookie_name
from ems.central.users import User, UserStore

T0 = datetime(2026, 6, 1, 0, 0, tzinfo=timezone.utc)
PW = "lantern-river-4821"


class Clock:
    def __init__(self):
        self.now = T0

    def __call__(self):
        return self.now

    def advance(self, **kw):
        self.now += timedelta(**kw)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def db(tmp_path):
    return tmp_path / "users.sqlite"


@pytest.fixture
def users(db):
    u = UserStore(db)
    u.add("root1", PW, ["admin"])
    u.add("otto", PW + "o", ["operator"])
    yield u
    u.close()


@pytest.fixture
def store(db, users, clock):
    s = SessionStore(db, ttl_s=8 * 3600, idle_s=1800, clock=clock)
    yield s
    s.close()


def test_create_and_get(store, users):
    s = store.create(users.get("otto"))
    assert s.username == "otto" and s.roles == {Role.OPERATOR}
    assert s.expires_at == T0 + timedelta(hours=8)
    got = store.get(s.id)
    assert got.username == "otto" and got.csrf_token == s.csrf_token and got.id == s.id
    assert s.id != s.csrf_token and len(s.id) >= 43


def test_only_hashes_are_stored(store, users, db):
    s = store.create(users.get("otto"))
    token = store.create_token("otto", "scada")
    raw = b"".join(p.read_bytes() for p in db.parent.glob("users.sqlite*"))
    assert s.id.encode() not in raw
    assert token.encode() not in raw
    assert token.split("_", 2)[2].encode() not in raw  # the secret may itself contain "_"


@pytest.mark.parametrize("bad", [None, "", "x", "a" * 43, "a" * 44, "../../etc", 42])
def test_unknown_or_malformed_ids(store, bad):
    assert store.get(bad) is None


def test_absolute_expiry(store, users, clock):
    s = store.create(users.get("otto"))
    for _ in range(16):  # keep it busy every 29 minutes: idle never fires
        clock.advance(minutes=29)
        if clock.now >= s.expires_at:
            break
        assert store.get(s.id) is not None
    clock.now = s.expires_at
    assert store.get(s.id) is None
    clock.now = T0  # deleted on the failed lookup, not merely hidden
    assert store.get(s.id) is None


def test_idle_timeout_and_refresh(store, users, clock):
    s = store.create(users.get("otto"))
    clock.advance(minutes=20)
    assert store.get(s.id) is not None  # refreshes last-seen
    clock.advance(minutes=20)
    assert store.get(s.id) is not None  # 40 min after login, 20 after last use
    clock.advance(minutes=30)
    assert store.get(s.id) is None


def test_revoke_and_revoke_user(store, users):
    otto = users.get("otto")
    a, b = store.create(otto), store.create(otto)
    root = store.create(users.get("root1"))
    assert store.revoke(a.id) is True
    assert store.revoke(a.id) is False
    assert store.get(a.id) is None and store.get(b.id) is not None
    assert store.revoke_user("otto") == 1
    assert store.get(b.id) is None
    assert store.get(root.id) is not None


def test_disabled_account_ends_sessions_and_tokens_at_once(store, users):
    s = store.create(users.get("otto"))
    token = store.create_token("otto", "bridge")
    users.disable("otto")
    assert store.get(s.id) is None
    assert store.token_user(token) is None
    users.enable("otto")
    assert store.token_user(token) == "otto"  # token was only blocked, never revoked
    with pytest.raises(ValueError):
        store.create(User("ghost", frozenset({Role.VIEWER}), "", True, T0))


def test_role_change_applies_to_open_sessions(store, users):
    s = store.create(users.get("otto"))
    users.set_roles("otto", ["operator", "municipal"])
    assert store.get(s.id).roles == {Role.OPERATOR, Role.MUNICIPAL}


def test_sessions_in_a_separate_file_keep_the_roles_of_login(tmp_path, users, clock):
    store = SessionStore(tmp_path / "sessions-only.sqlite", clock=clock)
    s = store.create(users.get("otto"))
    assert store.get(s.id).roles == {Role.OPERATOR}
    store.close()


def test_purge_expired(store, users, clock):
    store.create(users.get("otto"))
    keep = store.create(users.get("root1"))
    clock.advance(minutes=31)
    fresh = store.create(users.get("root1"))
    assert store.purge_expired() == 2
    assert store.get(fresh.id) is not None and store.get(keep.id) is None


def test_bad_lifetimes():
    with pytest.raises(ValueError):
        SessionStore(":memory:", ttl_s=0)


# -- CSRF ---------------------------------------------------------------------------
def test_check_csrf(store, users, monkeypatch):
    s = store.create(users.get("otto"))
    other = store.create(users.get("root1"))
    assert check_csrf(s, s.csrf_token)
    assert not check_csrf(s, other.csrf_token)
    assert not check_csrf(s, s.csrf_token[:-1])
    assert not check_csrf(s, "")
    assert not check_csrf(s, None)
    assert not check_csrf(None, s.csrf_token)
    assert not check_csrf(s, s.csrf_token + "ü")
    used = []
    real = hmac.compare_digest
    monkeypatch.setattr(sessions_mod.hmac, "compare_digest", lambda a, b: used.append(1) or real(a, b))
    assert check_csrf(s, s.csrf_token) and used  # constant-time compare is what decides


# -- cookies ------------------------------------------------------------------------
def test_cookie_settings():
    assert cookie_kwargs(True) == {"httponly": True, "samesite": "strict", "path": "/", "secure": True}
    plain = cookie_kwargs(False, max_age_s=3600)
    assert plain["secure"] is False and plain["httponly"] is True and plain["max_age"] == 3600
    assert cookie_name(True).startswith("__Host-") and cookie_name(False) == "ems_session"


# -- API tokens -----------------------------------------------------------------------
def test_tokens(store, clock):
    t = store.create_token("otto", "scada bridge")
    assert t.startswith("ems_") and store.token_user(t) == "otto"
    token_id = t.split("_")[1]
    [info] = store.list_tokens("otto")
    assert info.token_id == token_id and info.label == "scada bridge" and not info.revoked
    clock.advance(minutes=1)
    store.token_user(t)
    assert store.list_tokens()[0].last_used == T0 + timedelta(minutes=1)
    assert store.revoke_token(token_id) is True
    assert store.token_user(t) is None
    assert store.revoke_token(t) is False  # already revoked
    assert store.list_tokens("otto")[0].revoked


def test_token_revoked_by_full_value(store):
    t = store.create_token("otto", "x")
    assert store.revoke_token(t) and store.token_user(t) is None


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # right id, wrong secret
    lambda t: t.replace("ems_", "emz_"),
    lambda t: t + "x",
    lambda t: "",
    lambda t: None,
    lambda t: "ems_00000000_" + "A" * 43,
])
def test_wrong_tokens(store, mangle):
    t = store.create_token("otto", "x")
    assert store.token_user(mangle(t)) is None


def test_token_expiry(store, clock):
    t = store.create_token("otto", "short", ttl_s=3600)
    clock.advance(minutes=59)
    assert store.token_user(t) == "otto"
    clock.advance(minutes=1)
    assert store.token_user(t) is None


def test_token_input_checks(store):
    with pytest.raises(ValueError, match="label"):
        store.create_token("otto", "  ")
    with pytest.raises(ValueError, match="ttl"):
        store.create_token("otto", "x", ttl_s=-1)
    with pytest.raises(ValueError, match="no enabled user"):
        store.create_token("ghost", "x")


def test_revoke_user_with_tokens(store, users):
    s = store.create(users.get("otto"))
    t = store.create_token("otto", "x")
    assert store.revoke_user("otto", tokens=True) == 2
    assert store.get(s.id) is None and store.token_user(t) is None


def test_deleted_user_row_ends_sessions(store, users, db):
    s = store.create(users.get("otto"))
    con = sqlite3.connect(db)
    con.execute("DELETE FROM users WHERE username = 'otto'")
    con.commit()
    con.close()
    assert store.get(s.id) is None
