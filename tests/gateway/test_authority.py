"""Which command may change which mode (ems.gateway.authority), every pair through the hall's real command path.

The hole this closes (issue 11, item 1): a setpoint sent to a hall in disaster_reserve switched it to manual,
the reserve floor dropped from 14.3 to 5.7 kWh and the battery began to discharge.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any, Sequence

import pytest

from devices.simulator.clock import WallClock
from ems.gateway.authority import AUTHORITY, CommandAction, refusal
from ems.gateway.daemon import EdgeDaemon
from ems.gateway.link import EdgeLink
from ems.gateway.modes import REQUESTABLE, Mode, ModeRequest
from telemetry.commands import CommandRejected, new_command, parse_command
from devices.simulator.server import HallSimulator
from tests.gateway.test_daemon import fast_site, wait_for


class RecordingPlan:
    """A plan source double: records the leases it is given (the real one needs Pyomo and minutes of data)."""

    def __init__(self) -> None:
        self.commitments: tuple[Any, ...] = ()
        self.plan = None
        self.plan_info: dict[str, Any] = {}

    def setpoint_at(self, snap, mode):
        return None

    def invalidate(self, why: str) -> None:
        pass

    def use_stale_limit(self, max_age_s: float) -> None:
        pass

    def set_commitments(self, commitments: Sequence[Any]) -> None:
        self.commitments = tuple(commitments)

    async def aclose(self) -> None:
        pass


PAYLOADS = {
    CommandAction.RETURN_TO_VPP: ("mode", {"mode": "vpp", "reason": "warnings lifted"}),
    CommandAction.DISASTER: ("mode", {"mode": "disaster_reserve", "reason": "typhoon No. 14"}),
    CommandAction.SETPOINT: ("setpoint", {"power_w": 3000}),
}


def _command(site: str, action: CommandAction, now: datetime):
    if action is CommandAction.DISPATCH:
        kind, payload = "dispatch", {"power_w": 2000, "start": now.isoformat(),
                                     "end": (now + timedelta(hours=1)).isoformat()}
    else:
        kind, payload = PAYLOADS[action]
    env = new_command(site, kind, payload, "central", now=now)
    import json

    return parse_command(json.dumps(env), site, kind, now)


@pytest.fixture
async def hall(tmp_path):
    """hall-04's daemon against its simulator over Modbus, out of safe mode (dispatch needs a hall in vpp)."""
    import asyncio

    site = fast_site("hall-04")
    clock = WallClock()
    sim = HallSimulator(site, clock)
    await sim.start()
    daemon = EdgeDaemon(site, state_dir=tmp_path, clock=clock, plan_source=RecordingPlan())
    await daemon.start()
    link = EdgeLink(daemon)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run(stop))
    try:
        await wait_for(lambda: daemon.status is not None and daemon.status.mode.effective is Mode.VPP, 20, "vpp")
        yield daemon, link
    finally:
        stop.set()
        await task
        await daemon.stop()
        await sim.stop()


def test_the_table_names_every_pair():
    assert set(AUTHORITY) == {(m, a) for m in REQUESTABLE for a in CommandAction}


@pytest.mark.parametrize("mode", REQUESTABLE)
@pytest.mark.parametrize("action", list(CommandAction))
async def test_every_pair_is_carried_out_or_refused_as_the_table_says(hall, mode, action):
    daemon, link = hall
    now = datetime.now(timezone.utc)
    daemon.request_mode(ModeRequest(mode, "test setup", "test", now,
                                    setpoint_w=500.0 if mode is Mode.MANUAL else None))
    before = daemon.machine.requested
    floor_before = daemon.reserve.floor_wh(before.mode, *daemon.reserve.critical_forecast(now))
    cmd = _command(daemon.site.id, action, now)
    why = refusal(mode, action)
    if why is None:
        outcome = link.handle_command(cmd)
        assert isinstance(outcome, dict)
    else:
        with pytest.raises(CommandRejected) as info:
            link.handle_command(cmd)
        assert str(info.value) == why
        # Refused: nothing changed, neither the requested mode nor the reserve it keeps, nor the leases.
        assert daemon.machine.requested == before
        assert daemon.reserve.floor_wh(daemon.machine.requested.mode,
                                       *daemon.reserve.critical_forecast(now)) == floor_before
        assert daemon.plan_source.commitments == ()


async def test_a_setpoint_to_a_hall_in_disaster_mode_is_refused_and_the_reserve_holds(hall):
    """The reported case, with the figures: the disaster floor stays far above the vpp floor."""
    daemon, link = hall
    now = datetime.now(timezone.utc)
    daemon.request_mode(ModeRequest(Mode.DISASTER_RESERVE, "typhoon", "municipal", now))
    critical, pv = daemon.reserve.critical_forecast(now)
    disaster_floor = daemon.reserve.floor_wh(Mode.DISASTER_RESERVE, critical, pv)
    assert disaster_floor > daemon.reserve.floor_wh(Mode.VPP, critical, pv) + 1000
    with pytest.raises(CommandRejected, match="disaster_reserve.*only a return to VPP"):
        link.handle_command(_command(daemon.site.id, CommandAction.SETPOINT, now))
    assert daemon.machine.requested.mode is Mode.DISASTER_RESERVE
    # Only the return to VPP ends it.
    link.handle_command(_command(daemon.site.id, CommandAction.RETURN_TO_VPP, now))
    assert daemon.machine.requested.mode is Mode.VPP
