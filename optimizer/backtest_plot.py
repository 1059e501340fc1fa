"""PNG of an economic backtest: cumulative savings of each strategy over the simulated period.

Savings per day = cost of the hall without a battery − the strategy's
energy cost and battery wear that day [JPY] (the stored-energy change is
valued once, in the totals, not per day).
"""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, never a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from optimizer.backtest import BacktestResult  # noqa: E402

COLOURS = {"perfect": "#2ca02c", "mpc": "#1f77b4", "rule": "#ff7f0e"}
LABELS = {"perfect": "perfect foresight", "mpc": "MPC (forecasts)", "rule": "rule (self-consumption)"}


def plot_backtest(res: BacktestResult, path: Path, first_day: date = date(2024, 4, 1)) -> Path:
    """Cumulative savings [JPY] per strategy (top) and the daily gap perfect − MPC [JPY] (bottom)."""
    days = [first_day + timedelta(days=i) for i in range(len(res.no_battery_daily_jpy))]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(11, 7), sharex=True, gridspec_kw={"height_ratios": [2, 1]})
    saved = {}
    for name in ("perfect", "mpc", "rule"):
        r = res.strategies[name]
        saved[name] = res.no_battery_daily_jpy - r.daily_cost_jpy
        top.plot(days, np.cumsum(saved[name]), color=COLOURS[name],
                 label=f"{LABELS[name]}: {r.savings_jpy:,.0f} JPY ({res.pct_of_perfect(name):.1f} %)")
    top.set_ylabel("cumulative savings [JPY]")
    top.set_title(f"Economic backtest, {res.days} days of 30-minute settlement (savings vs no battery)")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    gap = saved["perfect"] - saved["mpc"]
    bottom.bar(days, gap, width=1.0, color="#1f77b4", alpha=0.7)
    bottom.set_ylabel("perfect − MPC [JPY/day]")
    bottom.grid(alpha=0.3)
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
