"""Disaster drills: scenarios as YAML, played through the whole system in accelerated time, with a report.

* :mod:`ems.drill.scenario` — the scenario file (events, promises, timing), validated with file/field errors;
* :mod:`ems.drill.runner` — runs one on :class:`ems.runtime.FleetRuntime` (JMA XML, staff HTTP, faults);
* :mod:`ems.drill.promises` — per-hall figures and the promises checked (exit status);
* :mod:`ems.drill.report` / :mod:`ems.drill.plots` — summary.md/html, results.json, PNG plots;
* :mod:`ems.drill.jmagen`, :mod:`ems.drill.staff`, :mod:`ems.drill.recorder` — the pieces they use.

Command line: ``ems drill SCENARIO --config config/fleet.yaml --report DIR`` (:mod:`ems.drill_cli`).
"""
