"""Plan a site: build → solve → extract, with warm re-solves (MPC) and an always-present fallback.

:class:`SitePlanner` keeps one built model and its persistent solver per
shape (slot count, slot length, efficiencies, self-discharge), so the daemon's
re-plan every slot only changes parameter values.  :func:`plan_site` is the
one-shot form.  Whatever happens, a :class:`~optimizer.plan.Plan` comes back:
a solver failure or time-out yields the rule-based plan with
``fallback=True`` and the reason in ``message``.
"""

from __future__ import annotations

import time
from datetime import datetime
from typing import Sequence

from optimizer.data import RunData, load_data, prepare_run
from optimizer.extract import assemble_plan, schedule_from_solver, simultaneous_slots
from optimizer.inputs import SiteForecast
from optimizer.model import build_site_model
from optimizer.plan import Plan, PlanStatus
from optimizer.reserve import SafetyPolicy
from optimizer.rule import rule_schedule
from optimizer.settings import Commitment, PlanSettings
from optimizer.solver import PersistentHighs, SolveStatus


class _Built:
    """One model with its persistent solver."""

    def __init__(self, key: tuple, milp: bool, time_limit_s: float, solver_factory):
        n, slot_h, eta_c, eta_d, sigma = key
        tick = time.perf_counter()
        self.model = build_site_model(n, slot_h, eta_c, eta_d, sigma, milp=milp)
        self.build_ms = (time.perf_counter() - tick) * 1e3
        self.solver = solver_factory(self.model, time_limit_s)


class SitePlanner:
    """Re-usable planner for one site (MPC: call :meth:`plan` every slot; the model is re-used).

    ``solver_factory`` lets tests inject a failing solver; it receives the
    model and the time limit [s] and returns an object with ``solve() ->
    SolveResult`` and ``values(var_name) -> ndarray`` (like PersistentHighs).
    """

    def __init__(self, policy: SafetyPolicy, settings: PlanSettings = PlanSettings(), site_id: str = "",
                 solver_factory=PersistentHighs):
        self.policy = policy
        self.settings = settings
        self.site_id = site_id
        self._solver_factory = solver_factory
        self._lp: dict[tuple, _Built] = {}
        self._milp: dict[tuple, _Built] = {}

    def _key(self, forecast: SiteForecast) -> tuple:
        p = self.policy
        return (forecast.n, forecast.slot_h, p.charge_efficiency, p.discharge_efficiency,
                self.settings.self_discharge_per_h)

    def _get(self, cache: dict, key: tuple, milp: bool) -> tuple[_Built, float]:
        """The built model for ``key`` and the build time [ms] spent now (0 when re-used)."""
        built = cache.get(key)
        if built is not None:
            return built, 0.0
        built = _Built(key, milp, self.settings.time_limit_s, self._solver_factory)
        cache.clear()  # one shape at a time: a planner follows one site
        cache[key] = built
        return built, built.build_ms

    def plan(self, forecast: SiteForecast, soc_pct: float, mode: str, *, now: datetime | None = None,
             commitments: Sequence[Commitment] = (), event_time: datetime | None = None) -> Plan:
        """Plan ``forecast``'s horizon from the measured ``soc_pct`` [%] in ``mode``.

        now: creation time (default: the first slot's start); the plan expires
        ``settings.valid_for_slots`` slots later.  commitments: dispatch
        targets (vpp only).  event_time: disaster_reserve only, the moment
        the full reserve must be there (None: as fast as the limits allow).
        Raises ValueError for a bad mode or SoC; never for a solver problem.
        """
        now = now or forecast.times[0]
        if now.tzinfo is None:
            raise ValueError("now must be timezone-aware")
        run = prepare_run(forecast, self.policy, soc_pct, mode, self.settings, commitments, event_time)
        key = self._key(forecast)
        built, build_ms = self._get(self._lp, key, milp=False)
        tick = time.perf_counter()
        load_data(built.model, run)
        build_ms += (time.perf_counter() - tick) * 1e3
        result = built.solver.solve()
        solve_ms = result.solve_ms
        if not result.status.has_solution:
            return self._fallback(run, now, build_ms, solve_ms, f"LP {result.status.value}: {result.message}")
        schedule = schedule_from_solver(built.solver)
        status = PlanStatus.OPTIMAL if result.status == SolveStatus.OPTIMAL else PlanStatus.FEASIBLE
        objective = result.objective
        message = ""
        both = simultaneous_slots(schedule, self.settings.simultaneous_tol_w)
        if both:
            # The LP found it worth burning energy (e.g. SoC above the band, negative prices).
            milp, milp_build_ms = self._get(self._milp, key, milp=True)
            load_data(milp.model, run)
            mres = milp.solver.solve()
            build_ms += milp_build_ms
            solve_ms += mres.solve_ms
            if not mres.status.has_solution:
                return self._fallback(run, now, build_ms, solve_ms,
                                      f"MILP {mres.status.value} after simultaneous flows in slots {both[:5]}")
            schedule = schedule_from_solver(milp.solver)
            status = PlanStatus.OPTIMAL_MILP if mres.status == SolveStatus.OPTIMAL else PlanStatus.FEASIBLE
            objective = mres.objective
            message = f"LP had simultaneous flows in slots {both[:5]}; solved as MILP"
        return assemble_plan(schedule, run, status, site_id=self.site_id, now=now, objective=objective,
                             build_ms=build_ms, solve_ms=solve_ms, message=message)

    def _fallback(self, run: RunData, now: datetime, build_ms: float, solve_ms: float, why: str) -> Plan:
        """The rule-based plan, flagged as such."""
        return assemble_plan(rule_schedule(run), run, PlanStatus.FALLBACK, site_id=self.site_id, now=now,
                             objective=None, build_ms=build_ms, solve_ms=solve_ms,
                             message=f"rule-based fallback: {why}")


def plan_site(policy: SafetyPolicy, forecast: SiteForecast, soc_pct: float, mode: str, *,
              settings: PlanSettings = PlanSettings(), now: datetime | None = None,
              commitments: Sequence[Commitment] = (), event_time: datetime | None = None,
              site_id: str = "") -> Plan:
    """One-shot plan (cold build + solve); keep a :class:`SitePlanner` for warm re-solves."""
    return SitePlanner(policy, settings, site_id).plan(
        forecast, soc_pct, mode, now=now, commitments=commitments, event_time=event_time)

