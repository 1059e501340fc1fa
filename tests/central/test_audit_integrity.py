"""Audit log against the holder of its file: MACs with a key kept outside the database, and the
append-only head log that shows records cut off (issue 11, item 4).

Each hostile case does what someone with write access to ``audit.sqlite`` (but not to the key or
the head log) can do: drop the guard triggers, edit a record and compute every SHA hash again, cut
the newest records, strip the MACs, swap the file.
"""

from __future__ import annotations

import errno
import json
import os
import sqlite3
import stat
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from devices.configfile import ConfigError
from ems.central.audit import (
    GENESIS_HASH,
    AuditKeyError,
    AuditLog,
    create_key_file,
    key_id,
    load_key,
    record_hash,
)
from ems.central.cli import build_service
from ems.central.config import load_central_config

ROOT = Path(__file__).resolve().parents[2]
T0 = datetime(2026, 9, 15, 0, 0, tzinfo=timezone.utc)
KEY = b"k" * 16 + b"0123456789abcdef0123456789abcdef"


@pytest.fixture
def paths(tmp_path):
    return tmp_path / "data" / "audit.sqlite", tmp_path / "log" / "audit-head.log"


@pytest.fixture
def log(paths):
    a = AuditLog(paths[0], KEY, paths[1])
    yield a
    a.close()


def fill(log, n, start=0):
    return [log.append(f"user{i % 2}", "mode_switch", f"hall-{i:02d}", reason=f"reason {i} 台風",
                       details={"i": i}, time=T0 + timedelta(minutes=i)) for i in range(start, start + n)]


def raw(path):
    """What the file's holder can do: a plain connection with the guard triggers dropped."""
    con = sqlite3.connect(path)
    for name in ("audit_no_update", "audit_no_delete", "audit_mac_no_update", "audit_mac_no_delete"):
        con.execute(f"DROP TRIGGER IF EXISTS {name}")
    return con


def rehash_from(con, seq):
    """Compute every SHA hash again from ``seq`` on, as a forger would (the old verify then said ok)."""
    rows = con.execute("SELECT seq, time, actor, action, target, reason, details FROM audit WHERE seq >= ? "
                       "ORDER BY seq", (seq,)).fetchall()
    prev = con.execute("SELECT hash FROM audit WHERE seq = ?", (seq - 1,)).fetchone()
    prev = prev[0] if prev else GENESIS_HASH
    for s, t, actor, action, target, reason, details in rows:
        h = record_hash(s, t, actor, action, target, reason, json.loads(details), prev)
        con.execute("UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?", (prev, h, s))
        prev = h
    con.commit()


def test_a_fresh_signed_log_verifies(log, paths):
    recs = fill(log, 5)
    res = log.verify()
    assert res.ok and res.checked == 5 and res.signed and res.unsigned == 0, res
    assert res.head_seq == 5 and res.last_seq == 5 and res.cuts == () and res.first_bad_seq is None
    assert all(r.mac and len(r.mac) == 64 for r in recs) and log.records() == recs
    lines = paths[1].read_text().splitlines()
    assert lines[0].startswith("# ems audit head log v1") and f"key-id={key_id(KEY)}" in lines[0]
    assert [line.split("\t")[:2] for line in lines[1:]] == [[str(r.seq), r.mac] for r in recs]
    assert stat.S_IMODE(paths[1].stat().st_mode) & 0o002 == 0


def test_empty_signed_log_verifies(log):
    res = log.verify()
    assert res.ok and res.checked == 0 and res.head_seq == 0


def test_edit_with_every_hash_recomputed_is_found_by_seq(log, paths):
    fill(log, 8)
    con = raw(paths[0])
    con.execute("UPDATE audit SET reason = 'routine test', target = 'hall-99' WHERE seq = 3")
    rehash_from(con, 3)
    assert AuditLog(paths[0]).verify().ok  # the SHA chain alone is satisfied: that was the hole
    res = log.verify()
    assert not res.ok and res.first_bad_seq == 3 and res.changed_seq == 3 and "MAC" in res.problem, res
    assert res.checked == 3


def test_edit_of_the_newest_record_is_found(log, paths):
    fill(log, 4)
    con = raw(paths[0])
    con.execute("UPDATE audit SET actor = 'nobody' WHERE seq = 4")
    rehash_from(con, 4)
    res = log.verify()
    assert not res.ok and res.changed_seq == 4


def test_edit_with_macs_stripped_is_found_by_the_head_log(log, paths):
    fill(log, 6)
    con = raw(paths[0])
    con.execute("DELETE FROM audit_mac")  # "these were written without the key"
    con.execute("UPDATE audit SET reason = 'nothing happened' WHERE seq = 2")
    rehash_from(con, 2)
    res = log.verify()
    assert not res.ok and res.unsigned == 6
    assert res.first_bad_seq == 6 and "head log recorded" in res.problem, res


def test_one_stripped_mac_is_found_at_the_next_record(log, paths):
    fill(log, 5)
    con = raw(paths[0])
    con.execute("DELETE FROM audit_mac WHERE seq = 2")
    con.execute("UPDATE audit SET reason = 'edited' WHERE seq = 2")
    rehash_from(con, 2)
    con.commit()
    res = log.verify()
    assert not res.ok and res.changed_seq == 3, res


def test_cut_newest_records_are_reported_with_the_counts(log, paths):
    fill(log, 10)
    con = raw(paths[0])
    con.execute("DELETE FROM audit WHERE seq > 7")
    con.execute("DELETE FROM audit_mac WHERE seq > 7")
    con.commit()
    assert AuditLog(paths[0]).verify().ok  # the chain alone cannot see it
    res = log.verify()
    assert not res.ok and res.changed_seq is None and res.first_bad_seq == 8
    assert res.cuts == ({"kind": "tail", "head_seq": 10, "db_seq": 7, "missing": 3},)
    assert res.head_seq == 10 and res.last_seq == 7
    assert "head log knows seq 10, the database ends at seq 7: 3 record(s) missing" in res.problem


def test_cut_and_appended_again_is_reported(log, paths):
    fill(log, 6)
    con = raw(paths[0])
    con.execute("DELETE FROM audit WHERE seq > 3")
    con.commit()
    fill(log, 2, start=20)  # the service goes on appending: seq 4 and 5 again, validly signed
    res = log.verify()
    assert not res.ok and res.changed_seq is None and res.last_seq == 5 and res.head_seq == 5
    cut = res.cuts[0]
    assert (cut["kind"], cut["head_seq"], cut["db_seq"], cut["missing"]) == ("rewritten", 6, 3, 3), res.cuts
    assert res.first_bad_seq == 4


def test_a_deleted_database_is_a_cut(paths):
    a = AuditLog(paths[0], KEY, paths[1])
    fill(a, 4)
    a.close()
    for p in paths[0].parent.iterdir():
        p.unlink()
    b = AuditLog(paths[0], KEY, paths[1])
    res = b.verify()
    assert not res.ok and res.cuts[0]["kind"] == "tail" and res.cuts[0]["missing"] == 4
    b.close()


def test_an_older_copy_put_back_is_a_cut(paths, tmp_path):
    a = AuditLog(paths[0], KEY, paths[1])
    fill(a, 3)
    a.close()
    backup = tmp_path / "backup.sqlite"
    sqlite3.connect(paths[0]).execute(f"VACUUM INTO '{backup}'")
    a = AuditLog(paths[0], KEY, paths[1])
    fill(a, 3, start=3)
    a.close()
    for p in paths[0].parent.iterdir():
        p.unlink()
    backup.rename(paths[0])
    b = AuditLog(paths[0], KEY, paths[1])
    res = b.verify()
    assert not res.ok and res.cuts[0] == {"kind": "tail", "head_seq": 6, "db_seq": 3, "missing": 3}
    b.close()


def test_a_record_forged_at_the_end_is_found(log, paths):
    fill(log, 3)
    con = raw(paths[0])
    prev = con.execute("SELECT hash FROM audit WHERE seq = 3").fetchone()[0]
    t = "2026-09-15T01:00:00.000000+00:00"
    con.execute("INSERT INTO audit VALUES (4, ?, 'x', 'login', '', '', '{}', ?, ?)",
                (t, prev, record_hash(4, t, "x", "login", "", "", {}, prev)))
    con.execute("INSERT INTO audit_mac VALUES (4, ?)", ("ab" * 32,))
    con.commit()
    res = log.verify()
    assert not res.ok and res.changed_seq == 4


def test_the_head_log_survives_a_restart(paths):
    a = AuditLog(paths[0], KEY, paths[1])
    fill(a, 3)
    a.close()
    b = AuditLog(paths[0], KEY, paths[1])
    assert b.verify().ok and b.verify().head_seq == 3
    fill(b, 2, start=3)
    b.close()
    lines = paths[1].read_text().splitlines()
    assert sum(line.startswith("# ems audit head log") for line in lines) == 1 and len(lines) == 6
    con = raw(paths[0])
    con.execute("DELETE FROM audit WHERE seq >= 4")
    con.commit()
    c = AuditLog(paths[0], KEY, paths[1])
    res = c.verify()
    assert not res.ok and res.cuts[0] == {"kind": "tail", "head_seq": 5, "db_seq": 3, "missing": 2}
    c.close()


def test_the_wrong_key_is_named(paths):
    a = AuditLog(paths[0], KEY, paths[1])
    fill(a, 2)
    a.close()
    other = b"z" * 40
    b = AuditLog(paths[0], other, paths[1])
    res = b.verify()
    assert not res.ok and res.changed_seq == 1 and "different key file" in res.problem
    assert key_id(KEY) in res.problem and key_id(other) in res.problem
    b.close()


def test_junk_appended_to_the_head_log_is_reported(log, paths):
    fill(log, 2)
    with open(paths[1], "a") as f:
        f.write("hello world\n")
    res = log.verify()
    assert not res.ok and "unreadable line 4" in res.problem


def test_a_torn_head_line_is_only_a_note_also_after_a_restart(paths):
    a = AuditLog(paths[0], KEY, paths[1])
    fill(a, 2)
    with open(paths[1], "a") as f:
        f.write("3\tabc")  # the machine lost power while the line was written
    res = a.verify()
    assert res.ok and any("incomplete" in n for n in res.notes), res
    a.close()
    b = AuditLog(paths[0], KEY, paths[1])
    fill(b, 2, start=2)
    res = b.verify()
    assert res.ok and res.head_seq == 4 and any("incomplete" in n for n in res.notes), res
    b.close()


def test_records_appended_without_the_key_are_listed_and_still_covered(log, paths):
    fill(log, 2)
    cli = AuditLog(paths[0])  # as `ems users add --audit-db` does
    cli.append("cli:root", "user_added", "alice")
    cli.close()
    res = log.verify()
    assert res.ok and res.unsigned == 1 and "seq 3" in res.notes[0], res
    fill(log, 1, start=5)
    assert log.verify().ok
    con = raw(paths[0])  # the unsigned record is edited afterwards: the next signed record sees it
    con.execute("UPDATE audit SET target = 'mallory' WHERE seq = 3")
    rehash_from(con, 3)
    res = log.verify()
    assert not res.ok and res.changed_seq == 4


def test_an_unsigned_log_says_what_it_cannot_see(tmp_path):
    a = AuditLog(tmp_path / "a.sqlite")
    fill(a, 2)
    res = a.verify()
    assert res.ok and not res.signed and res.head_seq is None and "not signed" in res.notes[0]
    a.close()


def test_a_log_from_before_signing_gets_signed_records_on_top(paths):
    old = AuditLog(paths[0])
    fill(old, 3)
    old.close()
    a = AuditLog(paths[0], KEY, paths[1])
    fill(a, 2, start=3)
    res = a.verify()
    assert res.ok and res.unsigned == 3 and res.checked == 5 and res.head_seq == 5
    a.close()


def test_an_unwritable_head_log_does_not_fail_the_append(log, paths, caplog, monkeypatch):
    fill(log, 1)

    def disk_full(seq, mac):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(log._head, "record", disk_full)
    rec = log.append("x", "login", "")
    assert rec.seq == 2 and "cannot append" in caplog.text and log.records()[-1] == rec
    res = log.verify()
    assert res.ok and res.head_seq == 1 and any("not in the head log" in n for n in res.notes), res


def test_threads_and_two_instances_keep_the_head_log_in_order(paths):
    a, b = AuditLog(paths[0], KEY, paths[1]), AuditLog(paths[0], KEY, paths[1])

    def work(log, name):
        for i in range(25):
            log.append(name, "ack", f"hall-{i % 14:02d}", details={"i": i})

    threads = [threading.Thread(target=work, args=(lg, f"w{k}")) for k, lg in enumerate([a, b, a, b])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    res = a.verify()
    assert res.ok and res.checked == 100 and res.head_seq == 100 and res.cuts == (), res
    a.close()
    b.close()


# -- the key --------------------------------------------------------------------------------------

def test_key_file_missing_is_a_clear_error(tmp_path):
    with pytest.raises(AuditKeyError, match=r"key file .*nokey does not exist.*token_hex"):
        load_key(tmp_path / "nokey")


def test_short_key_is_refused(tmp_path):
    (tmp_path / "k").write_text("short\n")
    with pytest.raises(AuditKeyError, match="at least 32 characters"):
        load_key(tmp_path / "k")


def test_create_key_file_is_private_and_kept(tmp_path):
    path = tmp_path / "secrets" / "audit.key"
    assert create_key_file(path) and stat.S_IMODE(path.stat().st_mode) == 0o600
    key = load_key(path)
    assert len(key) == 64 and not create_key_file(path) and load_key(path) == key


def test_head_log_without_key_is_refused(tmp_path):
    with pytest.raises(ValueError, match="needs the key"):
        AuditLog(tmp_path / "a.sqlite", None, tmp_path / "head.log")


# -- through the config and the service --------------------------------------------------------------

def _central(tmp_path, audit_yaml: str) -> Path:
    (tmp_path / "fleet.yaml").write_text((ROOT / "config" / "fleet.yaml").read_text(encoding="utf-8"),
                                         encoding="utf-8")
    if not (tmp_path / "devicemaps").exists():
        (tmp_path / "devicemaps").symlink_to(ROOT / "config" / "devicemaps")
    p = tmp_path / "central.yaml"
    p.write_text("data_dir: data\nmqtt: {username: null}\n" + audit_yaml, encoding="utf-8")
    return p


def test_service_with_missing_key_file_does_not_start(tmp_path):
    cfg = load_central_config(_central(tmp_path, "audit: {key_file: secrets/audit.key, head_log: log/head.log}\n"))
    with pytest.raises(ConfigError) as err:
        build_service(cfg)
    assert "audit.key_file" in str(err.value) and "audit.key" in str(err.value) and "does not exist" in str(err.value)


def test_head_log_without_key_file_in_the_config_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="audit"):
        load_central_config(_central(tmp_path, "audit: {head_log: log/head.log}\n"))
    with pytest.raises(ConfigError, match="audit"):
        load_central_config(_central(tmp_path, "audit: {key_file: k}\n"))


def test_unopenable_head_log_names_the_field(tmp_path):
    create_key_file(tmp_path / "secrets" / "audit.key")
    (tmp_path / "log").write_text("a file where a folder should be")
    cfg = load_central_config(_central(tmp_path, "audit: {key_file: secrets/audit.key, head_log: log/head.log}\n"))
    with pytest.raises(ConfigError, match="audit.head_log: head log .*cannot open"):
        build_service(cfg)


def test_verify_api_reports_the_cut(tmp_path, fleet):
    from fastapi.testclient import TestClient

    from ems.central.app import create_app
    from tests.central.conftest import random_password

    create_key_file(tmp_path / "secrets" / "audit.key")
    cfg = load_central_config(_central(tmp_path, "audit: {key_file: secrets/audit.key, head_log: log/head.log}\n"))
    service = build_service(cfg, fleet, link=_NoLink())
    password = random_password("root1")
    service.security.users.add("root1", password, ["admin"])
    for i in range(4):
        service.audit.append("root1", "login", "", details={"i": i})
    with TestClient(create_app(service)) as client:
        token = service.security.sessions.create_token("root1", "tests")
        client.headers["Authorization"] = f"Bearer {token}"
        ok = client.get("/api/audit/verify").json()
        assert ok["ok"] and ok["signed"] and ok["head_seq"] == 4 and ok["cuts"] == []
        con = raw(tmp_path / "data" / "audit.sqlite")
        con.execute("DELETE FROM audit WHERE seq > 2")
        con.commit()
        bad = client.get("/api/audit/verify").json()
    assert not bad["ok"] and bad["first_bad_seq"] == 3
    assert bad["cuts"] == [{"kind": "tail", "head_seq": 4, "db_seq": 2, "missing": 2}]
    assert bad["head_log"] == str(tmp_path / "log" / "head.log")


class _NoLink:
    connected = False

    def publish_raw(self, topic, payload, qos=1):
        pass

    def start(self):
        pass

    def stop(self):
        pass


def test_a_deleted_head_log_is_reported(paths):
    a = AuditLog(paths[0], KEY, paths[1])
    fill(a, 3)
    a.close()
    paths[1].unlink()  # the head log is emptied or removed: the database alone can no longer be trusted
    b = AuditLog(paths[0], KEY, paths[1])
    res = b.verify()
    assert not res.ok and res.head_seq == 0 and "knows no record" in res.problem and "3 signed" in res.problem
    b.close()
