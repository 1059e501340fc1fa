"""Sun position, clear-sky irradiance and PV power (pvlib) against known values; clouds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pandas as pd
import pvlib
import pytest

from devices.simulator import solar
from optimizer import sun

TOTTORI = (35.5, 134.24)  # Tottori city [°N, °E]


def _transit(day: datetime, lat: float, lon: float) -> datetime:
    """Solar noon of ``day`` (UTC midnight) in Japan: the sun crosses the meridian (azimuth 180°), to < 1 s."""
    lo, hi = day + timedelta(hours=2), day + timedelta(hours=4)
    for _ in range(14):
        mid = lo + (hi - lo) / 2
        if solar.solar_position(mid, lat, lon).azimuth_deg < 180:
            lo = mid
        else:
            hi = mid
    return lo


def test_june_solstice_noon_in_tottori_is_about_78_degrees():
    t = _transit(datetime(2025, 6, 21, tzinfo=timezone.utc), *TOTTORI)
    pos = solar.solar_position(t, *TOTTORI)
    assert pos.elevation_deg == pytest.approx(90 - 35.5 + 23.44, abs=0.05)  # ≈ 77.94°
    assert pos.zenith_deg == pytest.approx(90 - pos.elevation_deg)
    # Solar noon at 134.24°E: 12:00 − 134.24/15 h ≈ 03:03 UTC, plus ~1.8 min equation of time.
    assert datetime(2025, 6, 21, 3, 3, tzinfo=timezone.utc) <= t <= datetime(2025, 6, 21, 3, 7, tzinfo=timezone.utc)


@pytest.mark.parametrize("day,declination", [((6, 21), 23.44), ((12, 21), -23.44), ((3, 20), -0.1), ((9, 23), -0.14)])
def test_noon_elevation_is_90_minus_latitude_plus_declination(day, declination):
    """Almanac declinations at ~03:00 UTC: solstices ±23.44°, equinoxes 2025-03-20 09:01 and 2025-09-22 18:19 UTC."""
    t = _transit(datetime(2025, *day, tzinfo=timezone.utc), *TOTTORI)
    assert solar.solar_position(t, *TOTTORI).elevation_deg == pytest.approx(90 - 35.5 + declination, abs=0.1)


def test_equinox_noon_in_tottori_is_about_54_5_degrees():
    t = _transit(datetime(2025, 3, 20, tzinfo=timezone.utc), *TOTTORI)
    assert solar.solar_position(t, *TOTTORI).elevation_deg == pytest.approx(54.5, abs=0.2)


@pytest.mark.parametrize("day,eot_min", [((11, 3), 16.4), ((2, 11), -14.2), ((6, 13), 0.0)])
def test_solar_noon_moves_with_the_equation_of_time(day, eot_min):
    """Almanac equation of time [min]: solar noon = 12:00 UTC − lon/15 h − EoT."""
    d = datetime(2025, *day, tzinfo=timezone.utc)
    mean_noon = d + timedelta(hours=12 - TOTTORI[1] / 15)
    eot = (mean_noon - _transit(d, *TOTTORI)).total_seconds() / 60
    assert eot == pytest.approx(eot_min, abs=0.3)


def test_sun_rises_in_the_east_and_sets_in_the_west():
    morning = solar.solar_position(datetime(2025, 3, 20, 22, 30, tzinfo=timezone.utc), *TOTTORI)  # 07:30 JST
    evening = solar.solar_position(datetime(2025, 3, 20, 8, 30, tzinfo=timezone.utc), *TOTTORI)  # 17:30 JST
    assert 60 < morning.azimuth_deg < 120 and morning.elevation_deg > 0
    assert 240 < evening.azimuth_deg < 300 and evening.elevation_deg > 0
    midnight = solar.solar_position(datetime(2025, 6, 21, 15, 0, tzinfo=timezone.utc), *TOTTORI)
    assert midnight.elevation_deg < -20


@pytest.mark.parametrize("day,low,high", [((6, 21), 850, 1050), ((12, 21), 450, 620), ((3, 20), 750, 950)])
def test_clear_sky_ghi_at_noon_is_plausible(day, low, high):
    """A flat panel sees GHI [W/m²]: clear noon near sea level at 35.5°N (Ineichen with Tottori's turbidity)."""
    t = datetime(2025, *day, 3, 5, tzinfo=timezone.utc)
    assert low < solar.clear_sky_poa_w_m2(t, *TOTTORI, tilt_deg=0, surface_azimuth_deg=180) < high


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # pvlib's turbidity interpolation on pandas 3
def test_clear_sky_is_pvlibs_default_ineichen_for_the_location():
    """The day tables reproduce pvlib's ``Location.get_clearsky`` (Ineichen, looked-up turbidity) off the grid too."""
    times = pd.DatetimeIndex([datetime(2025, m, 10, h, 17, 40, tzinfo=timezone.utc)
                              for m in (1, 4, 7, 10) for h in (0, 3, 6)])
    expected = pvlib.location.Location(*TOTTORI, altitude=solar.ALTITUDE_M).get_clearsky(times)["ghi"]
    for t, ghi in zip(times, expected):
        # pvlib interpolates the turbidity per UTC day, the tables per local day: a fraction of a percent.
        assert solar.clear_sky_poa_w_m2(t.to_pydatetime(), *TOTTORI, 0, 180) == pytest.approx(ghi, rel=0.005)


def test_tilted_south_panel_sees_more_in_winter_and_north_less():
    t = datetime(2025, 12, 21, 3, 0, tzinfo=timezone.utc)
    ghi = solar.clear_sky_poa_w_m2(t, *TOTTORI, tilt_deg=0, surface_azimuth_deg=180)
    south_30 = solar.clear_sky_poa_w_m2(t, *TOTTORI, tilt_deg=30, surface_azimuth_deg=180)
    north_30 = solar.clear_sky_poa_w_m2(t, *TOTTORI, tilt_deg=30, surface_azimuth_deg=0)
    assert south_30 > 1.3 * ghi
    assert north_30 < ghi
    # East-facing panels see the morning sun, west-facing the evening sun (180 = south, 90 = east).
    morning = datetime(2025, 6, 20, 23, 0, tzinfo=timezone.utc)  # 08:00 JST
    east, west = (solar.clear_sky_poa_w_m2(morning, *TOTTORI, 30, az) for az in (90, 270))
    assert east > 2 * west


def test_summer_air_is_hazier_than_winter_air():
    """pvlib's Linke turbidity climatology for Tottori: about 4.4 in July, about 2 in January."""
    assert sun._linke_turbidity(*TOTTORI, datetime(2025, 7, 16).date()) == pytest.approx(4.4, abs=0.3)
    assert sun._linke_turbidity(*TOTTORI, datetime(2025, 1, 15).date()) == pytest.approx(2.1, abs=0.3)
    # Interpolated across the year's end without a jump.
    dec31 = sun._linke_turbidity(*TOTTORI, datetime(2024, 12, 31).date())
    assert dec31 == pytest.approx(sun._linke_turbidity(*TOTTORI, datetime(2025, 1, 1).date()), abs=0.02)


def test_poa_is_zero_at_night_and_never_negative():
    start = datetime(2025, 6, 21, tzinfo=timezone.utc)
    values = [solar.clear_sky_poa_w_m2(start + timedelta(minutes=10 * k), *TOTTORI, 20, 180) for k in range(144)]
    assert min(values) == 0.0
    assert max(values) > 900
    night = datetime(2025, 6, 21, 15, 0, tzinfo=timezone.utc)  # midnight JST
    assert solar.clear_sky_poa_w_m2(night, *TOTTORI, 20, 180) == 0.0


def test_poa_is_continuous_across_the_day_tables():
    """Tables run from local midnight to midnight; both hold the boundary, so there is no jump."""
    boundary = datetime(2025, 6, 21, 15, 0, tzinfo=timezone.utc)  # 00:00 JST: a table edge
    before = solar.clear_sky_poa_w_m2(boundary - timedelta(seconds=1), *TOTTORI, 20, 180)
    after = solar.clear_sky_poa_w_m2(boundary + timedelta(seconds=1), *TOTTORI, 20, 180)
    assert before == after == 0.0
    noon = datetime(2025, 6, 21, 3, 0, 30, tzinfo=timezone.utc)  # between two table points
    a, b = (solar.clear_sky_poa_w_m2(noon + timedelta(seconds=s), *TOTTORI, 20, 180) for s in (-30, 30))
    assert solar.clear_sky_poa_w_m2(noon, *TOTTORI, 20, 180) == pytest.approx((a + b) / 2, rel=1e-12)


def test_pv_power():
    assert solar.DEFAULT_PV_LOSSES == pytest.approx(0.1408, abs=1e-4)  # PVWatts' default losses
    assert solar.pv_power_w(10000, 1000) == pytest.approx(10000 * (1 - solar.DEFAULT_PV_LOSSES))
    assert solar.pv_power_w(10000, 1000, losses=0.0, weather_factor=0.5) == pytest.approx(5000)
    assert solar.pv_power_w(10000, 2000, losses=0.0) == 10000  # capped at the rating
    assert solar.pv_power_w(10000, 0) == 0.0
    assert solar.pv_power_w(10000, -5) == 0.0
    assert solar.pv_power_w(10000, 800, losses=0.1) == pytest.approx(
        0.9 * pvlib.pvsystem.pvwatts_dc(800, 25.0, 10000, -0.004))


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="naive"):
        solar.solar_position(datetime(2025, 6, 21, 3), *TOTTORI)
    with pytest.raises(ValueError, match="naive"):
        solar.clear_sky_poa_w_m2(datetime(2025, 6, 21, 3), *TOTTORI, 20, 180)


class TestClouds:
    T = datetime(2025, 6, 1, tzinfo=timezone.utc)

    def _series(self, c: solar.CloudSeries, days: int = 1, step_min: int = 1) -> list[float]:
        return [c.factor(self.T + timedelta(minutes=m)) for m in range(0, days * 1440, step_min)]

    def test_same_seed_same_weather_other_seed_other_weather(self):
        a = self._series(solar.CloudSeries(1, 0.3, 134.2))
        b = self._series(solar.CloudSeries(1, 0.3, 134.2))
        c = self._series(solar.CloudSeries(2, 0.3, 134.2))
        assert a == b
        assert a != c

    def test_value_does_not_depend_on_query_order(self):
        times = [self.T + timedelta(minutes=37 * k, seconds=11) for k in range(200)]
        forward = [solar.CloudSeries(5, 0.4).factor(t) for t in times]
        c = solar.CloudSeries(5, 0.4, cache_days=1)
        backward = [c.factor(t) for t in reversed(times)]
        assert forward == list(reversed(backward))

    def test_bounds_mean_and_slow_variation(self):
        values = self._series(solar.CloudSeries(3, 0.2, 134.2), days=20, step_min=1)
        assert 0.0 <= min(values) and max(values) <= 1.0
        assert sum(values) / len(values) == pytest.approx(0.8, abs=0.06)
        steps = [abs(b - a) for a, b in zip(values, values[1:])]
        assert max(steps) < 0.25  # minute to minute: no flicker
        assert max(values) - min(values) > 0.3  # but it does vary

    def test_extremes(self):
        assert set(self._series(solar.CloudSeries(1, 0.0), step_min=30)) == {1.0}
        assert set(self._series(solar.CloudSeries(1, 1.0), step_min=30)) == {0.0}

    @pytest.mark.parametrize("bad", [-0.1, 1.5])
    def test_bad_cloud_factor(self, bad):
        with pytest.raises(ValueError, match="cloud_factor"):
            solar.CloudSeries(1, bad)
