"""Optimizer benchmark: prints figures against the goals of issue 3 (no asserts).

    python benchmarks/bench_optimizer.py [--days N] [--sites 14,100,1000] [--skip-backtest]
                                         [--seeds 11,23,42] [--plot backtest.png]

1. One site, 48 and 96 slots: Pyomo cold build+solve and warm re-solve, and
   the same LP built directly in highspy, with the ratios.
   Goal: warm re-solve ≤ 20 ms and ≤ 3× direct highspy.
2. Fleet allocation for 14, 100 and 1,000 sites.  Goal: 1,000 sites ≤ 20 s cold.
3. Economic backtest (30-minute settlement, forecast errors): MPC vs
   perfect foresight vs the rule, as % of perfect-foresight savings, and
   reserve violations.  Goal: ≥ 95 %, ≥ 5 % better than the rule, 0 violations.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the project importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from optimizer.backtest import ErrorModel, run_backtest  # noqa: E402
from optimizer.data import prepare_run  # noqa: E402
from optimizer.fleet import FleetSite, allocate  # noqa: E402
from optimizer.forecast import clear_sky_pv_w, configured_critical_w, configured_load_w  # noqa: E402
from optimizer.highs_direct import DirectSiteLP  # noqa: E402
from optimizer.inputs import SiteForecast  # noqa: E402
from optimizer.planner import SitePlanner  # noqa: E402
from optimizer.prices import spot_linked, synthetic_spot_prices  # noqa: E402
from optimizer.reserve import SafetyPolicy  # noqa: E402
from optimizer.settings import PlanSettings  # noqa: E402

START = datetime(2025, 5, 1, 15, tzinfo=timezone.utc)  # 00:00 JST
POLICY = SafetyPolicy(capacity_wh=15000, max_charge_w=5900, max_discharge_w=5900,
                      grid_import_limit_w=15000, grid_export_limit_w=10000)


def forecast(n: int, day: int = 0, seed: int = 1, pv_w: float = 10000.0) -> SiteForecast:
    """A realistic forecast of ``n`` 30-minute slots starting ``day`` days after START."""
    times = [START + timedelta(days=day, minutes=30 * i) for i in range(n)]
    rng = np.random.default_rng([seed, day])
    spot = synthetic_spot_prices(times, seed=seed)
    return SiteForecast.from_columns(
        times, price_buy=spot_linked(spot, 12.0), price_sell=spot,
        load_w=configured_load_w(times, 540, 3600) * rng.uniform(0.8, 1.2, n),
        pv_w=clear_sky_pv_w(times, 35.5, 134.2, pv_w, weather_factor=rng.uniform(0.3, 1.0)),
        critical_load_w=configured_critical_w(times, 900))


def bench_site(n: int, repeats: int = 30) -> None:
    """Cold and warm solve times, Pyomo vs direct highspy, for one site of ``n`` slots."""
    cases = [(forecast(n, day=d), 20 + (d * 13) % 70) for d in range(repeats + 1)]
    tick = time.perf_counter()
    planner = SitePlanner(POLICY, PlanSettings())
    plan = planner.plan(*cases[0], "vpp")
    cold = (time.perf_counter() - tick) * 1e3
    warm, warm_solver = [], []
    for fc, soc in cases[1:]:
        tick = time.perf_counter()
        plan = planner.plan(fc, soc, "vpp")
        warm.append((time.perf_counter() - tick) * 1e3)
        warm_solver.append(plan.solve_ms)
    runs = [prepare_run(fc, POLICY, soc, "vpp", PlanSettings()) for fc, soc in cases]
    tick = time.perf_counter()
    direct = DirectSiteLP(n, 0.5, POLICY.charge_efficiency, POLICY.discharge_efficiency)
    direct.load(runs[0])
    direct.solve()
    direct_cold = (time.perf_counter() - tick) * 1e3
    direct_warm, direct_rebuild = [], []
    for run in runs[1:]:
        tick = time.perf_counter()
        direct.load(run)
        direct.solve()
        direct.schedule()
        direct_warm.append((time.perf_counter() - tick) * 1e3)
        tick = time.perf_counter()
        fresh = DirectSiteLP(n, 0.5, POLICY.charge_efficiency, POLICY.discharge_efficiency)
        fresh.load(run)
        fresh.solve()
        fresh.schedule()
        direct_rebuild.append((time.perf_counter() - tick) * 1e3)
    med = statistics.median
    print(f"  {n} slots: Pyomo cold build+solve {cold:7.1f} ms | warm re-solve median {med(warm):5.1f} ms "
          f"(max {max(warm):5.1f}; of which push+HiGHS {med(warm_solver):4.1f} ms; plan status {plan.status.value})")
    print(f"  {n} slots: highspy direct cold {direct_cold:6.1f} ms | warm {med(direct_warm):5.2f} ms | "
          f"rebuild+solve {med(direct_rebuild):5.2f} ms")
    print(f"  {n} slots: ratio Pyomo warm / highspy warm = {med(warm) / med(direct_warm):4.1f}x, "
          f"/ highspy rebuild+solve = {med(warm) / med(direct_rebuild):4.1f}x, "
          f"solver part / highspy warm = {med(warm_solver) / med(direct_warm):4.1f}x "
          f"(Pyomo warm includes the per-run reserve floors and plan assembly)")


def bench_fleet(sizes: list[int]) -> None:
    """Time the fleet allocation for each fleet size (plans made first, not timed in the goal)."""
    n = 48
    fc = forecast(n)
    planner = SitePlanner(POLICY, PlanSettings())
    request = np.zeros(n)
    # Per site [kW], scaled below.  Plans already spend their spare energy at the evening
    # peak, so the fleet offers ΔP where plans leave room: afternoon up, late-morning down.
    request[26:30] = 1.0     # 13:00-15:00 JST up-regulation
    request[20:24] = -0.8    # 10:00-12:00 JST down-regulation
    request[36:38] = 0.5     # 18:00-19:00 JST: mostly unmet (plans are at their floors)
    for size in sizes:
        tick = time.perf_counter()
        sites = []
        for i in range(size):
            mode = "vpp" if i % 10 else ("disaster_reserve" if i % 20 else "islanded")
            plan = planner.plan(fc, 20 + (i * 7) % 75, mode)
            sites.append(FleetSite(f"site-{i:04d}", mode, POLICY, plan))
        plans_s = time.perf_counter() - tick
        req = request * size * 2000.0
        tick = time.perf_counter()
        alloc = allocate(sites, fc.times, req)
        total = time.perf_counter() - tick
        asked = np.abs(req).sum() * 0.5 / 1000
        unmet = np.abs(alloc.unmet_w).sum() * 0.5 / 1000
        print(f"  {size:5d} sites: allocation {total:6.2f} s cold (build {alloc.build_ms / 1e3:5.2f} s, "
              f"HiGHS {alloc.solve_ms / 1e3:5.2f} s), {alloc.status}; asked {asked:8.0f} kWh, unmet {unmet:7.0f} kWh; "
              f"{len(alloc.excluded)} sites not in vpp; (making {size} plans: {plans_s:5.1f} s)")


def bench_backtest(days: int, seed: int, errors: ErrorModel = ErrorModel(), plot: Path | None = None) -> float:
    """Run the backtest, print the economic figures (and plot them); return MPC's % of perfect foresight."""
    tick = time.perf_counter()
    live = sys.stdout.isatty()
    res = run_backtest(days=days, seed=seed, errors=errors,
                       progress=(lambda d, total: print(f"    day {d}/{total}", end="\r", flush=True)) if live else None)
    wall = time.perf_counter() - tick
    if live:
        print(" " * 30, end="\r")
    s = res.strategies
    mpc, rule, pf = s["mpc"], s["rule"], s["perfect"]
    print(f"  {days} days, {res.slots} slots of 30 min, wall {wall:.1f} s "
          f"(MPC {res.wall_s['mpc']:.1f} s, median re-solve {statistics.median(res.mpc_solve_ms):.1f} ms, "
          f"perfect-foresight LP {res.wall_s['perfect']:.1f} s), MPC fallbacks {res.mpc_fallbacks}")
    print(f"  cost without battery {res.no_battery_cost_jpy:10.0f} JPY")
    for r in (pf, mpc, rule):
        print(f"  {r.name:8s} cost {r.adjusted_cost_jpy:10.0f} JPY (energy {r.energy_cost_jpy:9.0f}, wear {r.wear_jpy:6.0f}, "
              f"stored change {r.stored_change_wh / 1000:+6.1f} kWh)  savings {r.savings_jpy:9.0f} JPY "
              f"= {res.pct_of_perfect(r.name):5.1f} % of perfect; reserve violations {r.reserve_violations}")
    better = 100 * (mpc.savings_jpy - rule.savings_jpy) / rule.savings_jpy if rule.savings_jpy > 0 else float("nan")
    print(f"  MPC vs rule: savings {better:+.1f} %, cost {100 * (mpc.adjusted_cost_jpy / rule.adjusted_cost_jpy - 1):+.1f} %")
    f = res.forecaster
    if f:
        now = ", ".join(f"{k} bias sd {v.bias_sd:.3f} fading sd {v.fading_sd:.3f} rho {v.rho:.2f}"
                        for k, v in f["nowcast"].items())
        skill = ", ".join(f"{k} {v:.0f} W" for k, v in f["skill_w"].items())
        print(f"  forecaster: load profile '{f['load_model']}' (daily MAE {skill}); fitted nowcast: {now}; "
              f"next-slot MAE load {f['next_slot_mae_w']['load']:.0f} W, PV {f['next_slot_mae_w']['pv']:.0f} W")
    if plot is not None:
        from optimizer.backtest_plot import plot_backtest

        print(f"  plot: {plot_backtest(res, plot)}")
    return res.pct_of_perfect("mpc")


def main(argv: list[str] | None = None) -> int:
    """Entry point (``ems bench optimizer`` calls this with its remaining arguments)."""
    ap = argparse.ArgumentParser(prog="bench_optimizer", description="optimizer benchmark (prints figures)")
    ap.add_argument("--days", type=int, default=365, help="backtest days (default 365, about a minute)")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--seeds", default="", help="backtest: more seeds (comma separated) after --seed, for the spread")
    ap.add_argument("--plot", type=Path, default=None, help="backtest: write a PNG of cumulative savings here")
    ap.add_argument("--sites", default="14,100,1000", help="fleet sizes, comma separated")
    ap.add_argument("--skip-backtest", action="store_true")
    ap.add_argument("--skip-fleet", action="store_true")
    ap.add_argument("--load-sd", type=float, default=ErrorModel.load_sd,
                    help="backtest: load forecast error, AR(1) standard deviation (default %(default)s)")
    ap.add_argument("--pv-sd", type=float, default=ErrorModel.pv_sd,
                    help="backtest: PV forecast error within the day (default %(default)s)")
    ap.add_argument("--load-scale", type=float, default=ErrorModel.load_scale,
                    help="backtest: the hall's true load as a multiple of its configured profile (default %(default)s)")
    ap.add_argument("--load-shift-h", type=float, default=ErrorModel.load_shift_h,
                    help="backtest: the hall's true load profile runs this many hours later (default %(default)s)")
    args = ap.parse_args(argv)
    if args.days < 1:
        ap.error("--days must be >= 1")
    print("1. one site: Pyomo + persistent HiGHS vs the same LP directly in highspy")
    for n in (48, 96):
        bench_site(n)
    if not args.skip_fleet:
        print("2. fleet allocation (one LP over all vpp sites, built in highspy)")
        bench_fleet([int(x) for x in args.sites.split(",") if x.strip()])
    if not args.skip_backtest:
        errors = ErrorModel(load_sd=args.load_sd, pv_sd=args.pv_sd, load_scale=args.load_scale,
                            load_shift_h=args.load_shift_h)
        print("3. economic backtest (hall-01-like site, synthetic JEPX-like prices, buy = spot + 12 JPY/kWh;")
        print(f"   forecast errors: day weather sd {errors.weather_sd}, PV sd {errors.pv_sd} (rho {errors.pv_rho}), "
              f"load sd {errors.load_sd} (rho {errors.load_rho}); true load {errors.load_scale:g} x configured, "
              f"{errors.load_shift_h:+g} h)")
        pct = [bench_backtest(args.days, args.seed, errors, args.plot)]
        for seed in (int(x) for x in args.seeds.split(",") if x.strip()):
            print(f"  -- seed {seed}")
            pct.append(bench_backtest(args.days, seed, errors))
        if len(pct) > 1:
            print(f"  MPC % of perfect over {len(pct)} seeds: min {min(pct):.1f}, mean {statistics.mean(pct):.1f}, "
                  f"max {max(pct):.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
