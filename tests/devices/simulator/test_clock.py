"""Simulator clocks: wall, accelerated, manual; always tz-aware UTC."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from devices.simulator.clock import AcceleratedClock, ManualClock, SimClock, WallClock

T0 = datetime(2025, 6, 21, 3, 0, tzinfo=timezone.utc)


def test_wall_clock_is_utc_now():
    before = datetime.now(timezone.utc)
    now = WallClock().now()
    after = datetime.now(timezone.utc)
    assert before <= now <= after
    assert now.utcoffset() == timedelta(0)
    assert WallClock().speed == 1.0


def test_accelerated_clock_runs_speed_times_faster():
    wall0 = time.monotonic()
    clock = AcceleratedClock(T0, speed=3600)
    wall1 = time.monotonic()
    time.sleep(0.05)
    wall2 = time.monotonic()
    sim = (clock.now() - T0).total_seconds()
    wall3 = time.monotonic()
    # Bounds from the wall time that certainly did / may have passed, whatever the load.
    assert 3600 * (wall2 - wall1) <= sim + 1e-6
    assert sim <= 3600 * (wall3 - wall0) + 1e-6
    assert clock.speed == 3600
    assert clock.now().tzinfo is not None


def test_accelerated_clock_converts_start_to_utc():
    jst = timezone(timedelta(hours=9))
    clock = AcceleratedClock(datetime(2025, 6, 21, 12, 0, tzinfo=jst), speed=1)
    assert clock.now().utcoffset() == timedelta(0)
    assert abs((clock.now() - T0).total_seconds()) < 5


@pytest.mark.parametrize("speed", [0, -1, float("nan")])
def test_accelerated_clock_rejects_bad_speed(speed):
    with pytest.raises(ValueError, match="speed"):
        AcceleratedClock(T0, speed=speed)


def test_clocks_reject_naive_start():
    with pytest.raises(ValueError, match="naive"):
        AcceleratedClock(datetime(2025, 1, 1), speed=60)
    with pytest.raises(ValueError, match="naive"):
        ManualClock(datetime(2025, 1, 1))


def test_manual_clock_moves_only_when_told():
    clock = ManualClock(T0)
    assert clock.now() == T0 and clock.now() == T0
    assert clock.advance(90) == T0 + timedelta(seconds=90)
    clock.advance(timedelta(minutes=1))
    assert clock.now() == T0 + timedelta(seconds=150)
    clock.set(T0 + timedelta(hours=1))
    assert clock.now() == T0 + timedelta(hours=1)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(-1)
    with pytest.raises(ValueError, match="backwards"):
        clock.set(T0)
    with pytest.raises(ValueError, match="naive"):
        clock.set(datetime(2030, 1, 1))


def test_all_clocks_satisfy_the_protocol():
    for clock in (WallClock(), AcceleratedClock(T0, 60), ManualClock(T0)):
        assert isinstance(clock, SimClock)
