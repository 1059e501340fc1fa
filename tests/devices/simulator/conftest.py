"""Fixtures for the hall simulator tests: a small site and a manual clock."""

from __future__ import annotations

import pytest

from devices.simulator.clock import ManualClock
from ems.config import SiteConfig
from tests.devices.simulator.helpers import JUNE_NIGHT, make_site


@pytest.fixture
def site() -> SiteConfig:
    return make_site()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(JUNE_NIGHT)
