"""The forecaster and the simulator share one sun model (optimizer.sun, pvlib): they agree on a clear day.

The only difference in PV is the documented one: the simulator's clouds
(``CloudSeries``) against the forecaster's weather factor and slot mean.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from devices.simulator import solar
from devices.simulator.clock import ManualClock
from devices.simulator.physics import HallPhysics
from optimizer import forecast, sun
from tests.devices.simulator.helpers import JUNE_NIGHT, make_site

def test_there_is_one_sun_model():
    """The simulator takes its clear sky and PV from optimizer.sun, as the forecaster does (no second copy)."""
    assert solar.clear_sky_poa_at is sun.clear_sky_poa_at and solar.pv_ac_w is sun.pv_ac_w
    assert forecast.clear_sky_poa_w_m2 is sun.clear_sky_poa_w_m2 and forecast.pv_ac_w is sun.pv_ac_w
    assert solar.DEFAULT_PV_LOSSES == sun.PV_LOSSES


@pytest.mark.parametrize("lat,lon,tilt,azimuth", [(35.51, 134.18, 20, 180), (24.34, 124.16, 10, 135),
                                                  (41.3, 141.2, 35, 250)])
def test_clear_sky_irradiance_is_identical(lat, lon, tilt, azimuth):
    start = datetime(2025, 3, 1, tzinfo=timezone.utc)
    times = [start + timedelta(days=41 * d, seconds=517 * k) for d in range(9) for k in range(0, 170, 3)]
    theirs = sun.clear_sky_poa_w_m2(np.array([t.timestamp() for t in times]), lat, lon, tilt, azimuth)
    ours = np.array([solar.clear_sky_poa_w_m2(t, lat, lon, tilt, azimuth) for t in times])
    assert theirs.max() > 500
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-9)


def _simulated_day(cloud_factor: float, step_s: float = 60.0) -> tuple[list[datetime], np.ndarray, HallPhysics]:
    """Mean available PV [W] per 30-minute slot of a June day (00:00 JST) in the simulator."""
    clock = ManualClock(JUNE_NIGHT)
    p = HallPhysics(make_site(), clock, noise=0.0, lag_s=0.0, max_substep_s=step_s, watchdog_timeout_s=1e9,
                    cloud_factor=cloud_factor)
    per_slot = int(1800 / step_s)
    energy = np.zeros(48)
    for k in range(48 * per_slot):
        clock.advance(step_s)
        energy[k // per_slot] += p.step().pv_available_w * step_s
    slots = [JUNE_NIGHT + timedelta(minutes=30 * i) for i in range(48)]
    return slots, energy / 1800, p


def test_on_a_clear_day_simulator_and_forecaster_agree():
    """Cloud factor 0: slot means agree within 0.3 % + 1 W (measured: 0.6 W at most); the day within 0.01 %.

    The only difference left is numerical: the simulator samples each minute's
    middle, the forecaster six instants per slot.
    """
    slots, sim, p = _simulated_day(cloud_factor=0.0)
    pv = p.site.pv
    fc = forecast.clear_sky_pv_w(slots, p.site.lat, p.site.lon, pv.capacity_w, pv.tilt_deg, pv.azimuth_deg)
    assert sim.max() > 7000
    np.testing.assert_allclose(sim, fc, rtol=0.003, atol=1.0)
    assert sim.sum() == pytest.approx(fc.sum(), rel=1e-4)


def test_under_clouds_the_difference_is_exactly_the_weather_factor():
    """At any instant: simulator PV = forecaster's clear-sky PV × the simulator's cloud series."""
    site = make_site()
    clouds = solar.CloudSeries(site.simulator.seed, 0.4, lon_deg=site.lon)
    clock = ManualClock(datetime(2025, 6, 21, 0, 0, tzinfo=timezone.utc))
    p = HallPhysics(site, clock, noise=0.0, lag_s=0.0, max_substep_s=600, watchdog_timeout_s=1e9,
                    cloud_factor=0.4)
    for _ in range(40):
        clock.advance(97.0)
        s = p.step()
        mid = s.time - timedelta(seconds=48.5)  # the step is one sub-step: PV is sampled at its middle
        clear = forecast.clear_sky_pv_w([mid], site.lat, site.lon, site.pv.capacity_w, site.pv.tilt_deg,
                                        site.pv.azimuth_deg, slot=timedelta(microseconds=6))[0]
        assert s.pv_available_w == pytest.approx(clear * clouds.factor(mid), rel=1e-6, abs=1e-6)
    slots, cloudy, _ = _simulated_day(cloud_factor=0.4)
    _, clear_day, _ = _simulated_day(cloud_factor=0.0)
    assert 0.4 < cloudy.sum() / clear_day.sum() < 0.8


def test_the_forecasters_tables_are_cached_and_give_the_same_values_cold_and_warm(monkeypatch):
    start = datetime(2031, 2, 3, 12, tzinfo=timezone.utc)  # 21:00 JST: 96 slots touch three local days
    times = [start + timedelta(minutes=30 * i) for i in range(96)]
    calls = []
    compute = sun._compute_tables
    monkeypatch.setattr(sun, "_compute_tables", lambda *a: calls.append(a[-1]) or compute(*a))
    cold = forecast.clear_sky_pv_w(times, 35.5, 134.2, 10_000)
    assert len(calls) == 1 and len(calls[0]) == 3  # three local days, one pvlib call
    warm = forecast.clear_sky_pv_w(times, 35.5, 134.2, 10_000)
    assert len(calls) == 1
    np.testing.assert_array_equal(cold, warm)
    pieces = np.concatenate([forecast.clear_sky_pv_w(times[i:i + 7], 35.5, 134.2, 10_000, slot=timedelta(minutes=30))
                             for i in range(0, 96, 7)])
    np.testing.assert_array_equal(cold, pieces)
    assert sun.clear_sky_poa_w_m2(np.zeros(0), 35.5, 134.2, 20, 180).shape == (0,)
