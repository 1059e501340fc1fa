"""The shipper against fake writers: delivery, backoff with jitter, bisection of refused lines."""

import asyncio
import random
import threading

import pytest

from telemetry.influx_writers import WriteError, classify_http
from telemetry.outbox import Outbox
from telemetry.schema import Priority
from telemetry.shipper import InfluxShipper


class FakeWriter:
    """Records batches; fails while ``down``; refuses lines containing 'BAD' with HTTP 400."""

    def __init__(self):
        self.batches: list[list[str]] = []
        self.written: list[str] = []
        self.down: WriteError | None = None
        self.lock = threading.Lock()

    def write(self, lines):
        with self.lock:
            self.batches.append(list(lines))
            if self.down is not None:
                raise self.down
            if any("BAD" in x for x in lines):
                # like InfluxDB 1.x: the good lines of a partial write are stored
                self.written += [x for x in lines if "BAD" not in x]
                raise WriteError("HTTP 400: partial write: field type conflict", 400, retryable=False, bad_data=True)
            if len(lines) > 64 and self.too_large:
                raise WriteError("HTTP 413", 413, retryable=False, too_large=True)
            self.written += list(lines)

    too_large = False

    def close(self):
        pass


def put_lines(ob, n, start=0, bad=()):
    ob.put([(f"m,site=a v={'BAD' if i in bad else i} {i}", Priority.LOW) for i in range(start, start + n)])


async def run_until(cond, timeout=20.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "condition not reached"
        await asyncio.sleep(0.01)


@pytest.fixture
def outbox(tmp_path):
    with Outbox(tmp_path / "o.db") as ob:
        yield ob


async def test_delivers_in_order_in_batches_and_empties_the_outbox(outbox):
    w = FakeWriter()
    sh = InfluxShipper(outbox, w, batch_points=40, idle_wait_s=5)
    task = asyncio.create_task(sh.run())
    put_lines(outbox, 100)
    await run_until(lambda: len(outbox) == 0)
    assert w.written == [f"m,site=a v={i} {i}" for i in range(100)]
    assert max(len(b) for b in w.batches) <= 40
    put_lines(outbox, 3, start=100)  # a put wakes the idle shipper long before idle_wait_s
    await run_until(lambda: len(w.written) == 103, timeout=3)
    assert sh.status.sent_points == 103
    sh.stop()
    await asyncio.wait_for(task, 5)


async def test_outage_keeps_everything_then_delivers(outbox):
    w = FakeWriter()
    w.down = WriteError("no answer: connection refused")
    sh = InfluxShipper(outbox, w, min_backoff_s=0.01, max_backoff_s=0.05)
    task = asyncio.create_task(sh.run())
    put_lines(outbox, 50)
    await run_until(lambda: sh.status.consecutive_failures >= 3)
    assert len(outbox) == 50 and w.written == []
    assert "connection refused" in sh.status.last_error
    w.down = None
    await run_until(lambda: len(outbox) == 0)
    assert w.written == [f"m,site=a v={i} {i}" for i in range(50)]
    assert sh.status.consecutive_failures == 0
    sh.stop()
    await task


async def test_auth_failure_is_flagged_and_retried(outbox):
    w = FakeWriter()
    w.down = classify_http(401, '{"error":"authorization failed"}', None, "InfluxDB")
    sh = InfluxShipper(outbox, w, min_backoff_s=0.01, max_backoff_s=0.02)
    task = asyncio.create_task(sh.run())
    put_lines(outbox, 5)
    await run_until(lambda: sh.status.auth_failed)
    assert "authorization failed" in sh.status.last_error and len(outbox) == 5
    w.down = None
    await run_until(lambda: len(outbox) == 0)
    assert not sh.status.auth_failed
    sh.stop()
    await task


async def test_refused_lines_are_isolated_and_the_rest_delivered(outbox):
    w = FakeWriter()
    sh = InfluxShipper(outbox, w, batch_points=64)
    task = asyncio.create_task(sh.run())
    put_lines(outbox, 64, bad={5, 40})
    await run_until(lambda: len(outbox) == 0)
    good = [f"m,site=a v={i} {i}" for i in range(64) if i not in (5, 40)]
    assert sorted(set(w.written), key=lambda x: int(x.split()[-1])) == good
    assert sh.status.rejected_points == 2 and outbox.stats().rejected_points == 2
    assert [line for line, _ in outbox.rejected_lines()] == ["m,site=a v=BAD 40", "m,site=a v=BAD 5"]
    sh.stop()
    await task


async def test_too_large_halves_the_batch(outbox):
    w = FakeWriter()
    w.too_large = True
    sh = InfluxShipper(outbox, w, batch_points=500)
    task = asyncio.create_task(sh.run())
    put_lines(outbox, 300)
    await run_until(lambda: len(outbox) == 0)
    assert sh.batch_points <= 64 and len(set(w.written)) == 300
    sh.stop()
    await task


def test_backoff_grows_exponentially_with_jitter_and_cap():
    sh = InfluxShipper.__new__(InfluxShipper)
    sh.min_backoff_s, sh.max_backoff_s, sh._rng = 0.5, 60.0, random.Random(1)
    for failures, cap in [(1, 0.5), (2, 1.0), (3, 2.0), (5, 8.0), (20, 60.0)]:
        waits = [sh.backoff_s(failures) for _ in range(200)]
        assert all(cap / 2 <= x <= cap for x in waits)
        assert max(waits) - min(waits) > cap / 4  # really jittered


@pytest.mark.parametrize("status, retryable, bad, large", [
    (400, False, True, False), (422, False, True, False), (413, False, False, True),
    (401, True, False, False), (404, True, False, False), (429, True, False, False), (503, True, False, False)])
def test_http_classification(status, retryable, bad, large):
    e = classify_http(status, '{"error": "why"}', "7", "where")
    assert (e.retryable, e.bad_data, e.too_large) == (retryable, bad, large)
    assert str(e) == f"where: HTTP {status}: why" and e.retry_after_s == (7.0 if retryable else None)


def test_bad_batch_size():
    with pytest.raises(ValueError):
        InfluxShipper(None, FakeWriter(), batch_points=0)
