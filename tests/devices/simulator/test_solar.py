"""Sun position, clear-sky irradiance, PV power and clouds against known values."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from devices.simulator import solar

TOTTORI = (35.5, 134.24)  # Tottori city [°N, °E]


def _noon_search(day: datetime, lat: float, lon: float) -> tuple[datetime, solar.SolarPosition]:
    """Highest sun of ``day`` (UTC midnight) at minute resolution."""
    best = None
    for m in range(24 * 60):
        t = day + timedelta(minutes=m)
        p = solar.solar_position(t, lat, lon)
        if best is None or p.elevation_deg > best[1].elevation_deg:
            best = (t, p)
    return best


def test_june_solstice_noon_in_tottori_is_about_78_degrees():
    t, pos = _noon_search(datetime(2025, 6, 21, tzinfo=timezone.utc), *TOTTORI)
    assert pos.elevation_deg == pytest.approx(90 - 35.5 + 23.44, abs=0.2)  # ≈ 77.9°
    assert pos.azimuth_deg == pytest.approx(180, abs=2)
    # Solar noon at 134.24°E: 12:00 − 134.24/15 h ≈ 03:03 UTC, plus ~1.5 min equation of time.
    assert datetime(2025, 6, 21, 2, 58, tzinfo=timezone.utc) <= t <= datetime(2025, 6, 21, 3, 10, tzinfo=timezone.utc)


def test_december_solstice_noon_is_low():
    _, pos = _noon_search(datetime(2025, 12, 21, tzinfo=timezone.utc), *TOTTORI)
    assert pos.elevation_deg == pytest.approx(90 - 35.5 - 23.44, abs=0.2)  # ≈ 31.1°


@pytest.mark.parametrize("day,expected", [((6, 21), 23.44), ((12, 21), -23.44), ((3, 20), 0.0), ((9, 23), 0.0)])
def test_declination_at_solstices_and_equinoxes(day, expected):
    t = datetime(2025, *day, 12, tzinfo=timezone.utc)
    assert solar.declination_deg(t) == pytest.approx(expected, abs=0.5)


@pytest.mark.parametrize("day,expected", [((11, 3), 16.4), ((2, 11), -14.2), ((6, 13), 0.0)])
def test_equation_of_time(day, expected):
    assert solar.equation_of_time_min(datetime(2025, *day, 12, tzinfo=timezone.utc)) == pytest.approx(expected, abs=0.7)


def test_sun_rises_in_the_east_and_sets_in_the_west():
    morning = solar.solar_position(datetime(2025, 3, 20, 22, 30, tzinfo=timezone.utc), *TOTTORI)  # 07:30 JST
    evening = solar.solar_position(datetime(2025, 3, 20, 8, 30, tzinfo=timezone.utc), *TOTTORI)  # 17:30 JST
    assert 60 < morning.azimuth_deg < 120 and morning.elevation_deg > 0
    assert 240 < evening.azimuth_deg < 300 and evening.elevation_deg > 0
    midnight = solar.solar_position(datetime(2025, 6, 21, 15, 0, tzinfo=timezone.utc), *TOTTORI)
    assert midnight.elevation_deg < -20


def test_haurwitz_known_values():
    assert solar.haurwitz_ghi_w_m2(0.0) == pytest.approx(1098 * 2.718281828 ** -0.057, rel=1e-6)  # 1037.2
    assert solar.haurwitz_ghi_w_m2(60.0) == pytest.approx(1098 * 0.5 * 2.718281828 ** -0.114, rel=1e-6)
    assert solar.haurwitz_ghi_w_m2(90.0) == 0.0
    assert solar.haurwitz_ghi_w_m2(120.0) == 0.0


def test_horizontal_panel_sees_ghi_and_tilted_panel_more_in_winter():
    t = datetime(2025, 12, 21, 3, 0, tzinfo=timezone.utc)
    pos = solar.solar_position(t, *TOTTORI)
    ghi = solar.haurwitz_ghi_w_m2(pos.zenith_deg)
    flat = solar.clear_sky_poa_w_m2(t, *TOTTORI, tilt_deg=0, surface_azimuth_deg=180)
    assert flat == pytest.approx(ghi, rel=1e-6)
    south_30 = solar.clear_sky_poa_w_m2(t, *TOTTORI, tilt_deg=30, surface_azimuth_deg=180)
    north_30 = solar.clear_sky_poa_w_m2(t, *TOTTORI, tilt_deg=30, surface_azimuth_deg=0)
    assert south_30 > 1.3 * ghi
    assert north_30 < ghi


def test_erbs_split_is_consistent():
    dni, dhi = solar.erbs_dni_dhi_w_m2(800.0, 30.0, 1367.0)
    import math
    assert dni * math.cos(math.radians(30)) + dhi == pytest.approx(800.0, rel=1e-9)
    assert 0 < dhi < 800 and dni > 0
    assert solar.erbs_dni_dhi_w_m2(0.0, 30.0, 1367.0) == (0.0, 0.0)


def test_poa_is_zero_at_night_and_never_negative():
    start = datetime(2025, 6, 21, tzinfo=timezone.utc)
    values = [solar.clear_sky_poa_w_m2(start + timedelta(minutes=10 * k), *TOTTORI, 20, 180) for k in range(144)]
    assert min(values) == 0.0
    assert max(values) > 900
    night = datetime(2025, 6, 21, 15, 0, tzinfo=timezone.utc)  # midnight JST
    assert solar.clear_sky_poa_w_m2(night, *TOTTORI, 20, 180) == 0.0


def test_pv_power():
    assert solar.pv_power_w(10000, 1000) == pytest.approx(8600)  # 14 % losses
    assert solar.pv_power_w(10000, 1000, losses=0.0, weather_factor=0.5) == pytest.approx(5000)
    assert solar.pv_power_w(10000, 2000, losses=0.0) == 10000  # capped at the rating
    assert solar.pv_power_w(10000, 0) == 0.0
    assert solar.pv_power_w(10000, -5) == 0.0


def test_naive_times_are_refused():
    with pytest.raises(ValueError, match="naive"):
        solar.solar_position(datetime(2025, 6, 21, 3), *TOTTORI)


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
