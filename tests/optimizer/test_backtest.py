"""The backtest's strategies and the benchmark script (small runs; figures are printed by the benchmark)."""

import pytest

from benchmarks.bench_optimizer import main as bench_main
from optimizer import backtest
from optimizer.backtest import ErrorModel, run_backtest
from optimizer.highs_direct import DirectSiteLP
from optimizer.settings import PlanSettings


def test_perfect_foresight_bounds_the_others():
    res = run_backtest(days=3, seed=11)
    pf, mpc, rule = (res.strategies[k] for k in ("perfect", "mpc", "rule"))
    assert res.mpc_fallbacks == 0
    assert pf.savings_jpy > 0
    # Same accounting for all: nobody beats the optimum over the actual data.
    assert mpc.savings_jpy <= pf.savings_jpy + 1e-6
    assert rule.savings_jpy <= pf.savings_jpy + 1e-6
    assert pf.reserve_violations == 0 and mpc.reserve_violations == 0 and rule.reserve_violations == 0
    assert len(res.mpc_solve_ms) == res.slots == 3 * 48


def test_mpc_with_perfect_forecasts_matches_perfect_foresight():
    res = run_backtest(days=3, seed=11, perfect_forecasts=True, execution="battery")
    assert res.pct_of_perfect("mpc") == pytest.approx(100.0, abs=0.5)


def test_forecast_errors_cost_something():
    noisy = run_backtest(days=3, seed=11, errors=ErrorModel(load_sd=0.3, pv_sd=0.3))
    assert noisy.pct_of_perfect("mpc") < 100.0 - 0.5


@pytest.mark.parametrize("mode", ["teleport", "grid", "surplus"])
def test_bad_execution_mode(mode):
    with pytest.raises(ValueError, match="'battery' or 'selfuse'"):
        run_backtest(days=1, execution=mode)


def test_benchmark_script_prints_figures(capsys, tmp_path):
    png = tmp_path / "backtest.png"
    assert bench_main(["--days", "2", "--sites", "3", "--seeds", "8", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "48 slots: Pyomo cold build+solve" in out and "96 slots" in out
    assert "3 sites: allocation" in out and "optimal" in out
    assert "% of perfect" in out and "MPC vs rule" in out
    assert "forecaster: load profile" in out and "next-slot MAE load" in out
    assert "-- seed 8" in out and "over 2 seeds" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000


def test_a_misconfigured_hall_is_learnt_and_learning_pays():
    """The hall draws 30 % more than configured, an hour later: after four weeks the forecaster has learnt it."""
    errors = ErrorModel(load_scale=1.3, load_shift_h=1.0)
    res = run_backtest(days=35, seed=5, errors=errors)
    f = res.forecaster
    assert f["load_model"] in ("daytype", "weekday"), f
    assert f["skill_w"][f["load_model"]] < 0.7 * f["skill_w"]["configured"], f
    assert res.strategies["mpc"].reserve_violations == 0
    assert res.pct_of_perfect("mpc") > res.pct_of_perfect("rule") + 5


class _RecordingLP(DirectSiteLP):
    """The direct LP, remembering its self-discharge; ``stop_at_once`` makes HiGHS give up before the optimum."""

    made: list["_RecordingLP"] = []
    stop_at_once = False

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        _RecordingLP.made.append(self)

    def solve(self):
        if self.stop_at_once:
            self.highs.setOptionValue("presolve", "off")
            self.highs.setOptionValue("simplex_iteration_limit", 0)
        return super().solve()


def test_perfect_foresight_uses_the_planners_self_discharge(monkeypatch):
    monkeypatch.setattr(backtest, "DirectSiteLP", _RecordingLP)
    monkeypatch.setattr(_RecordingLP, "made", [])
    run_backtest(days=1, seed=11, settings=PlanSettings(self_discharge_per_h=0.002))
    assert [lp.keep for lp in _RecordingLP.made] == [pytest.approx(1 - 0.002 * 0.5)]


def test_a_failed_perfect_foresight_lp_raises(monkeypatch):
    monkeypatch.setattr(backtest, "DirectSiteLP", _RecordingLP)
    monkeypatch.setattr(_RecordingLP, "stop_at_once", True)
    with pytest.raises(RuntimeError, match="not solved to optimality: .*[Ll]imit"):
        run_backtest(days=1, seed=11)
