"""The durable outbox: commit, fetch, ack, persistence, drop policy, rejects, bad input."""

import sqlite3
from datetime import datetime, timezone

import pytest

from telemetry.outbox import ROW_OVERHEAD_BYTES, Outbox, OutboxError
from telemetry.schema import Priority, make_point

T0 = datetime(2025, 7, 1, tzinfo=timezone.utc)


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def __call__(self):
        return self.t


def lines(n, prefix="m", start=0, priority=Priority.LOW):
    return [(f"{prefix},site=a v={i} {i}", priority) for i in range(start, start + n)]


def test_put_fetch_ack_in_order(tmp_path):
    with Outbox(tmp_path / "o.db") as ob:
        assert ob.put(lines(5)) == 5 and len(ob) == 5
        rows = ob.fetch(3)
        assert [r[1] for r in rows] == [f"m,site=a v={i} {i}" for i in range(3)]
        assert ob.ack(rows[0][0], rows[-1][0]) == 3
        assert [r[1] for r in ob.fetch(10)] == [f"m,site=a v={i} {i}" for i in (3, 4)]
        assert ob.stats().points == 2
        assert ob.put([]) == 0


def test_points_survive_reopen_and_counters_are_rebuilt(tmp_path):
    p = make_point("battery", T0, {"site": "hall-01", "device": "battery"}, {"soc_pct": 50})
    with Outbox(tmp_path / "o.db") as ob:
        ob.put([p, "raw,site=a v=1 1"])
        size = ob.stats().bytes
    with Outbox(tmp_path / "o.db") as ob:
        st = ob.stats()
        assert st.points == 2 and st.bytes == size
        assert [r[1] for r in ob.fetch(10)] == [p.to_line(), "raw,site=a v=1 1"]


def test_ack_of_unsent_never_deletes_newer_rows(tmp_path):
    with Outbox(tmp_path / "o.db") as ob:
        ob.put(lines(3))
        rows = ob.fetch(3)
        ob.put(lines(2, start=10))
        ob.ack(rows[0][0], rows[-1][0])
        assert [r[1] for r in ob.fetch(10)] == ["m,site=a v=10 10", "m,site=a v=11 11"]


def test_stats_age_of_oldest(tmp_path):
    clock = Clock()
    with Outbox(tmp_path / "o.db", clock=clock) as ob:
        assert ob.stats().oldest_age_s is None
        ob.put(lines(1))
        clock.t += 30
        ob.put(lines(1, start=1))
        clock.t += 12.5
        assert ob.stats().oldest_age_s == pytest.approx(42.5)


def test_drop_policy_oldest_low_priority_first_with_alarm(tmp_path):
    events = []
    line_bytes = len("m,site=a v=0 0".encode()) + ROW_OVERHEAD_BYTES
    limit = 100 * line_bytes
    with Outbox(tmp_path / "o.db", max_bytes=max(4096, limit), low_water=0.5, on_drop=events.append) as ob:
        limit = ob.max_bytes
        high = [(f"alarm,site=a v={i} {i}", Priority.HIGH) for i in range(5)]
        normal = [(f"mode,site=a v={i} {i}", Priority.NORMAL) for i in range(5)]
        ob.put(high + normal)
        n = 0
        while not events:
            ob.put(lines(10, start=n))
            n += 10
        assert not events[1:]
        ev = events[0]
        assert set(ev.by_priority) == {Priority.LOW}  # only raw readings went
        assert ob.drop_alarm and ob.stats().dropped_points == ev.points > 0
        assert ob.stats().bytes <= limit * 0.5
        kept = [r[1] for r in ob.fetch(10_000)]
        assert all(h[0] in kept for h in high + normal)
        low_kept = [int(x.split("v=")[1].split()[0]) for x in kept if x.startswith("m,")]
        assert low_kept == sorted(low_kept) and low_kept[-1] == n - 1  # the oldest went, the newest stayed
        ob.clear_drop_alarm()
        assert not ob.drop_alarm and ob.stats().dropped_points == ev.points
    with Outbox(tmp_path / "o.db", max_bytes=limit) as ob:
        assert ob.stats().dropped_points == ev.points  # the count survives a restart


def test_drop_reaches_higher_priorities_only_when_low_is_gone(tmp_path):
    events = []
    with Outbox(tmp_path / "o.db", max_bytes=4096, low_water=0.5, on_drop=events.append) as ob:
        ob.put([(f"alarm,site=a v={i} {i}", Priority.HIGH) for i in range(200)])
        assert events and Priority.HIGH in events[-1].by_priority
        assert ob.stats().bytes <= 2048
        remaining = [r[1] for r in ob.fetch(1000)]
        assert remaining[-1] == "alarm,site=a v=199 199"


def test_disk_file_stays_bounded(tmp_path):
    path = tmp_path / "o.db"
    limit = 256 * 1024
    with Outbox(path, max_bytes=limit) as ob:
        for k in range(60):
            ob.put(lines(500, start=k * 500))
        assert ob.stats().bytes <= limit and ob.stats().dropped_points > 0
    size = path.stat().st_size + (tmp_path / "o.db-wal").stat().st_size if (tmp_path / "o.db-wal").exists() \
        else path.stat().st_size
    assert size < 3 * limit + 17 * 1024 * 1024  # data + indexes within 3x, WAL capped at 16 MiB


def test_reject_moves_rows_and_counts(tmp_path):
    with Outbox(tmp_path / "o.db") as ob:
        ob.put(lines(3))
        rows = ob.fetch(3)
        assert ob.reject([rows[1][0]], "HTTP 400: field type conflict") == 1
        assert [r[1] for r in ob.fetch(10)] == [rows[0][1], rows[2][1]]
        assert ob.rejected_lines() == [(rows[1][1], "HTTP 400: field type conflict")]
        assert ob.stats().rejected_points == 1 and ob.stats().points == 2
        assert ob.reject([], "x") == 0


@pytest.mark.parametrize("bad", ["", "two\nlines"])
def test_bad_lines_refused_and_nothing_of_the_call_stored(tmp_path, bad):
    with Outbox(tmp_path / "o.db") as ob:
        with pytest.raises(ValueError, match="not one line"):
            ob.put(["ok,site=a v=1 1", bad])
        assert len(ob) == 0


def test_bad_settings_and_unwritable_file(tmp_path):
    with pytest.raises(ValueError, match="max_bytes"):
        Outbox(tmp_path / "a.db", max_bytes=10)
    with pytest.raises(ValueError, match="low_water"):
        Outbox(tmp_path / "a.db", low_water=0)
    # (a damaged file is moved aside and replaced: tests/telemetry/test_hostile_stores.py)
    (tmp_path / "afile").write_bytes(b"x")
    with pytest.raises(OutboxError, match="afile"):
        Outbox(tmp_path / "afile" / "o.db")


def test_failed_commit_leaves_counters_consistent(tmp_path):
    with Outbox(tmp_path / "o.db") as ob:
        ob.put(lines(2))
        other = sqlite3.connect(tmp_path / "o.db", timeout=0)
        other.execute("BEGIN EXCLUSIVE")  # another writer holds the database
        ob._db.execute("PRAGMA busy_timeout=50")
        with pytest.raises(OutboxError, match="cannot store 3 points"):
            ob.put(lines(3, start=5))
        other.rollback()
        other.close()
        assert ob.stats().points == 2
        ob.put(lines(1, start=9))
        assert len(ob.fetch(10)) == 3 == len(ob)


def test_listeners_are_told_after_commit(tmp_path):
    calls = []
    with Outbox(tmp_path / "o.db") as ob:
        f = lambda: calls.append(len(ob))  # noqa: E731
        ob.add_listener(f)
        ob.put(lines(2))
        ob.remove_listener(f)
        ob.put(lines(2))
    assert calls == [2]
