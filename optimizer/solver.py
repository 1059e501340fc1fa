"""HiGHS through Pyomo's persistent interface, with warm re-solves and one normalised status.

Pyomo 6.10 ships two persistent HiGHS interfaces; we use the newer
``pyomo.contrib.solver.solvers.highs.Highs``.  The first solve hands the
Pyomo model to a ``highspy.Highs`` object (``set_instance``); the interface
records, for every bound, right-hand side and cost that depends on a mutable
Param, a small "helper" holding that expression.  Its own re-solve path
re-evaluates every helper expression in Python (about 10 µs each, ~10 ms for
a 48-slot site), which costs ten times the HiGHS solve.

:class:`ParamPush` compiles those same helpers once into sparse affine maps
(value = constant + Σ coefficient × Param) and on each re-solve evaluates
them with numpy and pushes them with a few vectorised HiGHS calls (the
objective offset only if it depends on a Param); HiGHS then
restarts from its previous basis.  The Params remain the model's only input:
change them, call :meth:`PersistentHighs.solve`.  If a helper is not affine
in the Params (checked numerically at compile time), the interface's own
update is used instead, so correctness never depends on the fast path.

Pyomo's interface wraps ``set_instance`` and every solve in
``pyomo.common.tee.capture_output(capture_fd=True)``, which swaps the
*process'* ``sys.stdout``/``sys.stderr`` and file descriptors 1 and 2 for a
buffer while it runs.  In a gateway that plans in a worker thread, every log
line and status line the event loop writes meanwhile goes into that buffer
(lost), and a ``print`` that picked up the swapped stream just before it is
closed fails with "I/O operation on closed file" (seen: ``ems demo`` exiting
1).  We ask HiGHS for no output (``output_flag`` false), so there is nothing
to capture: :func:`_no_capture` replaces it in that module, once, at import.
"""

from __future__ import annotations

import contextlib
import enum
import random
import time
from dataclasses import dataclass
from typing import Any, Iterator

import highspy
import numpy as np
import pyomo.environ as pyo
import pyomo.contrib.solver.solvers.highs as _pyomo_highs
from pyomo.contrib.solver.solvers.highs import Highs
from pyomo.core.expr.numvalue import value
from pyomo.core.expr.numeric_expr import NPV_MaxExpression, NPV_MinExpression
from pyomo.core.expr.visitor import identify_mutable_parameters


@contextlib.contextmanager
def _no_capture(*_args: Any, **_kwargs: Any) -> Iterator[None]:
    """Stands in for Pyomo's ``capture_output`` in its HiGHS interface: leave the process' streams alone."""
    yield


# Why: see the module docstring (process-wide stream swap from a worker thread).
_pyomo_highs.capture_output = _no_capture


class SolveStatus(str, enum.Enum):
    """Solver outcome, independent of the solver's own vocabulary."""

    OPTIMAL = "optimal"
    FEASIBLE = "feasible"          # a solution, not proven optimal (e.g. MILP gap at time limit)
    INFEASIBLE = "infeasible"
    UNBOUNDED = "unbounded"
    TIME_LIMIT = "time_limit"      # stopped with no usable solution
    ERROR = "error"

    @property
    def has_solution(self) -> bool:
        """True when variable values can be read."""
        return self in (SolveStatus.OPTIMAL, SolveStatus.FEASIBLE)


@dataclass(frozen=True, slots=True)
class SolveResult:
    """status; objective [JPY] (None without solution); solve_ms [ms] wall time; message for logs."""

    status: SolveStatus
    objective: float | None
    solve_ms: float
    message: str = ""


def normalise(highs: highspy.Highs) -> SolveStatus:
    """Map HiGHS's model status (and whether it holds a primal solution) to :class:`SolveStatus`."""
    ms = highs.getModelStatus()
    S = highspy.HighsModelStatus
    if ms == S.kOptimal:
        return SolveStatus.OPTIMAL
    if ms == S.kInfeasible:
        return SolveStatus.INFEASIBLE
    if ms in (S.kUnbounded, S.kUnboundedOrInfeasible):
        return SolveStatus.UNBOUNDED
    has_primal = highs.getInfo().primal_solution_status == 2  # 2 = feasible
    if has_primal and ms in (S.kTimeLimit, S.kIterationLimit, S.kSolutionLimit, S.kInterrupt):
        return SolveStatus.FEASIBLE
    if ms in (S.kTimeLimit, S.kIterationLimit):
        return SolveStatus.TIME_LIMIT
    return SolveStatus.ERROR


class NotAffine(Exception):
    """A helper expression is not an affine function of the mutable Params."""


class _Affine:
    """Sparse affine maps target_i = const_i + Σ_k coef·p_k, optionally clamped (max for lower, min for upper)."""

    def __init__(self) -> None:
        self.const: list[float] = []
        self.clamp: list[float] = []
        self.rows: list[int] = []
        self.ks: list[int] = []
        self.coefs: list[float] = []

    def add(self, expr, index: dict[int, int], clamp: float) -> None:
        target = len(self.const)
        const, terms = _compile(expr, index)
        self.const.append(const)
        self.clamp.append(clamp)
        for k, c in terms:
            self.rows.append(target)
            self.ks.append(k)
            self.coefs.append(c)

    def freeze(self) -> None:
        self.const_a = np.array(self.const, dtype=float)
        self.clamp_a = np.array(self.clamp, dtype=float)
        self.rows_a = np.array(self.rows, dtype=np.int64)
        self.ks_a = np.array(self.ks, dtype=np.int64)
        self.coefs_a = np.array(self.coefs, dtype=float)

    def evaluate(self, p: np.ndarray, clamp_with) -> np.ndarray:
        out = self.const_a.copy()
        np.add.at(out, self.rows_a, self.coefs_a * p[self.ks_a])
        return clamp_with(out, self.clamp_a)


def _compile(expr, index: dict[int, int]) -> tuple[float, list[tuple[int, float]]]:
    """(constant, [(param position, coefficient)]) of an expression affine in mutable Params."""
    params = list(identify_mutable_parameters(expr)) if not isinstance(expr, (int, float)) else []
    if not params:
        return float(value(expr)), []
    saved = [p.value for p in params]
    try:
        for p in params:
            p.set_value(0.0)
        const = float(value(expr))
        coefs = []
        for p in params:
            p.set_value(1.0)
            coefs.append(float(value(expr)) - const)
            p.set_value(0.0)
        probe = [random.uniform(-3, 3) for _ in params]
        for p, x in zip(params, probe):
            p.set_value(x)
        expect = const + sum(c * x for c, x in zip(coefs, probe))
        if not np.isfinite(const) or abs(float(value(expr)) - expect) > 1e-9 * (1 + abs(expect)):
            raise NotAffine(str(expr))
    finally:
        for p, v in zip(params, saved):
            p.set_value(v)
    return const, [(index[id(p)], c) for p, c in zip(params, coefs) if c != 0.0]


def _split_clamp(expr, kind) -> tuple[object, float]:
    """Var-bound helpers wrap the Param expression as max(expr, domain lb) / min(expr, domain ub)."""
    if isinstance(expr, kind):
        a, b = expr.args
        return a, float(value(b))
    return expr, (-np.inf if kind is NPV_MaxExpression else np.inf)


class ParamPush:
    """The interface's mutable-Param helpers, compiled to vectorised updates (see the module docstring)."""

    def __init__(self, opt: Highs, model: pyo.ConcreteModel):
        self.params = [pd for comp in model.component_objects(pyo.Param, active=True) if comp.mutable
                       for pd in comp.values()]
        index = {id(pd): k for k, pd in enumerate(self.params)}
        self.highs = opt._solver_model
        var_map, con_map = opt._pyomo_var_to_solver_var_map, opt._pyomo_con_to_solver_con_map
        self.col_lo, self.col_up, self.row_lo, self.row_up, self.cost = (_Affine() for _ in range(5))
        cols, rows, cost_cols = [], [], []
        self.other = []  # helpers we leave to the interface (mutable matrix coefficients)
        for _, helper in opt._mutable_bounds.values():
            lo, lo_clamp = _split_clamp(helper.lower_expr, NPV_MaxExpression)
            up, up_clamp = _split_clamp(helper.upper_expr, NPV_MinExpression)
            self.col_lo.add(lo, index, lo_clamp)
            self.col_up.add(up, index, up_clamp)
            cols.append(var_map[helper.pyomo_var_id])
        for con, helpers in opt._mutable_helpers.items():
            for helper in helpers:
                if hasattr(helper, "lower_expr"):
                    self.row_lo.add(helper.lower_expr, index, -np.inf)
                    self.row_up.add(helper.upper_expr, index, np.inf)
                    rows.append(con_map[con])
                else:
                    self.other.append(helper)
        obj = opt._mutable_objective
        for helper in obj.linear_coefs:
            self.cost.add(helper.expr, index, -np.inf)
            cost_cols.append(var_map[helper.pyomo_var_id])
        # The objective offset: set once by the interface; pushed again only if it depends on Params.
        self.offset = _Affine()
        self.offset.add(obj.constant.expr, index, -np.inf)
        self.offset_moves = bool(self.offset.rows)
        for a in (self.col_lo, self.col_up, self.row_lo, self.row_up, self.cost, self.offset):
            a.freeze()
        self.cols = np.array(cols, dtype=np.int32)
        self.rows = np.array(rows, dtype=np.int32)
        self.cost_cols = np.array(cost_cols, dtype=np.int32)

    def push(self) -> None:
        """Evaluate every helper at the Params' current values and send them to HiGHS."""
        p = np.fromiter((pd.value for pd in self.params), dtype=float, count=len(self.params))
        h = self.highs
        if len(self.cols):
            h.changeColsBounds(len(self.cols), self.cols, self.col_lo.evaluate(p, np.maximum),
                               self.col_up.evaluate(p, np.minimum))
        if len(self.rows):
            h.changeRowsBounds(len(self.rows), self.rows, self.row_lo.evaluate(p, np.maximum),
                               self.row_up.evaluate(p, np.minimum))
        if len(self.cost_cols):
            h.changeColsCost(len(self.cost_cols), self.cost_cols, self.cost.evaluate(p, np.maximum))
        if self.offset_moves:
            h.changeObjectiveOffset(float(self.offset.evaluate(p, np.maximum)[0]))
        for helper in self.other:
            helper.update()


class PersistentHighs:
    """One persistent HiGHS instance bound to one Pyomo model (build once, re-solve many times)."""

    def __init__(self, model: pyo.ConcreteModel, time_limit_s: float = 5.0):
        self.model = model
        self.time_limit_s = time_limit_s
        self._opt = Highs()
        cfg = self._opt.config
        cfg.load_solutions = False
        cfg.raise_exception_on_nonoptimal_result = False
        au = cfg.auto_updates
        # Only parameter values change between runs; skip the expensive structural scans.
        for name in ("check_for_new_or_removed_constraints", "check_for_new_or_removed_vars",
                     "check_for_new_or_removed_params", "check_for_new_objective", "update_constraints",
                     "update_vars", "update_named_expressions", "update_objective"):
            setattr(au, name, False)
        au.update_parameters = True
        self._push: ParamPush | None = None
        self._columns: dict[str, np.ndarray] = {}
        self._solution: np.ndarray | None = None
        self.solves = 0
        self.fast_path = False

    def solve(self) -> SolveResult:
        """Solve: the first call hands the model to HiGHS; later calls push the Params and warm-start."""
        tick = time.perf_counter()
        self._solution = None
        try:
            if self._push is None:
                self._opt.solve(self.model, time_limit=self.time_limit_s, solver_options={"output_flag": False})
                self._after_first_solve()
            else:
                self._push.push()
                highs = self._opt._solver_model
                # HiGHS's time limit counts the object's total run time over all solves.
                highs.setOptionValue("time_limit", highs.getRunTime() + float(self.time_limit_s))
                highs.run()
            highs = self._opt._solver_model
            status = normalise(highs)
            objective = None
            if status.has_solution:
                self._solution = np.asarray(highs.getSolution().col_value, dtype=float)
                objective = float(highs.getInfo().objective_function_value)
        except Exception as exc:  # a solver library failure must not stop the plan
            return SolveResult(SolveStatus.ERROR, None, (time.perf_counter() - tick) * 1e3,
                               f"{type(exc).__name__}: {exc}")
        self.solves += 1
        return SolveResult(status, objective, (time.perf_counter() - tick) * 1e3,
                           str(self._opt._solver_model.getModelStatus()).split(".")[-1])

    def _after_first_solve(self) -> None:
        """Index the columns by Var and compile the Param helpers (or keep the interface's own update)."""
        opt, var_map = self._opt, self._opt._pyomo_var_to_solver_var_map
        for var in self.model.component_objects(pyo.Var, active=True):
            self._columns[var.local_name] = np.array([var_map[id(v)] for v in var.values()], dtype=np.int64)
        try:
            self._push = ParamPush(opt, self.model)
            self.fast_path = True
        except (NotAffine, AttributeError):  # AttributeError: another Pyomo version's internals
            self._push = _InterfaceUpdate(opt)

    def values(self, var_name: str) -> np.ndarray:
        """Solution values of the Var component ``var_name`` in index order (model units)."""
        if self._solution is None:
            raise RuntimeError("no solution to read")
        return self._solution[self._columns[var_name]]


class _InterfaceUpdate:
    """Fallback: the interface's own per-helper update."""

    def __init__(self, opt: Highs):
        self._opt = opt

    def push(self) -> None:
        self._opt.update_parameters()
