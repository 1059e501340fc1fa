"""Fixtures: a simulated hall's ECHONET Lite node on a free loopback UDP port (manual clock)."""

from __future__ import annotations

import pytest

from devices.readings import Nature
from devices.simulator.clock import ManualClock
from devices.simulator.echonet_node import EchonetNode
from devices.simulator.physics import HallPhysics
from tests.devices.simulator.helpers import JUNE_NOON, make_site


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(JUNE_NOON)


@pytest.fixture
def physics(clock) -> HallPhysics:
    return HallPhysics(make_site(), clock, lag_s=0.0)


@pytest.fixture
async def node(physics):
    n = EchonetNode(physics, [(Nature.BATTERY, 1), (Nature.PV, 1), (Nature.METER, 1)], "127.0.0.1", 0)
    await n.start()
    yield n
    await n.stop()
