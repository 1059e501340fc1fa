"""Audit log: chain, append-only triggers, tamper detection by seq, filters, CSV export, threads."""

import csv
import io
import json
import sqlite3
import threading
from datetime import datetime, timedelta, timezone

import pytest

from ems.central.audit import GENESIS_HASH, AuditLog, record_hash

T0 = datetime(2026, 9, 15, 0, 0, tzinfo=timezone.utc)


@pytest.fixture
def log(tmp_path):
    a = AuditLog(tmp_path / "audit.sqlite")
    yield a
    a.close()


def fill(log, n=5):
    out = []
    for i in range(n):
        out.append(log.append(actor=f"user{i % 2}", action=["login", "mode_switch", "dispatch"][i % 3],
                              target=f"hall-{i:02d}", reason=f"reason {i} 台風", details={"i": i, "kw": 5.5},
                              time=T0 + timedelta(minutes=i)))
    return out


def raw(log):
    """A raw connection with the append-only triggers dropped: what someone with the file can do."""
    con = sqlite3.connect(log.db_path)
    con.execute("DROP TRIGGER audit_no_update")
    con.execute("DROP TRIGGER audit_no_delete")
    return con


def test_records_chain(log):
    recs = fill(log)
    assert [r.seq for r in recs] == [1, 2, 3, 4, 5]
    assert recs[0].prev_hash == GENESIS_HASH
    for a, b in zip(recs, recs[1:]):
        assert b.prev_hash == a.hash
    r = recs[2]
    assert r.hash == record_hash(r.seq, "2026-09-15T00:02:00.000000+00:00", r.actor, r.action, r.target, r.reason,
                                 r.details, r.prev_hash)
    assert log.records() == recs
    assert log.verify().ok and log.verify().checked == 5
    assert log.head() == (5, recs[-1].hash)


def test_empty_log_verifies(log):
    assert log.verify().ok and log.verify().checked == 0
    assert log.head() == (0, GENESIS_HASH)


def test_time_is_stored_in_utc(log):
    jst = timezone(timedelta(hours=9))
    r = log.append("a", "login", "", time=datetime(2026, 9, 15, 9, 0, tzinfo=jst))
    assert r.time == T0 and r.time.tzinfo is not None
    assert log.records()[0].time.utcoffset() == timedelta(0)


def test_sql_update_and_delete_are_refused(log):
    fill(log, 3)
    con = sqlite3.connect(log.db_path)
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("UPDATE audit SET reason = 'nothing happened' WHERE seq = 2")
    with pytest.raises(sqlite3.DatabaseError, match="append-only"):
        con.execute("DELETE FROM audit WHERE seq = 3")
    con.close()
    assert log.verify().ok


def test_edited_row_is_found_by_seq(log):
    fill(log, 6)
    con = raw(log)
    con.execute("UPDATE audit SET reason = 'routine test' WHERE seq = 3")
    con.commit()
    res = log.verify()
    assert not res.ok and res.first_bad_seq == 3 and "edited" in res.problem and res.checked == 3


def test_edit_with_recomputed_hash_breaks_the_next_link(log):
    recs = fill(log, 6)
    r = recs[3]  # seq 4
    forged = record_hash(4, "2026-09-15T00:03:00.000000+00:00", r.actor, r.action, "hall-99", r.reason,
                         r.details, r.prev_hash)
    con = raw(log)
    con.execute("UPDATE audit SET target = 'hall-99', hash = ? WHERE seq = 4", (forged,))
    con.commit()
    res = log.verify()
    assert res.first_bad_seq == 5 and "prev_hash" in res.problem


def test_deleted_row_is_found(log):
    fill(log, 5)
    con = raw(log)
    con.execute("DELETE FROM audit WHERE seq = 2")
    con.commit()
    res = log.verify()
    assert not res.ok and res.first_bad_seq == 3 and "missing" in res.problem


def test_details_edit_even_to_same_meaning_is_found(log):
    fill(log, 3)
    con = raw(log)
    con.execute("""UPDATE audit SET details = '{"i": 1, "kw": 5.5}' WHERE seq = 2""")  # spaces: not canonical
    con.commit()
    assert log.verify().first_bad_seq == 2
    con.execute("""UPDATE audit SET details = 'not json' WHERE seq = 2""")
    con.commit()
    assert log.verify().first_bad_seq == 2


def test_forged_record_at_the_end_is_found(log):
    fill(log, 3)
    con = sqlite3.connect(log.db_path)
    con.execute("INSERT INTO audit VALUES (4, '2026-09-15T01:00:00.000000+00:00', 'x', 'login', '', '', '{}', ?, ?)",
                ("f" * 64, "e" * 64))
    con.commit()
    assert log.verify().first_bad_seq == 4


def test_cutting_the_tail_changes_the_head(log):
    fill(log, 4)
    head = log.head()
    con = raw(log)
    con.execute("DELETE FROM audit WHERE seq = 4")
    con.commit()
    assert log.verify().ok  # the chain alone cannot see it...
    assert log.head() != head  # ...a head kept elsewhere can


def test_appending_after_reopen_continues_the_chain(tmp_path):
    a = AuditLog(tmp_path / "a.sqlite")
    fill(a, 2)
    a.close()
    b = AuditLog(tmp_path / "a.sqlite")
    r = b.append("x", "logout", "")
    assert r.seq == 3 and b.verify().ok
    b.close()


def test_filters(log):
    fill(log, 9)
    assert [r.seq for r in log.records(action="login")] == [1, 4, 7]
    assert [r.seq for r in log.records(target="hall-04")] == [5]
    assert [r.seq for r in log.records(actor="user1")] == [2, 4, 6, 8]
    assert [r.seq for r in log.records(since_seq=6)] == [7, 8, 9]
    assert [r.seq for r in log.records(limit=2)] == [1, 2]
    assert [r.seq for r in log.records(limit=3, newest_first=True)] == [9, 8, 7]
    assert log.records(action="no-such") == []


@pytest.mark.parametrize("kw, words", [
    ({"actor": ""}, "actor"),
    ({"action": "  "}, "action"),
    ({"actor": None}, "actor"),
    ({"details": {"x": object()}}, "JSON"),
    ({"details": {"x": float("nan")}}, "JSON"),
    ({"time": datetime(2026, 1, 1)}, "timezone"),
    ({"reason": "x" * 5000}, "reason"),
])
def test_bad_fields(log, kw, words):
    args = {"actor": "a", "action": "login", "target": "t"} | kw
    with pytest.raises(ValueError, match=words):
        log.append(**args)
    assert log.head()[0] == 0


def test_csv_export(log):
    fill(log, 3)
    log.append("=cmd|' /C calc'!A0", "login", "+hall", reason="-1+1", details={"note": "@x"})
    buf = io.StringIO()
    assert log.export_csv(buf) == 4
    rows = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert [r["seq"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[0]["reason"] == "reason 0 台風" and json.loads(rows[0]["details"]) == {"i": 0, "kw": 5.5}
    assert rows[3]["actor"].startswith("'=") and rows[3]["target"] == "'+hall" and rows[3]["reason"] == "'-1+1"
    buf = io.StringIO()
    assert log.export_csv(buf, action="login") == 2


def test_csv_export_can_be_reverified(log):
    fill(log, 4)
    buf = io.StringIO()
    log.export_csv(buf, spreadsheet_safe=False)
    prev = GENESIS_HASH
    for row in csv.DictReader(io.StringIO(buf.getvalue())):
        assert row["prev_hash"] == prev
        assert record_hash(int(row["seq"]), row["time"], row["actor"], row["action"], row["target"], row["reason"],
                           json.loads(row["details"]), row["prev_hash"]) == row["hash"]
        prev = row["hash"]


def test_threads_and_two_connections_append_one_chain(tmp_path):
    a, b = AuditLog(tmp_path / "a.sqlite"), AuditLog(tmp_path / "a.sqlite")

    def work(log, name):
        for i in range(40):
            log.append(name, "ack", f"hall-{i % 14:02d}", details={"i": i})

    threads = [threading.Thread(target=work, args=(log, f"w{k}")) for k, log in enumerate([a, b, a, b, a, b])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    res = a.verify()
    assert res.ok and res.checked == 240
    assert [r.seq for r in b.records(limit=1000)] == list(range(1, 241))
    a.close()
    b.close()


def test_path_with_odd_characters(tmp_path):
    d = tmp_path / "odd dir #1?"
    a = AuditLog(d / "audit log.sqlite")
    fill(a, 2)
    assert a.verify().ok and a.verify().checked == 2
    a.close()
