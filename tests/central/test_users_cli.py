"""``ems users``: password sources, one-line errors with exit 2, tokens, audit, as a real process too."""

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ems.central import users_cli
from ems.cli import main as ems_main
from ems.central.audit import AuditLog
from ems.central.sessions import SessionStore
from ems.central.users import UserStore

PW = "lantern-river-4821"
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    monkeypatch.delenv("EMS_NEW_PASSWORD", raising=False)
    monkeypatch.delenv("EMS_USERS_DB", raising=False)


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "users.sqlite")


def run(*argv, capsys=None):
    code = ems_main(["users", *argv])
    out = capsys.readouterr() if capsys else None
    return code, out


def add_admin(db, monkeypatch, name="root1"):
    monkeypatch.setenv("EMS_NEW_PASSWORD", PW)
    assert ems_main(["users", "add", "--db", db, "--roles", "admin", name]) == 0
    monkeypatch.delenv("EMS_NEW_PASSWORD")


def test_first_admin_from_env(db, monkeypatch, capsys):
    monkeypatch.setenv("EMS_NEW_PASSWORD", PW)
    code, out = run("add", "--db", db, "--roles", "admin", "--display-name", "Root One", "root1", capsys=capsys)
    assert code == 0 and "root1 added" in out.out
    assert UserStore(db).authenticate("root1", PW).display_name == "Root One"


def test_password_file(db, tmp_path, capsys):
    f = tmp_path / "pw.txt"
    f.write_text(PW + "\nsecond line ignored\n")
    code, _ = run("add", "--db", db, "--role", "operator,municipal", "--password-file", str(f), "omar", capsys=capsys)
    assert code == 0
    assert UserStore(db).authenticate("omar", PW) is not None


def test_password_stdin(db, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", io.StringIO(PW + "\n"))
    assert run("add", "--db", db, "--roles", "viewer", "--password-stdin", "vera", capsys=capsys)[0] == 0
    assert UserStore(db).authenticate("vera", PW) is not None


class Tty(io.StringIO):
    def isatty(self):
        return True


def test_prompt_with_confirmation(db, monkeypatch, capsys):
    monkeypatch.setattr(sys, "stdin", Tty())
    answers = iter([PW, PW])
    monkeypatch.setattr(users_cli.getpass, "getpass", lambda prompt="": next(answers))
    assert run("add", "--db", db, "--roles", "admin", "root1", capsys=capsys)[0] == 0
    answers = iter([PW, PW + "typo"])
    code, out = run("add", "--db", db, "--roles", "viewer", "vera", capsys=capsys)
    assert code == 2 and "do not match" in out.err
    assert UserStore(db).get("vera") is None


@pytest.mark.parametrize("argv, env_pw, words", [
    (["add", "--roles", "admin", "root1"], PW, "--db"),
    (["add", "--db", "{db}", "--roles", "admin", "Root One"], PW, "invalid user name"),
    (["add", "--db", "{db}", "--roles", "wizard", "root1"], PW, "unknown role"),
    (["add", "--db", "{db}", "--roles", "admin", "root1"], "tiny-pw", "too short"),
    (["add", "--db", "{db}", "--roles", "admin", "root1"], "password1234", "common"),
    (["add", "--db", "{db}", "--roles", "admin", "root1"], None, "no password given"),
    (["add", "--db", "{db}", "--roles", "admin", "--password-file", "/nonexistent/pw", "root1"], None, "--password-file"),
    (["passwd", "--db", "{db}", "ghost"], PW, "no user 'ghost'"),
    (["disable", "--db", "{db}", "ghost"], None, "no user 'ghost'"),
    (["token", "--db", "{db}", "--label", "x", "ghost"], None, "no enabled user"),
    (["revoke-token", "--db", "{db}", "deadbeef"], None, "no active token"),
])
def test_bad_input_is_one_line_and_exit_2(db, monkeypatch, capsys, argv, env_pw, words):
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    if env_pw:
        monkeypatch.setenv("EMS_NEW_PASSWORD", env_pw)
    code, out = run(*[a.replace("{db}", db) for a in argv], capsys=capsys)
    assert code == 2
    lines = out.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], out.err
    if env_pw and env_pw != PW:
        assert env_pw not in out.err


def test_duplicate_and_last_admin(db, monkeypatch, capsys):
    add_admin(db, monkeypatch)
    monkeypatch.setenv("EMS_NEW_PASSWORD", PW + "x")
    code, out = run("add", "--db", db, "--roles", "viewer", "root1", capsys=capsys)
    assert code == 2 and "already exists" in out.err
    code, out = run("disable", "--db", db, "root1", capsys=capsys)
    assert code == 2 and "last enabled admin" in out.err
    code, out = run("roles", "--db", db, "--roles", "viewer", "root1", capsys=capsys)
    assert code == 2 and "last enabled admin" in out.err


def test_list(db, monkeypatch, capsys):
    add_admin(db, monkeypatch)
    monkeypatch.setenv("EMS_NEW_PASSWORD", PW + "m")
    run("add", "--db", db, "--roles", "municipal", "--display-name", "鳥取 花子", "hanako", capsys=capsys)
    code, out = run("list", "--db", db, capsys=capsys)
    assert code == 0 and "hanako" in out.out and "municipal" in out.out and "鳥取 花子" in out.out
    code, out = run("list", "--db", db, "--json", capsys=capsys)
    data = json.loads(out.out)
    assert [u["username"] for u in data] == ["hanako", "root1"] and data[0]["roles"] == ["municipal"]
    assert "password" not in out.out


def test_passwd_roles_disable_enable_end_sessions(db, monkeypatch, capsys):
    add_admin(db, monkeypatch)
    monkeypatch.setenv("EMS_NEW_PASSWORD", PW + "o")
    run("add", "--db", db, "--roles", "operator", "otto")
    users, sessions = UserStore(db), SessionStore(db)
    s = sessions.create(users.get("otto"))
    monkeypatch.setenv("EMS_NEW_PASSWORD", "brand-new-secret-77")
    assert run("passwd", "--db", db, "otto", capsys=capsys)[0] == 0
    assert sessions.get(s.id) is None
    assert users.authenticate("otto", "brand-new-secret-77") is not None
    s = sessions.create(users.get("otto"))
    assert run("roles", "--db", db, "--roles", "operator,municipal", "otto", capsys=capsys)[0] == 0
    assert sessions.get(s.id) is None and {r.value for r in users.get("otto").roles} == {"operator", "municipal"}
    token = sessions.create_token("otto", "x")
    assert run("disable", "--db", db, "otto", capsys=capsys)[0] == 0
    assert users.authenticate("otto", "brand-new-secret-77") is None
    assert run("enable", "--db", db, "otto", capsys=capsys)[0] == 0
    assert sessions.token_user(token) is None  # disable revoked the tokens for good
    assert users.authenticate("otto", "brand-new-secret-77") is not None


def test_token_create_list_revoke(db, monkeypatch, capsys):
    add_admin(db, monkeypatch)
    code, out = run("token", "--db", db, "--label", "scada bridge", "--ttl-days", "30", "root1", capsys=capsys)
    token = out.out.strip().splitlines()[-1]
    assert code == 0 and token.startswith("ems_") and "shown once" in out.err
    sessions = SessionStore(db)
    assert sessions.token_user(token) == "root1"
    token_id = token.split("_")[1]
    code, out = run("tokens", "--db", db, capsys=capsys)
    assert token_id in out.out and "scada bridge" in out.out and token not in out.out
    assert run("revoke-token", "--db", db, token_id, capsys=capsys)[0] == 0
    assert sessions.token_user(token) is None
    code, out = run("token", "--db", db, "--label", "x", "--ttl-days", "0", "root1", capsys=capsys)
    assert code == 2 and "--ttl-days" in out.err


def test_audit_records_cli_changes(db, tmp_path, monkeypatch, capsys):
    audit_db = str(tmp_path / "audit.sqlite")
    monkeypatch.setenv("EMS_NEW_PASSWORD", PW)
    assert run("add", "--db", db, "--audit-db", audit_db, "--roles", "admin", "root1", capsys=capsys)[0] == 0
    run("token", "--db", db, "--audit-db", audit_db, "--label", "ci", "root1", capsys=capsys)
    log = AuditLog(audit_db)
    recs = log.records()
    assert [r.action for r in recs] == ["user_added", "token_created"]
    assert recs[0].actor.startswith("cli:") and recs[0].target == "root1" and recs[0].details == {"roles": "admin"}
    assert PW not in json.dumps([r.to_dict() for r in recs])
    assert log.verify().ok


def test_db_from_environment(db, monkeypatch, capsys):
    monkeypatch.setenv("EMS_USERS_DB", db)
    monkeypatch.setenv("EMS_NEW_PASSWORD", PW)
    code = ems_main(["users", "add", "--roles", "admin", "root1"])
    assert code == 0 and UserStore(db).get("root1") is not None


def test_as_a_real_process(db):
    env = {k: v for k, v in os.environ.items() if k not in ("EMS_NEW_PASSWORD", "EMS_USERS_DB")}
    cmd = [sys.executable, "-m", "ems.cli", "users"]
    p = subprocess.run(cmd + ["add", "--db", db, "--roles", "admin", "--password-stdin", "root1"],
                       input=PW + "\n", capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert p.returncode == 0, p.stderr
    p = subprocess.run(cmd + ["add", "--db", db, "--roles", "admin", "root2"], stdin=subprocess.DEVNULL,
                       capture_output=True, text=True, cwd=ROOT, env=env, timeout=60)
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "no password given" in p.stderr
    assert "Traceback" not in p.stderr
