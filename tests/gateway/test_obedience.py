"""A battery that does not obey raises an alarm that reaches the dashboard (issue 11, item 2).

Against the real hall simulator over loopback Modbus: a battery that answers every write with a Modbus
exception, and one that takes the writes (they read back) but does not follow them.
"""

from __future__ import annotations

from ems.gateway import alarms as al
from tests.gateway.test_daemon import rig, wait_for  # noqa: F401 - the fixture

__all__ = ["rig"]


def _active(daemon) -> dict[str, al.Alarm]:
    return {a.code: a for a in daemon.status.alarms} if daemon.status else {}


async def test_a_battery_refusing_every_write_raises_a_critical_alarm_and_recovers(rig):
    d = await rig.start_daemon()
    await wait_for(lambda: d.status is not None and d.status.written, 15, "first setpoint written")
    rig.sim.physics.register_faults.refuse_writes("battery")
    await wait_for(lambda: al.SETPOINT_REFUSED in _active(d), 15, "the refused-setpoint alarm")
    alarm = _active(d)[al.SETPOINT_REFUSED]
    assert alarm.severity is al.Severity.CRITICAL and "battery" in alarm.message
    rig.sim.physics.register_faults.refuse_writes("battery", on=False)
    await wait_for(lambda: al.SETPOINT_REFUSED not in _active(d), 15, "the alarm cleared after writes work again")


async def test_a_battery_that_takes_setpoints_but_does_not_follow_them_raises_an_alarm(rig):
    from ems.gateway.modes import Mode, ModeRequest
    from datetime import datetime, timezone

    d = await rig.start_daemon()
    await wait_for(lambda: rig.mode() is Mode.VPP, 15, "vpp")
    d.obedience.follow_after_s = 1.0  # the default waits a minute of real time
    rig.sim.physics.register_faults.ignore_setpoints()
    now = datetime.now(timezone.utc)
    d.request_mode(ModeRequest(Mode.MANUAL, "test: discharge 2 kW", "test", now, setpoint_w=2000.0))
    await wait_for(lambda: al.BATTERY_NOT_FOLLOWING in _active(d), 20, "the not-following alarm")
    assert "2000" in _active(d)[al.BATTERY_NOT_FOLLOWING].message
    rig.sim.physics.register_faults.ignore_setpoints(False)
    rig.sim.physics.set_setpoint(2000.0)  # the inverter is back in remote mode and takes the held setpoint
    await wait_for(lambda: al.BATTERY_NOT_FOLLOWING not in _active(d), 20, "cleared when the battery follows")
