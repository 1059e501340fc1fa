"""UserStore: accounts, authentication (same cost for unknown names), roles, disabling, the last admin."""

import sqlite3
import threading
from datetime import datetime, timezone

import pytest

from ems.central import passwords, users as users_mod
from ems.central.passwords import PasswordPolicyError
from ems.central.roles import Role
from ems.central.users import UnknownUserError, User, UserError, UserStore

PW = "lantern-river-4821"


@pytest.fixture
def store(tmp_path):
    s = UserStore(tmp_path / "users.sqlite", clock=lambda: datetime(2026, 6, 1, 3, 0, tzinfo=timezone.utc))
    yield s
    s.close()


def test_add_get_list_count(store):
    user = store.add("alice", PW, ["admin"], display_name="  Alice   Admin ")
    assert user == User("alice", frozenset({Role.ADMIN}), "Alice Admin", False,
                        datetime(2026, 6, 1, 3, 0, tzinfo=timezone.utc))
    store.add("bob.ops", PW + "b", [Role.OPERATOR, Role.MUNICIPAL])
    assert store.get("bob.ops").roles == {Role.OPERATOR, Role.MUNICIPAL}
    assert [u.username for u in store.list()] == ["alice", "bob.ops"]
    assert store.count() == 2
    assert store.get("nobody") is None
    assert store.get(None) is None  # type: ignore[arg-type]


def test_data_survives_reopening(tmp_path):
    s = UserStore(tmp_path / "u.sqlite")
    s.add("alice", PW, ["viewer"])
    s.close()
    again = UserStore(tmp_path / "u.sqlite")
    assert again.authenticate("alice", PW).username == "alice"
    again.close()


def test_password_is_not_stored_in_clear(store, tmp_path):
    store.add("alice", PW, ["viewer"])
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("users.sqlite*"))
    assert PW.encode() not in raw
    assert b"scrypt$n=32768" in raw


def test_authenticate(store):
    store.add("alice", PW, ["viewer"])
    assert store.authenticate("alice", PW).username == "alice"
    assert store.authenticate("alice", PW + "!") is None
    assert store.authenticate("alice", "") is None
    assert store.authenticate("Alice", PW) is None
    assert store.authenticate("nobody", PW) is None
    assert store.authenticate("x" * 500, PW) is None
    assert store.authenticate(None, PW) is None  # type: ignore[arg-type]


def test_unknown_user_costs_one_scrypt_like_a_known_one(store, monkeypatch):
    store.add("alice", PW, ["viewer"])
    passwords.dummy_verify("warm-up")  # the dummy hash is made once, lazily
    calls = []
    real = passwords._scrypt
    monkeypatch.setattr(passwords, "_scrypt", lambda *a: calls.append(a[2]) or real(*a))
    store.authenticate("alice", "wrong-password-123")
    known = list(calls)
    calls.clear()
    store.authenticate("mallory", "wrong-password-123")
    store.authenticate("NOT A NAME", "wrong-password-123")
    assert known == [32768]
    assert calls == [32768, 32768]


@pytest.mark.parametrize("name", ["ab", "Alice", ".alice", "-x-y", "al ice", "a" * 33, "ユーザー", "", "alice\n"])
def test_bad_usernames(store, name):
    with pytest.raises(UserError, match="invalid user name"):
        store.add(name, PW, ["viewer"])


def test_duplicate_user(store):
    store.add("alice", PW, ["viewer"])
    with pytest.raises(UserError, match="already exists"):
        store.add("alice", PW + "2", ["admin"])


def test_weak_passwords_and_name_in_password(store):
    with pytest.raises(PasswordPolicyError):
        store.add("alice", "short", ["viewer"])
    with pytest.raises(PasswordPolicyError, match="user name"):
        store.add("alice", "my-name-is-ALICE-ok", ["viewer"])
    assert store.count() == 0


def test_roles_required_and_known(store):
    with pytest.raises(ValueError, match="at least one"):
        store.add("alice", PW, [])
    with pytest.raises(ValueError, match="unknown role"):
        store.add("alice", PW, ["root"])


def test_set_password(store):
    store.add("alice", PW, ["viewer"])
    store.set_password("alice", "new-" + PW)
    assert store.authenticate("alice", PW) is None
    assert store.authenticate("alice", "new-" + PW) is not None
    with pytest.raises(UnknownUserError):
        store.set_password("ghost", "new-" + PW)
    with pytest.raises(PasswordPolicyError):
        store.set_password("alice", "1234")


def test_disabled_user_cannot_log_in_even_with_the_right_password(store):
    store.add("root1", PW, ["admin"])
    store.add("alice", PW + "a", ["operator"])
    store.disable("alice")
    assert store.get("alice").disabled
    assert store.authenticate("alice", PW + "a") is None
    store.enable("alice")
    assert store.authenticate("alice", PW + "a") is not None
    with pytest.raises(UnknownUserError):
        store.disable("ghost")


def test_last_admin_is_protected(store):
    store.add("root1", PW, ["admin"])
    with pytest.raises(UserError, match="last enabled admin"):
        store.disable("root1")
    with pytest.raises(UserError, match="last enabled admin"):
        store.set_roles("root1", ["viewer"])
    store.add("root2", PW + "2", ["admin", "municipal"])
    store.set_roles("root1", ["operator"])
    assert store.get("root1").roles == {Role.OPERATOR}
    with pytest.raises(UserError, match="last enabled admin"):
        store.disable("root2")
    assert not store.get("root2").disabled


def test_set_roles(store):
    store.add("root1", PW, ["admin"])
    store.add("alice", PW + "a", ["viewer"])
    assert store.set_roles("alice", "operator,municipal").roles == {Role.OPERATOR, Role.MUNICIPAL}
    with pytest.raises(UnknownUserError):
        store.set_roles("ghost", ["viewer"])
    with pytest.raises(ValueError):
        store.set_roles("alice", ["wizard"])
    assert store.get("alice").roles == {Role.OPERATOR, Role.MUNICIPAL}


def test_display_name_too_long(store):
    with pytest.raises(UserError, match="display name"):
        store.add("alice", PW, ["viewer"], display_name="x" * 101)


def test_outdated_hash_is_upgraded_on_login(store):
    store.add("alice", PW, ["viewer"])
    salt = b"0123456789abcdef"
    weak = f"scrypt$n=1024,r=8,p=1${passwords._b64(salt)}${passwords._b64(passwords._scrypt(PW, salt, 1024, 8, 1, 32))}"
    con = sqlite3.connect(store.db_path)
    con.execute("UPDATE users SET password_hash = ? WHERE username = 'alice'", (weak,))
    con.commit()
    assert store.authenticate("alice", PW) is not None
    new = con.execute("SELECT password_hash FROM users WHERE username = 'alice'").fetchone()[0]
    con.close()
    assert new.startswith("scrypt$n=32768,") and not passwords.needs_rehash(new)
    assert store.authenticate("alice", PW) is not None


def test_concurrent_logins_from_threads(store):
    store.add("alice", PW, ["viewer"])
    results = []

    def login():
        results.append(store.authenticate("alice", PW) is not None)

    threads = [threading.Thread(target=login) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert results == [True] * 6


def test_username_pattern_constant():
    assert users_mod.USERNAME_RE.pattern == r"^[a-z0-9][a-z0-9._-]{2,31}$"
