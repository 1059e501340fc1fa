"""How a slot of the plan is carried out in real time, when the actual load and PV differ from the forecast.

One pure function shared by the edge daemon (``ems/gateway/planning.py``) and the
economic backtest (``optimizer/backtest.py``), so the backtest measures the
execution the daemon really does.
"""

from __future__ import annotations

#: Planned import below this [W] counts as "the plan meant not to import".
NO_IMPORT_W = 1.0


def self_use_setpoint(plan_w: float, planned_import_w: float, planned_export_w: float, planned_net_w: float,
                      actual_net_w: float) -> float:
    """Battery setpoint [W] (+ discharge) for the plan's current slot, given the actual net load.

    plan_w: the plan's battery power; planned_import_w / planned_export_w:
    the plan's grid exchange [W, both ≥ 0]; planned_net_w / actual_net_w:
    load − PV as forecast and as measured [W].  error = actual − planned net
    load.  The grid exchange if the plan's battery power were kept is
    ``actual_net_w − plan_w`` (+ import).

    * error ≤ 0 (more PV or less load than forecast): the battery charges
      (or discharges less) by just the export beyond the planned export, the
      energy that would otherwise be sold at the low spot price.  Where the
      plan imports, the smaller import is already the saving: charging more
      from the grid than the plan chose would only add losses and wear (the
      backtest showed this costing ~2 % of the perfect-foresight savings).
    * error > 0 and the plan meant not to import: the battery covers the
      extra load, but only until the grid flow reaches zero: it never
      discharges to keep up a planned export (that would sell stored energy
      at the low midday price).
    * error > 0 while the plan imports anyway: keep the plan; the grid takes
      the error at the price the plan already accepted.

    The guard still clips the result to the safety limits and the reserve.
    """
    error = actual_net_w - planned_net_w
    if error <= 0:
        export_if_kept = max(0.0, plan_w - actual_net_w)
        extra_export = export_if_kept - max(0.0, planned_export_w)
        return plan_w - min(-error, extra_export) if extra_export > 0 else plan_w
    if planned_import_w < NO_IMPORT_W:
        return min(plan_w + error, max(plan_w, actual_net_w))
    return plan_w
