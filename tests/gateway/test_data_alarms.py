"""Alarms that used to be defined but never raised (issue 11): stale, missing and implausible data, and the
telemetry_dropped alarm that never cleared.  Against the real hall simulator over loopback Modbus."""

from __future__ import annotations

import asyncio

from ems.gateway import alarms as al
from ems.gateway.daemon import EdgeDaemon
from ems.gateway.link import TELEMETRY_DROPPED, EdgeLink
from ems.sim.telemetry_count import HistoryStore
from telemetry.outbox import Outbox
from telemetry.shipper import InfluxShipper
from tests.netutil import free_port
from tests.gateway.test_daemon import Rig, fast_site, rig, wait_for  # noqa: F401 - rig is a fixture

__all__ = ["rig"]


def _active(daemon) -> set[str]:
    return {a.code for a in daemon.status.alarms} if daemon.status else set()


async def test_stale_data_raises_stale_data_and_clears_when_the_device_answers_again(rig):
    d = await rig.start_daemon()
    await wait_for(lambda: d.status is not None and d.status.mode.effective.value == "vpp", 15, "vpp")
    assert not _active(d) & {al.STALE_DATA, al.MISSING_DATA, al.IMPLAUSIBLE_DATA}
    rig.sim.physics.register_faults.freeze("battery")  # registers stop updating ...
    await rig.sim.stop()  # ... and then the device stops answering
    await wait_for(lambda: al.STALE_DATA in _active(d), 15, "stale_data")
    alarm = next(a for a in d.status.alarms if a.code == al.STALE_DATA)
    assert "old (limit" in alarm.message and ("battery" in alarm.message or "meter" in alarm.message)
    rig.sim.physics.register_faults.clear()
    await rig.sim.start()
    await wait_for(lambda: al.STALE_DATA not in _active(d), 20, "stale_data cleared")


async def test_implausible_readings_raise_implausible_data_after_the_debounce(rig):
    d = await rig.start_daemon()
    await wait_for(lambda: d.status is not None and d.status.mode.effective.value == "vpp", 15, "vpp")
    # 50 kW is inside the register map's range but far beyond the 5.9 kW inverter: the reading is refused.
    rig.sim.physics.register_faults.serve_garbage("battery", "power", 50_000.0)
    await wait_for(lambda: al.IMPLAUSIBLE_DATA in _active(d), 15, "implausible_data")
    alarm = next(a for a in d.status.alarms if a.code == al.IMPLAUSIBLE_DATA)
    assert "50000 W" in alarm.message and "battery" in alarm.message
    rig.sim.physics.register_faults.clear()
    await wait_for(lambda: al.IMPLAUSIBLE_DATA not in _active(d), 20, "implausible_data cleared")


async def test_a_device_that_never_answers_raises_missing_data(tmp_path):
    """The meter's address answers nothing from the start: missing_data names it (there is no reading to be old)."""
    site = fast_site("hall-01")
    meter = next(dev for dev in site.devices if dev.nature.value == "meter")
    dead = meter.model_copy(update={"transport": meter.transport.model_copy(update={"port": free_port()})})
    site = site.model_copy(update={"devices": [dead if dev.id == meter.id else dev for dev in site.devices]})
    r = Rig(site, tmp_path / "state")
    await r.sim.start()
    try:
        d = await r.start_daemon()
        await wait_for(lambda: al.MISSING_DATA in _active(d), 20, "missing_data")
        alarm = next(a for a in d.status.alarms if a.code == al.MISSING_DATA)
        assert "meter" in alarm.message and al.STALE_DATA not in _active(d)
    finally:
        await r.stop_daemon()
        await r.sim.stop()


async def test_telemetry_dropped_clears_once_the_outbox_has_shipped(tmp_path):
    site = fast_site("hall-01")
    r = Rig(site, tmp_path / "state")
    await r.sim.start()
    outbox = Outbox(tmp_path / "outbox.sqlite", max_bytes=8192)
    store = HistoryStore(tmp_path / "history.sqlite")
    shipper = InfluxShipper(outbox, store, min_backoff_s=0.05, max_backoff_s=0.2, idle_wait_s=0.05)
    ship: asyncio.Task | None = None
    try:
        r.daemon = EdgeDaemon(site, state_dir=r.state_dir, clock=r.clock)
        EdgeLink(r.daemon, outbox=outbox, state_every=1)
        await r.daemon.start()
        r.task = asyncio.create_task(r.daemon.run(r.stop_event))
        await wait_for(lambda: TELEMETRY_DROPPED in _active(r.daemon), 30, "telemetry_dropped while nothing ships")
        dropped = outbox.stats().dropped_points
        ship = asyncio.create_task(shipper.run())  # the uplink to InfluxDB is back
        await wait_for(lambda: TELEMETRY_DROPPED not in _active(r.daemon), 60, "telemetry_dropped cleared")
        assert outbox.stats().dropped_points >= dropped  # what was lost stays counted
    finally:
        shipper.stop()
        if ship is not None:
            await asyncio.gather(ship, return_exceptions=True)
        await r.stop_daemon()
        outbox.close()
        store.close()
        await r.sim.stop()
