"""A damaged SQLite file does not stop the central service (issue 11, item 6, central part).

For each store of the service (users and sessions, audit, alarms, local history, JMA seen set) and each
kind of damage (random bytes, a database cut short, a file that is no database at all) the service is
built from a config as ``ems central`` builds it: it starts, the damaged file is kept as
``<name>.corrupt-<UTC time>``, a fresh one is in its place, a central alarm says what happened and what
it means, and the other stores keep everything they had.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import urllib.request
from datetime import datetime, timezone
from pathlib import Path

import pytest

from ems.central.alarmbook import CENTRAL_SITE, AlarmBook
from ems.central.audit import AuditLog, create_key_file
from ems.central.cli import build_service
from ems.central.config import load_central_config
from ems.central.sqlite_recovery import open_sqlite_or_recover
from tests.central.conftest import random_password, state_message
from tests.netutil import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
STORES = ("users.sqlite", "audit.sqlite", "alarms.sqlite", "history.sqlite", "jma-seen.sqlite",
          "operations.sqlite")
DAMAGE = ("garbage", "truncated", "not_sqlite")
T0 = datetime(2026, 9, 15, 3, 0, tzinfo=timezone.utc)


class _NoLink:
    connected = False

    def publish_raw(self, topic, payload, qos=1):
        pass

    def start(self):
        pass

    def stop(self):
        pass


def _config(tmp_path: Path, port: int | None = None, mqtt_port: int | None = None) -> Path:
    (tmp_path / "fleet.yaml").write_text((ROOT / "config" / "fleet.yaml").read_text(encoding="utf-8"),
                                         encoding="utf-8")
    if not (tmp_path / "devicemaps").exists():
        (tmp_path / "devicemaps").symlink_to(ROOT / "config" / "devicemaps")
    (tmp_path / "jma").mkdir(exist_ok=True)
    create_key_file(tmp_path / "secrets" / "audit.key")
    listen = f"listen: {{port: {port}}}\n" if port else ""
    mqtt = f"mqtt: {{port: {mqtt_port}, username: null}}\n" if mqtt_port else "mqtt: {username: null}\n"
    path = tmp_path / "central.yaml"
    path.write_text("data_dir: data\n" + listen + mqtt + "jma: {enabled: true, source: jma}\n"
                    "audit: {key_file: secrets/audit.key, head_log: log/audit-head.log}\n", encoding="utf-8")
    return path


def _build(tmp_path: Path):
    return build_service(load_central_config(tmp_path / "central.yaml"), link=_NoLink())


def _close(service) -> None:
    for close in (service.security.users.close, service.security.sessions.close, service.audit.close,
                  service.alarms.close, service.history.close, service.jma.reader.close, service.operations.close):
        close()


def _populate(tmp_path: Path) -> dict:
    """A service that has been used: a user and a token, audit records, a site alarm, history, a seen
    JMA entry; each file padded so that cutting it short damages its tables.  Returns what to look for."""
    _config(tmp_path)
    service = _build(tmp_path)
    password = random_password("root1")
    service.security.users.add("root1", password, ["admin"])
    token = service.security.sessions.create_token("root1", "tests")
    for i in range(5):
        service.audit.append("root1", "login", "", details={"i": i})
    service.alarms.sync_active("hall-01", [{"id": "a1", "code": "battery_fault", "severity": "critical",
                                            "message": "BMS"}], T0)
    service.history.record_state("hall-01", state_message("hall-01", time=T0), T0)
    service.jma.reader._mark("entry-1", "parsed")
    op = service.switch_mode(["hall-01"], "disaster_reserve", "typhoon", "root1", "disaster")
    _close(service)
    for name in STORES:
        con = sqlite3.connect(tmp_path / "data" / name)
        con.execute("CREATE TABLE IF NOT EXISTS padding (x BLOB)")
        con.executemany("INSERT INTO padding VALUES (randomblob(3000))", [()] * 40)
        con.commit()
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.close()
    return {"password": password, "token": token, "operation": op.id}


def _damage(path: Path, how: str) -> bytes:
    if how == "garbage":
        data = os.urandom(16384)
    elif how == "truncated":
        data = path.read_bytes()
        data = data[: len(data) * 2 // 5]
    else:
        data = b'{"users": ["root1"], "note": "a JSON file copied over the database"}\n'
    for side in ("-wal", "-shm"):
        Path(f"{path}{side}").unlink(missing_ok=True)
    path.write_bytes(data)
    return data


def _store_alarms(service) -> list:
    return [a for a in service.alarms.list("open", site=CENTRAL_SITE) if a.code == "store_recovered"]


@pytest.mark.parametrize("how", DAMAGE)
@pytest.mark.parametrize("name", STORES)
def test_service_starts_with_a_damaged_store(tmp_path, name, how, caplog):
    before = _populate(tmp_path)
    data = tmp_path / "data"
    damaged = _damage(data / name, how)
    service = _build(tmp_path)
    try:
        moved = sorted(data.glob(f"{name}.corrupt-*"))
        assert [p.name for p in moved if not p.name.endswith(("-wal", "-shm"))] == [moved[0].name], moved
        assert moved[0].read_bytes() == damaged  # kept as it was, for a person to look at
        assert sqlite3.connect(data / name).execute("PRAGMA quick_check").fetchall() == [("ok",)]
        alarms = _store_alarms(service)
        assert len(alarms) == 1 and alarms[0].active, alarms
        assert str(data / name) in alarms[0].message and moved[0].name in alarms[0].message
        assert str(data / name) in caplog.text
        assert service.audit.records(action="store_recovered")[0].target == str(data / name)
        # Nothing else is lost.
        users = service.security.users
        if name == "users.sqlite":
            assert users.count() == 0 and alarms[0].severity == "critical"
            assert "ems users add --db" in alarms[0].message and "ems users add --db" in caplog.text
        else:
            assert users.authenticate("root1", before["password"]) is not None
            assert service.security.sessions.token_user(before["token"]) == "root1"
        if name != "alarms.sqlite":
            assert service.alarms.get("hall-01/a1") is not None
        if name != "history.sqlite":
            assert service.history.series("hall-01", T0.replace(hour=2), T0.replace(hour=4)).series["soc_pct"]
        if name != "jma-seen.sqlite":
            assert service.jma.reader.seen("entry-1")
        if name != "operations.sqlite":
            assert service.operations.get(before["operation"]).commands[0].site == "hall-01"
        else:
            assert service.operations.recent() == [] and "check the halls' modes" in alarms[0].message
        res = service.audit.verify()
        if name == "audit.sqlite":
            assert alarms[0].severity == "critical" and "verify" in alarms[0].message
            # The records of the damaged file are gone from this log: verify says so, and where they went.
            assert not res.ok and res.cuts[0]["kind"] == "replaced" and res.cuts[0]["head_seq"] == 6  # 5 logins, 1 switch
            assert moved[0].name in res.cuts[0]["note"] and "replaced" in res.problem
        else:
            assert res.ok, res
    finally:
        _close(service)


def test_the_alarm_shows_in_the_api_and_an_ack_clears_it(tmp_path):
    from fastapi.testclient import TestClient

    from ems.central.app import create_app

    before = _populate(tmp_path)
    _damage(tmp_path / "data" / "history.sqlite", "garbage")
    service = _build(tmp_path)
    try:
        with TestClient(create_app(service)) as client:
            client.headers["Authorization"] = f"Bearer {before['token']}"
            listed = client.get("/api/alarms?state=active").json()["alarms"]
            alarm = next(a for a in listed if a["site"] == CENTRAL_SITE)
            assert alarm["code"] == "store_recovered" and "history.sqlite" in alarm["message"]
            r = client.post(f"/api/alarms/{alarm['id']}/ack", json={"note": "looked at the moved file"})
            assert r.status_code == 200 and r.json()["acked_by"] == "root1" and not r.json()["active"]
            assert not any(a["site"] == CENTRAL_SITE for a in client.get("/api/alarms?state=open").json()["alarms"])
    finally:
        _close(service)


def test_a_second_start_raises_no_new_alarm(tmp_path):
    _populate(tmp_path)
    _damage(tmp_path / "data" / "jma-seen.sqlite", "not_sqlite")
    _close(_build(tmp_path))
    service = _build(tmp_path)
    try:
        assert len(_store_alarms(service)) == 1
        assert len(list((tmp_path / "data").glob("jma-seen.sqlite.corrupt-*"))) == 1
    finally:
        _close(service)


def test_a_store_that_is_only_locked_is_not_moved(tmp_path):
    path = tmp_path / "a.sqlite"
    AlarmBook(path).close()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        with pytest.raises(sqlite3.OperationalError, match="locked"):
            open_sqlite_or_recover(path, "CREATE TABLE IF NOT EXISTS t (x);", what="test store", timeout=0.2)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert list(tmp_path.glob("a.sqlite.corrupt-*")) == []


def test_a_damaged_audit_log_opened_directly_marks_the_head_log(tmp_path):
    key = b"k" * 40
    log = AuditLog(tmp_path / "audit.sqlite", key, tmp_path / "head.log")
    for i in range(3):
        log.append("a", "login", "", details={"i": i})
    log.close()
    _damage(tmp_path / "audit.sqlite", "garbage")
    seen = []
    log = AuditLog(tmp_path / "audit.sqlite", key, tmp_path / "head.log", on_recovered=seen.append)
    log.append("a", "login", "")
    res = log.verify()
    assert len(seen) == 1 and seen[0].moved_to.name.startswith("audit.sqlite.corrupt-")
    assert not res.ok and [c["kind"] for c in res.cuts] == ["replaced"] and res.cuts[0]["head_seq"] == 3
    assert res.last_seq == 1 and res.head_seq == 1 and res.changed_seq is None
    assert "# new database" in (tmp_path / "head.log").read_text()
    log.close()


def test_ems_central_starts_with_a_damaged_users_store(tmp_path):
    _populate(tmp_path)
    _damage(tmp_path / "data" / "users.sqlite", "garbage")
    port = free_port()
    path = _config(tmp_path, port=port, mqtt_port=free_port())
    proc = subprocess.Popen([sys.executable, "-m", "ems.cli", "central", "--config", str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port, timeout_s=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/public/shelters", timeout=10) as r:
            assert r.status == 200 and b"Koyama" in r.read()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0, out
    assert str(tmp_path / "data" / "users.sqlite") in out and "ems users add --db" in out and "CRITICAL" in out
    assert len(list((tmp_path / "data").glob("users.sqlite.corrupt-*"))) == 1
