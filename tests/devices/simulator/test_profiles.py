"""Hall and critical load profiles: bounds, shape, weekday/weekend, determinism."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from devices.simulator.profiles import JST, HallLoad, critical_shape, hall_shape, is_weekend, local_hour
from ems.config import LoadSpec

SPEC = LoadSpec(base_w=500, peak_w=3600, critical_w=900)
MONDAY = datetime(2025, 6, 23, 0, 0, tzinfo=JST)  # a Monday, 00:00 JST
SATURDAY = datetime(2025, 6, 21, 0, 0, tzinfo=JST)


def _at(day: datetime, hour: float) -> datetime:
    return (day + timedelta(hours=hour)).astimezone(timezone.utc)


def test_local_time_and_weekend():
    assert local_hour(datetime(2025, 6, 21, 3, 30, tzinfo=timezone.utc)) == pytest.approx(12.5)
    assert is_weekend(_at(SATURDAY, 10)) and not is_weekend(_at(MONDAY, 10))
    # Friday 20:00 UTC is already Saturday in Japan.
    assert is_weekend(datetime(2025, 6, 20, 20, 0, tzinfo=timezone.utc))


def test_hall_load_stays_between_base_and_peak_for_a_week():
    load = HallLoad(SPEC, seed=3, noise=0.2)
    values = [load.hall_w(_at(MONDAY, m / 60)) for m in range(0, 7 * 1440, 7)]
    assert min(values) >= SPEC.base_w and max(values) <= SPEC.peak_w
    assert min(values) == SPEC.base_w  # nights reach the base
    assert max(values) > 0.9 * SPEC.peak_w  # evenings come near the peak


def test_community_hall_shape_night_low_evening_peak():
    load = HallLoad(SPEC, noise=0)
    assert load.hall_w(_at(MONDAY, 3)) == SPEC.base_w
    assert load.hall_w(_at(MONDAY, 19.5)) == SPEC.peak_w
    assert load.hall_w(_at(MONDAY, 3)) < load.hall_w(_at(MONDAY, 10)) < load.hall_w(_at(MONDAY, 19.5))


def test_weekend_days_are_busier_than_weekdays():
    load = HallLoad(SPEC, noise=0)
    weekday = sum(load.hall_w(_at(MONDAY, 10 + h / 4)) for h in range(20))
    weekend = sum(load.hall_w(_at(SATURDAY, 10 + h / 4)) for h in range(20))
    assert weekend > 1.5 * weekday
    assert hall_shape(_at(SATURDAY, 19.5), "community_hall") < hall_shape(_at(MONDAY, 19.5), "community_hall")


def test_flat_profile_is_the_base_load():
    load = HallLoad(LoadSpec(base_w=800, peak_w=1000, critical_w=500, profile="flat"), noise=0)
    assert {load.hall_w(_at(MONDAY, h)) for h in range(24)} == {800}


def test_critical_load_mean_and_night_lighting():
    load = HallLoad(SPEC, noise=0)
    day = [load.critical_w(_at(MONDAY, m / 60)) for m in range(1440)]
    assert sum(day) / len(day) == pytest.approx(SPEC.critical_w, rel=0.01)
    assert load.critical_w(_at(MONDAY, 23)) > 1.2 * load.critical_w(_at(MONDAY, 12))
    assert critical_shape(_at(MONDAY, 12)) > 0.4  # comms and fridge never stop


def test_critical_load_with_noise_stays_near_its_mean():
    load = HallLoad(SPEC, seed=9, noise=0.1)
    values = [load.critical_w(_at(MONDAY, m / 60)) for m in range(0, 3 * 1440, 3)]
    assert 0.5 * SPEC.critical_w <= min(values) and max(values) <= 1.6 * SPEC.critical_w
    assert sum(values) / len(values) == pytest.approx(SPEC.critical_w, rel=0.05)


def test_noise_is_seeded_and_order_independent():
    times = [_at(MONDAY, k * 0.37) for k in range(100)]
    a = [HallLoad(SPEC, seed=1).hall_w(t) for t in times]
    fresh = HallLoad(SPEC, seed=1)
    b = [fresh.hall_w(t) for t in reversed(times)][::-1]
    c = [HallLoad(SPEC, seed=2).hall_w(t) for t in times]
    assert a == b
    assert a != c


def test_bad_inputs():
    with pytest.raises(ValueError, match="profile"):
        hall_shape(_at(MONDAY, 1), "office")
    with pytest.raises(ValueError, match="noise"):
        HallLoad(SPEC, noise=-0.1)
    with pytest.raises(ValueError, match="naive"):
        local_hour(datetime(2025, 6, 21, 12))
