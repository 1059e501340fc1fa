"""Pure computation: forecasts and prices in, schedules out (Pyomo + HiGHS).  No I/O, no clocks.

Modules (import what you need; this package file imports nothing, so the
real-time guard's ``optimizer.reserve`` stays light):

* ``reserve``   SafetyPolicy and the reserve formula (shared with the guard)
* ``inputs``    SiteForecast: validated slots of prices and forecasts
* ``settings``  PlanSettings, Commitment, the named penalty constants
* ``planner``   plan_site(...) -> Plan; SitePlanner for warm MPC re-solves
* ``plan``      Plan (setpoint_at, expires_at, fallback, status), PlanExpired
* ``model`` / ``data`` / ``solver`` / ``extract``   build → solve → extract
* ``modes``     per-mode limits, ramped reserve floors, terminal value
* ``rule``      the rule-based plan (fallback and baseline)
* ``forecast``  clear-sky PV, configured and learnt load profiles
* ``prices``    JEPX spot CSV parser, tariffs, synthetic spot prices
* ``fleet``     allocate(...) an aggregator request across vpp sites
* ``backtest``  MPC vs perfect foresight vs rule on a simulated year
* ``highs_direct`` / ``lpbuild``   the same LP straight in highspy
"""
