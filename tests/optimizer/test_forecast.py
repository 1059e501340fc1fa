"""Clear-sky PV and load profiles."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from optimizer.forecast import (clear_sky_pv_w, configured_critical_w, configured_load_w, forecast_load_w,
                                learn_profile)

JST = timezone(timedelta(hours=9))
DAY = [datetime(2025, 6, 21, tzinfo=JST) + timedelta(minutes=30 * i) for i in range(48)]


def test_clear_sky_pv_shape_and_scaling():
    pv = clear_sky_pv_w(DAY, 35.5, 134.2, 10_000)
    assert np.all(pv[:8] == 0) and np.all(pv[42:] == 0)          # night
    assert 22 <= int(np.argmax(pv)) <= 24                         # around solar noon (~12:05 JST at 134.2°E)
    assert 7000 < pv.max() < 10_000                               # below nameplate after losses
    assert np.allclose(clear_sky_pv_w(DAY, 35.5, 134.2, 5_000), pv / 2)
    assert np.allclose(clear_sky_pv_w(DAY, 35.5, 134.2, 10_000, weather_factor=0.3), 0.3 * pv)
    winter = [t.replace(month=12) for t in DAY]
    assert clear_sky_pv_w(winter, 35.5, 134.2, 10_000).sum() < 0.8 * pv.sum()
    with pytest.raises(ValueError):
        clear_sky_pv_w([datetime(2025, 6, 21)], 35.5, 134.2, 1000)  # naive time


def test_configured_profiles():
    load = configured_load_w(DAY, 500, 3500)  # 21 June 2025 is a Saturday
    assert load.min() == pytest.approx(500) and load.max() <= 3500
    assert load[3] == pytest.approx(500)  # 01:30
    assert np.all(configured_load_w(DAY, 400, 3000, profile="flat") == 400)
    crit = configured_critical_w(DAY, 900)
    assert crit.mean() == pytest.approx(900, rel=0.03)
    assert crit[2] > crit[24]  # lighting at night
    with pytest.raises(ValueError):
        configured_load_w(DAY, 1, 2, profile="factory")


def test_learnt_profile_with_fallback():
    hist_times = [datetime(2025, 6, 2, tzinfo=JST) + timedelta(minutes=30 * i) for i in range(48 * 14)]
    values = np.array([1000.0 + 100 * t.astimezone(JST).weekday() for t in hist_times])
    values[5] = np.nan  # ignored
    prof = learn_profile(hist_times, values)
    monday = [datetime(2025, 6, 23, 10, tzinfo=JST)]
    assert prof.at(monday)[0] == pytest.approx(1000)
    fallback = np.array([777.0])
    assert forecast_load_w(monday, fallback, prof)[0] == pytest.approx(1000)
    empty = learn_profile([], [])
    assert forecast_load_w(monday, fallback, empty)[0] == 777.0
    assert forecast_load_w(monday, fallback, None)[0] == 777.0
    with pytest.raises(ValueError):
        learn_profile(hist_times, values[:-1])
