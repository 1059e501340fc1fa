"""Delivery into real databases: InfluxDB 1.x (v1 /write) and VictoriaMetrics (v2 API).

Outage (server stopped and started again), re-sent batches, refused lines,
missing database, authentication.  Each point carries its own index as the
value, so the test compares exactly what arrived with what was produced.
"""

import asyncio
import time
import uuid

import pytest

from telemetry.influx_writers import InfluxV1Writer, WriteError
from telemetry.outbox import Outbox
from telemetry.schema import Priority
from telemetry.shipper import InfluxShipper
from tests.servers import InfluxDB1Server, random_password, wait_until
from tests.telemetry.influx_targets import influx_target, vm_target

BASE_NS = (time.time_ns() // 10**9 - 3600) * 10**9  # an hour ago, whole seconds


def lines(run, start, n):
    # one ms apart: VictoriaMetrics keeps millisecond timestamps
    return [(f"m,run={run} v={i} {BASE_NS + i * 1_000_000}", Priority.LOW) for i in range(start, start + n)]


@pytest.fixture(params=["influxdb1", "victoriametrics"])
def target(request):
    if request.param == "influxdb1":
        return influx_target(request.getfixturevalue("influx1"))
    return vm_target(request.getfixturevalue("victoria"))


def exact(target, run, expected):
    """Wait until the server holds exactly the ``expected`` values, each once; fail naming the difference."""
    want = sorted(float(x) for x in expected)
    got: list[float] = []

    def matches() -> bool:
        got[:] = sorted(target.values(run))
        return got == want

    try:
        wait_until(matches, timeout_s=30, interval_s=0.2, what=f"{len(want)} points of run {run}")
    except TimeoutError:
        missing = sorted(set(want) - set(got))[:10]
        dup = len(got) - len(set(got))
        raise AssertionError(f"{target.name}: {len(got)} points, want {len(want)}; missing e.g. {missing}; "
                             f"{dup} duplicates") from None
    return got


async def test_outage_then_recovery_delivers_every_point_exactly_once(target, tmp_path):
    run = uuid.uuid4().hex[:8]
    with Outbox(tmp_path / "o.db") as ob:
        sh = InfluxShipper(ob, target.writer(), batch_points=500, min_backoff_s=0.05, max_backoff_s=0.5)
        task = asyncio.create_task(sh.run())
        try:
            ob.put(lines(run, 0, 1000))
            assert await sh.drain(30)
            target.stop()
            for k in range(10):  # the control cycle goes on while the database is away
                ob.put(lines(run, 1000 + 100 * k, 100))
                await asyncio.sleep(0.02)
            await asyncio.sleep(0.3)
            st = ob.stats()
            assert st.points == 1000 and st.oldest_age_s > 0.2 and sh.status.consecutive_failures >= 1
            target.start()
            assert await sh.drain(60), sh.status
        finally:
            sh.stop()
            await task
    got = exact(target, run, range(2000))
    assert len(got) == 2000


async def test_resend_after_crash_between_send_and_delete_duplicates_nothing(target, tmp_path):
    run = uuid.uuid4().hex[:8]
    path = tmp_path / "o.db"
    with Outbox(path) as ob:
        ob.put(lines(run, 0, 300))
        rows = ob.fetch(300)
        target.writer().write([r[1] for r in rows])  # sent ... and the process dies before ack()
    with Outbox(path) as ob:  # restart: everything is still there and goes again
        assert len(ob) == 300
        sh = InfluxShipper(ob, target.writer())
        task = asyncio.create_task(sh.run())
        assert await sh.drain(30)
        sh.stop()
        await task
    assert len(exact(target, run, range(300))) == 300


async def test_refused_line_is_isolated_and_the_rest_delivered_influx(influx1, tmp_path):
    target = influx_target(influx1)
    run = uuid.uuid4().hex[:8]
    with Outbox(tmp_path / "o.db") as ob:
        batch = lines(run, 0, 100)
        batch[37] = (f'm,run={run} v="text" {BASE_NS + 37 * 1_000_000}', Priority.LOW)  # field type conflict
        batch[80] = ("this is no line protocol", Priority.LOW)
        ob.put(batch)
        sh = InfluxShipper(ob, target.writer())
        task = asyncio.create_task(sh.run())
        assert await sh.drain(30)
        sh.stop()
        await task
        assert ob.stats().rejected_points == 2
        reasons = dict(ob.rejected_lines())
        assert "field type conflict" in reasons[f'm,run={run} v="text" {BASE_NS + 37 * 1_000_000}']
        assert "unable to parse" in reasons["this is no line protocol"]
    exact(target, run, [i for i in range(100) if i not in (37, 80)])


async def test_missing_database_is_retried_until_created(influx1, tmp_path):
    db = "late_" + uuid.uuid4().hex[:6]
    with Outbox(tmp_path / "o.db") as ob:
        ob.put([(f"m,run=x v={i} {BASE_NS + i}", Priority.LOW) for i in range(10)])
        sh = InfluxShipper(ob, InfluxV1Writer(influx1.url, db), min_backoff_s=0.05, max_backoff_s=0.2)
        task = asyncio.create_task(sh.run())
        await asyncio.to_thread(wait_until, lambda: sh.status.consecutive_failures >= 2, 20)
        assert "database not found" in sh.status.last_error and len(ob) == 10
        influx1.create_database(db)
        assert await sh.drain(30)
        sh.stop()
        await task
    assert influx1.rows("SELECT COUNT(v) FROM m", db=db)[0][1] == 10


@pytest.fixture(scope="module")
def influx_auth(tmp_path_factory):
    with InfluxDB1Server(tmp_path_factory.mktemp("influx-auth"), auth=True) as server:
        server.create_database("ems")
        yield server


def test_credentials_are_required_and_used(influx_auth):
    password = random_password()
    influx_auth.create_user("edge", password, "ems", "WRITE")
    with pytest.raises(WriteError) as info:
        InfluxV1Writer(influx_auth.url, "ems").write([f"m,run=auth v=1 {BASE_NS}"])
    assert info.value.auth_failed and info.value.retryable
    with pytest.raises(WriteError) as info:
        InfluxV1Writer(influx_auth.url, "ems", username="edge", password="wrong").write([f"m,run=auth v=1 {BASE_NS}"])
    assert info.value.status == 401 and "authorization failed" in str(info.value)
    InfluxV1Writer(influx_auth.url, "ems", username="edge", password=password).write([f"m,run=auth v=1 {BASE_NS}"])
    assert influx_auth.rows("SELECT v FROM m WHERE run = 'auth'", db="ems") == [[BASE_NS, 1]]


def test_no_answer_is_retryable(tmp_path):
    from tests.netutil import free_port
    with pytest.raises(WriteError) as info:
        InfluxV1Writer(f"http://127.0.0.1:{free_port()}", "ems", timeout_s=2).write(["m v=1 1"])
    assert info.value.retryable and info.value.status is None and "no answer" in str(info.value)
