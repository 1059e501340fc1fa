"""DevicePoller: rate, health, backoff of dead devices, logging on first failure and recovery only."""

from __future__ import annotations

import asyncio
import logging
from datetime import datetime, timezone

import pytest

from devices.config import DeviceConfig
from devices.errors import DeviceError
from devices.factory import build_devices, close_all
from devices.poller import DevicePoller, backoff_delay_s
from devices.readings import Nature, PVReading
from devices.registermap import load_register_map
from tests.devices.fakes import FakeModbusServer, SilentServer, tables_for, wait_until
from tests.netutil import free_port

T0 = datetime(2026, 6, 21, 3, 0, tzinfo=timezone.utc)


def test_backoff_doubles_caps_and_jitters():
    mid = lambda: 0.5  # noqa: E731  (no jitter at the midpoint)
    assert [backoff_delay_s(1.0, n, 60, rnd=mid) for n in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_delay_s(1.0, 3, 60, jitter=0.1, rnd=lambda: 0.0) == pytest.approx(7.2)
    assert backoff_delay_s(1.0, 3, 60, jitter=0.1, rnd=lambda: 1.0) == pytest.approx(8.8)
    assert backoff_delay_s(5.0, 1, 2.0, rnd=mid) == 5.0  # the cap never goes below the period


class ScriptedDevice:
    """A device whose reads fail or succeed as scripted (no I/O)."""

    def __init__(self, script: list[bool]):
        self.id = "pv"
        self.nature = Nature.PV
        self.config = DeviceConfig.model_validate(
            {"id": "pv", "nature": "pv", "map": "sunspec", "period_s": 0.01, "timeout_s": 0.5,
             "transport": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": 1}})
        self.script = list(script)
        self.reads = 0

    async def read(self):
        self.reads += 1
        ok = self.script.pop(0) if self.script else True
        if not ok:
            raise DeviceError("pv", "timeout", f"unit 3 read holding 40000+2: no answer (#{self.reads})")
        return PVReading(device_id="pv", time=T0, power_w=float(self.reads))


async def test_logs_first_failure_and_recovery_only(caplog):
    dev = ScriptedDevice([True, False, False, False, False, True, True])
    poller = DevicePoller(dev, max_backoff_s=0.02, clock=lambda: T0)
    with caplog.at_level(logging.DEBUG, logger="devices.poller"):
        for _ in range(7):
            await poller.poll_once()
    msgs = [(r.levelno, r.getMessage()) for r in caplog.records if r.levelno >= logging.INFO]
    assert msgs == [(logging.WARNING, "pv: unavailable: unit 3 read holding 40000+2: no answer (#2)"),
                    (logging.INFO, "pv: back after 4 failed reads")]
    h = poller.health
    assert (h.ok, h.consecutive_failures, h.total_failures, h.total_polls) == (True, 0, 4, 7)
    assert h.last_ok_at == T0 and h.last_error_kind == "timeout" and h.last_latency_ms >= 0


async def test_failed_reads_keep_the_last_reading():
    dev = ScriptedDevice([True, False, False])
    poller = DevicePoller(dev)
    first = await poller.poll_once()
    assert await poller.poll_once() is None and await poller.poll_once() is None
    assert poller.latest is first and not poller.health.ok and poller.health.consecutive_failures == 2


async def test_a_read_that_hangs_hits_the_deadline():
    class Hanging(ScriptedDevice):
        async def read(self):
            await asyncio.sleep(3600)

    poller = DevicePoller(Hanging([]), read_timeout_s=0.1)
    assert await poller.poll_once() is None
    assert poller.health.last_error_kind == "timeout" and "0.1 s" in poller.health.last_error


async def test_a_bug_in_a_device_does_not_kill_the_task():
    class Buggy(ScriptedDevice):
        async def read(self):
            self.reads += 1
            raise KeyError("oops")

    dev = Buggy([])
    poller = DevicePoller(dev, max_backoff_s=0.05)
    poller.start()
    try:
        await wait_until(lambda: dev.reads >= 3)
        assert poller.running and "KeyError" in poller.health.last_error
    finally:
        await poller.stop()
    assert not poller.running


def _cfg(id_: str, nature: str, map_: str, port: int, unit: int, period_s: float, timeout_s: float):
    return DeviceConfig.model_validate({"id": id_, "nature": nature, "map": map_, "period_s": period_s,
                                        "timeout_s": timeout_s,
                                        "transport": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": port,
                                                      "unit": unit}})


async def test_dead_devices_back_off_while_another_keeps_its_rate():
    battery_map = load_register_map("generic_battery")
    values = {"soc": 60, "soh": 99, "power": 500, "max_charge": 5000, "max_discharge": 5000, "capacity": 15000,
              "state": 3, "fault_code": 0, "setpoint": 500, "heartbeat": 0, "watchdog_timeout": 30}
    async with FakeModbusServer({1: tables_for(battery_map, values)}) as good_srv, SilentServer() as hung_srv:
        configs = [
            _cfg("battery", "battery", "generic_battery", good_srv.port, 1, 0.1, 0.5),
            _cfg("pv", "pv", "sunspec", hung_srv.port, 3, 0.1, 0.2),  # accepts, never answers
            _cfg("meter", "meter", "sdm630", free_port(), 2, 0.1, 0.2),  # nothing listening: fails at once
        ]
        devices = build_devices(configs)
        loop = asyncio.get_running_loop()
        stamps: list[float] = []
        good = DevicePoller(devices["battery"], on_reading=lambda r: stamps.append(loop.time()))
        hung = DevicePoller(devices["pv"], max_backoff_s=0.8, jitter=0.0)
        refused = DevicePoller(devices["meter"], max_backoff_s=0.8, jitter=0.0)
        pollers = (good, hung, refused)
        for p in pollers:
            p.start()
        try:
            await wait_until(lambda: refused.health.consecutive_failures >= 3 and hung.health.consecutive_failures >= 2,
                             timeout_s=30)
            started, good_at_start, refused_at_start = loop.time(), len(stamps), refused.health.total_polls
            await wait_until(lambda: loop.time() - started > 2.0, timeout_s=30)
            window = loop.time() - started
            good_rate = (len(stamps) - good_at_start) / window
            refused_attempts = refused.health.total_polls - refused_at_start
        finally:
            for p in pollers:
                await p.stop()
            await close_all(devices)
    assert good.health.ok and good.health.consecutive_failures == 0
    assert good_rate > 4.0  # nominal 10/s
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert max(gaps) < 1.0  # never stalled behind the hung device
    assert not hung.health.ok and hung.health.last_error_kind == "timeout"
    assert refused.health.last_error_kind == "connection" and refused.latest is None
    # A refused connection fails instantly: without backoff that is ~10 attempts/s.
    # Backed off to 0.8 s it makes at most window/0.8 + 1.
    assert refused_attempts <= window / 0.8 + 1
    assert refused.health.next_attempt_at is not None


async def test_staleness_is_judged_by_the_consumer_from_reading_time():
    from datetime import timedelta

    dev = ScriptedDevice([True, False])
    poller = DevicePoller(dev, period_s=1.0, clock=lambda: T0)
    assert poller.is_stale(T0) and poller.age_s(T0) is None
    await poller.poll_once()
    await poller.poll_once()  # fails: the reading stays
    assert poller.age_s(T0 + timedelta(seconds=2)) == 2.0
    assert not poller.is_stale(T0 + timedelta(seconds=2.9))
    assert poller.is_stale(T0 + timedelta(seconds=3.1)) and poller.latest is not None


async def test_stop_ends_a_loop_that_swallowed_its_cancellation():
    """A task that ignores one cancel (as Python 3.11's wait_for can make it) is still stopped."""
    import asyncio

    from devices.aio import cancel_and_wait

    swallowed = 0

    async def stubborn():
        nonlocal swallowed
        while True:
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:
                if swallowed == 0:
                    swallowed += 1
                    asyncio.current_task().uncancel()
                    continue
                raise

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0.01)
    await asyncio.wait_for(cancel_and_wait(task, nudge_s=0.05), 5)
    assert task.cancelled() and swallowed == 1
