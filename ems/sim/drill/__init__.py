"""Disaster drills: scenarios as YAML, played through the whole system in accelerated time, with a report.

* :mod:`ems.sim.drill.scenario` — the scenario file (events, promises, timing), validated with file/field errors;
* :mod:`ems.sim.drill.runner` — runs one on :class:`ems.sim.runtime.FleetRuntime` (JMA XML, staff HTTP, faults);
* :mod:`ems.sim.drill.promises` — per-hall figures and the promises checked (exit status);
* :mod:`ems.sim.drill.report` / :mod:`ems.sim.drill.plots` — summary.md/html, results.json, PNG plots;
* :mod:`ems.sim.drill.jmagen`, :mod:`ems.sim.drill.staff`, :mod:`ems.sim.drill.recorder` — the pieces they use.

Command line: ``ems drill SCENARIO --config config/fleet.yaml --report DIR`` (:mod:`ems.cli.drill`).
"""
