"""The learning forecaster and its nowcast: they must find what is in the data and nothing that is not."""

from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from optimizer.backtest import ErrorModel, Hall, make_world
from optimizer.forecast import JST, HallProfile, clear_sky_pv_w, configured_load_w
from optimizer.forecaster import HallForecaster
from optimizer.nowcast import BiasAR1Filter, ErrorStats, fit_error_stats

SLOT = timedelta(minutes=30)
HALL = HallProfile(lat=35.5, lon=134.2, pv_capacity_w=10_000, base_w=500, peak_w=3500, critical_w=900)
MONDAY = datetime(2025, 6, 2, tzinfo=JST)


def _slots(start: datetime, days: int) -> list[datetime]:
    return [start + i * SLOT for i in range(days * 48)]


def _simulated_errors(rng, days: int, per_day: int, stats: ErrorStats) -> list[np.ndarray]:
    out = []
    for _ in range(days):
        b = rng.normal(0, stats.bias_sd)
        a = rng.normal(0, stats.fading_sd)
        e = np.empty(per_day)
        for i in range(per_day):
            a = stats.rho * a + rng.normal(0, stats.fading_sd * math.sqrt(1 - stats.rho ** 2))
            e[i] = b + a
        out.append(e)
    return out


def test_fit_error_stats_recovers_the_statistics_of_simulated_errors():
    truth = ErrorStats(bias_sd=0.10, fading_sd=0.15, rho=0.7)
    days = _simulated_errors(np.random.default_rng(3), 400, 24, truth)
    fit = fit_error_stats(days, prior=ErrorStats(0.5, 0.5, 0.1))
    assert fit.rho == pytest.approx(0.7, abs=0.05)
    assert fit.fading_sd == pytest.approx(0.15, rel=0.15)
    assert fit.bias_sd == pytest.approx(0.10, rel=0.2)


def test_fit_error_stats_keeps_the_prior_without_enough_days():
    prior = ErrorStats(0.1, 0.2, 0.5)
    assert fit_error_stats([np.zeros(10)] * 3, prior, min_days=7) is prior
    assert fit_error_stats([np.zeros(5)] * 20, prior) is prior, "days too short for the lags are skipped"


def test_error_stats_refuse_impossible_values():
    with pytest.raises(ValueError, match="rho"):
        ErrorStats(0.1, 0.1, 1.0)
    with pytest.raises(ValueError):
        ErrorStats(-0.1, 0.1, 0.5)


def test_filter_separates_a_lasting_bias_from_a_fading_error():
    f = BiasAR1Filter(ErrorStats(bias_sd=0.1, fading_sd=0.1, rho=0.6))
    for _ in range(12):  # a morning 0.2 below forecast, every slot
        f.update(-0.2)
        f.step()
    next_slot, later_today = f.correction(np.array([True, True]), np.array([0, 10]))
    assert next_slot == pytest.approx(-0.2, abs=0.02)
    # Twelve slots of a fading error with ρ = 0.6 are worth ~3 independent looks: most, not all, is bias.
    assert -0.2 < later_today < -0.12, "a steady error is mostly the day's bias: it stays all day"
    assert f.correction(np.array([False]), np.array([30]))[0] == pytest.approx(0.0, abs=0.01)
    f.new_day()
    assert f.x[0] == 0.0 and f.p[0, 0] == pytest.approx(0.01)

    g = BiasAR1Filter(ErrorStats(bias_sd=0.02, fading_sd=0.2, rho=0.6))
    g.update(0.3)  # one big surprise with little bias expected: mostly a fading error
    g.step()
    near, far = g.correction(np.array([True, True]), np.array([0, 12]))
    assert near > 0.1 and abs(far) < 0.05 and near > 3 * abs(far)


def _feed(fc: HallForecaster, times, load, pv, weather=0.8):
    for t, l, p in zip(times, load, pv):
        fc.forecast([t, t + SLOT], np.zeros(2), np.zeros(2), weather_factor=weather)
        fc.observe(t, l, p)


def test_without_history_the_forecast_is_the_configured_load_and_clear_sky_times_weather():
    fc = HallForecaster(HALL)
    times = _slots(MONDAY, 1)
    f = fc.forecast(times, np.full(48, 30.0), np.full(48, 10.0), weather_factor=0.6)
    np.testing.assert_allclose(f.load_w, configured_load_w(times, 500, 3500, slot=SLOT))
    np.testing.assert_allclose(f.pv_w, 0.6 * clear_sky_pv_w(times, 35.5, 134.2, 10_000, slot=SLOT))
    assert fc.load_model == "configured"


def test_rolling_forecasts_over_remembered_slots_agree_with_fresh_computation():
    """Clear sky and configured load are remembered per slot; overlapping windows must give the same figures."""
    fc = HallForecaster(HALL)
    day = _slots(MONDAY, 2)
    for start, weather in ((0, 0.6), (1, 0.9), (30, 0.3), (0, 1.0)):  # new, overlapping, half new, all remembered
        times = day[start:start + 48]
        f = fc.forecast(times, np.full(48, 30.0), np.full(48, 10.0), weather_factor=weather)
        np.testing.assert_allclose(f.load_w, configured_load_w(times, 500, 3500, slot=SLOT), rtol=1e-12)
        np.testing.assert_allclose(f.pv_w, weather * clear_sky_pv_w(times, 35.5, 134.2, 10_000, slot=SLOT),
                                   rtol=1e-12, atol=1e-9)


def test_learns_a_load_twice_the_configured_one():
    fc = HallForecaster(HALL)
    times = _slots(MONDAY, 21)
    load = 2 * configured_load_w(times, 500, 3500, slot=SLOT)
    _feed(fc, times, load, np.zeros(len(times)))
    nxt = _slots(times[-1] + SLOT, 1)
    f = fc.forecast(nxt, np.zeros(48), np.zeros(48))
    np.testing.assert_allclose(f.load_w, 2 * configured_load_w(nxt, 500, 3500, slot=SLOT), rtol=0.02)
    assert fc.load_model in ("daytype", "weekday")
    assert fc.skill_w["configured"] > 10 * fc.skill_w[fc.load_model]


def test_picks_same_weekday_where_one_weekday_differs_and_pooled_days_where_they_are_alike():
    rng = np.random.default_rng(5)
    times = _slots(MONDAY, 35)
    base = 1.3 * configured_load_w(times, 500, 3500, slot=SLOT)  # the hall uses more than configured
    noise = 1 + rng.normal(0, 0.15, len(times))
    wednesday = np.array([t.astimezone(JST).weekday() == 2 and 10 <= t.astimezone(JST).hour < 16 for t in times])

    alike = HallForecaster(HALL)
    _feed(alike, times, base * noise, np.zeros(len(times)))
    assert alike.load_model == "daytype", alike.skill_w

    markets = HallForecaster(HALL)  # a Wednesday market hall: 4 kW more from 10 to 16 h
    _feed(markets, times, base * noise + 4000 * wednesday, np.zeros(len(times)))
    assert markets.load_model == "weekday", markets.skill_w


def test_pv_nowcast_follows_a_day_duller_than_forecast_and_forgets_it_tomorrow():
    fc = HallForecaster(HALL)
    day = _slots(MONDAY, 1)
    clear = clear_sky_pv_w(day, 35.5, 134.2, 10_000, slot=SLOT)
    noon = 24
    _feed(fc, day[:noon], np.full(noon, 800.0), 0.5 * clear[:noon], weather=0.8)
    f = fc.forecast(day[noon:], np.zeros(24), np.zeros(24), weather_factor=0.8)
    afternoon = f.pv_w[:8] / clear[noon:noon + 8]
    # The prior thinks a day's bias of 0.3 unlikely (σb = 0.1): it believes most of it, not all.
    assert np.all((afternoon >= 0.5) & (afternoon < 0.65)), afternoon
    tomorrow = _slots(MONDAY + timedelta(days=1), 1)
    g = fc.forecast(tomorrow[20:28], np.zeros(8), np.zeros(8), weather_factor=0.8)
    ratio = g.pv_w / clear_sky_pv_w(tomorrow[20:28], 35.5, 134.2, 10_000, slot=SLOT)
    np.testing.assert_allclose(ratio, 0.8, atol=0.02)


def test_nowcast_cuts_the_next_slot_error_on_a_simulated_hall():
    hall = Hall()
    world = make_world(hall, 60, seed=2, extra_slots=0, errors=ErrorModel())
    fc = HallForecaster(hall.profile())
    with_nowcast, profile_only = [], []
    for k, t in enumerate(world.times):
        f = fc.forecast([t], [0.0], [0.0], weather_factor=world.weather_forecast[k:k + 1])
        if k >= 35 * 48:
            with_nowcast.append(abs(f.load_w[0] - world.load_w[k]) + abs(f.pv_w[0] - world.pv_w[k]))
            base = fc._expected[t]  # what the profile and the weather forecast alone said
            profile_only.append(abs(base.profile_w[fc.load_model] - world.load_w[k])
                                + abs(base.clear_w * base.weather - world.pv_w[k]))
        fc.observe(t, float(world.load_w[k]), float(world.pv_w[k]))
    assert np.mean(with_nowcast) < 0.8 * np.mean(profile_only), (np.mean(with_nowcast), np.mean(profile_only))
    stats = fc.nowcast_stats
    assert stats["load"].rho == pytest.approx(0.8, abs=0.1), stats
    assert stats["pv"].rho > 0.4, stats


@pytest.mark.parametrize("args, match", [
    ((datetime(2025, 6, 2, 10), 500.0, 0.0), "timezone-aware"),
    ((MONDAY + timedelta(minutes=7), 500.0, 0.0), "grid"),
    ((MONDAY, -5.0, 0.0), "load_w"),
    ((MONDAY, 500.0, float("nan")), "pv_w"),
    ((MONDAY, 500.0, 0.0, float("inf")), "critical_w"),
])
def test_bad_observations_are_refused_by_name(args, match):
    fc = HallForecaster(HALL)
    with pytest.raises(ValueError, match=match):
        fc.observe(*args)


def test_gaps_and_late_slots_are_taken_in_stride():
    fc = HallForecaster(HALL)
    times = _slots(MONDAY.astimezone(timezone.utc), 10)
    load = configured_load_w(times, 500, 3500, slot=SLOT) * 1.5
    for i, t in enumerate(times):
        if i % 7 == 3:
            continue  # meter outage: the slot never arrives
        fc.observe(t, None if i % 11 == 5 else float(load[i]), 0.0)
    fc.observe(times[3], float(load[3]), 0.0)  # a late slot: learnt, the nowcast does not rewind
    f = fc.forecast(_slots(times[-1] + SLOT, 1), np.zeros(48), np.zeros(48))
    assert np.all(np.isfinite(f.load_w)) and f.load_w.mean() > 1.3 * configured_load_w(
        _slots(times[-1] + SLOT, 1), 500, 3500, slot=SLOT).mean()


def test_fit_sees_gaps_as_gaps():
    truth = ErrorStats(bias_sd=0.05, fading_sd=0.15, rho=0.8)
    days = _simulated_errors(np.random.default_rng(4), 300, 48, truth)
    holed = [np.where(np.random.default_rng(i).random(48) < 0.33, np.nan, d) for i, d in enumerate(days)]
    assert fit_error_stats(holed, prior=ErrorStats(0.5, 0.5, 0.1)).rho == pytest.approx(0.8, abs=0.05)


def test_a_clock_jumping_back_does_not_freeze_learning():
    """Slots learnt under a clock a year fast must not turn every real slot into 'late data'."""
    fc = HallForecaster(HALL)
    fast = _slots(MONDAY + timedelta(days=365), 1)
    _feed(fc, fast, np.full(48, 900.0), np.zeros(48))
    times = _slots(MONDAY, 21)
    _feed(fc, times, 2 * configured_load_w(times, 500, 3500, slot=SLOT), np.zeros(len(times)))
    assert fc.load_model != "configured" and all(t < times[-1] + SLOT for t, *_ in fc.history())
    nxt = _slots(times[-1] + SLOT, 1)
    np.testing.assert_allclose(fc.forecast(nxt, np.zeros(48), np.zeros(48)).load_w,
                               2 * configured_load_w(nxt, 500, 3500, slot=SLOT), rtol=0.05)


def test_a_clock_jumping_a_year_forward_restarts_the_nowcast_without_stepping_through_it():
    fc = HallForecaster(HALL)
    _feed(fc, _slots(MONDAY, 1), np.full(48, 900.0), np.zeros(48))
    later = MONDAY + timedelta(days=365)
    relearnt = []
    real = fc._relearn
    fc._relearn = lambda day_start: (relearnt.append(day_start), real(day_start))
    fc.observe(later, 900.0, 0.0)
    assert fc._next == later + SLOT
    assert len(relearnt) <= 2, f"stepped through {len(relearnt)} days instead of restarting"
    f = fc.forecast(_slots(later + SLOT, 1), np.zeros(48), np.zeros(48))
    assert np.all(np.isfinite(f.load_w))


def test_a_repeated_slot_is_not_counted_twice():
    fc = HallForecaster(HALL)
    day = _slots(MONDAY, 1)
    _feed(fc, day, np.full(48, 900.0), np.zeros(48))
    scored = {n: len(v) for n, v in fc._skill.items()}
    x = fc._load.x.copy()
    fc.observe(day[-1], 5000.0, 0.0)  # the day's last slot again (a duplicated history line)
    assert {n: len(v) for n, v in fc._skill.items()} == scored
    np.testing.assert_array_equal(fc._load.x, x)
