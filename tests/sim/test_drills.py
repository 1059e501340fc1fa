"""The shipped drills end to end, in accelerated time, through every production path.

Each scenario runs once per module (a fixture) and several tests look at its
outcome: the promises, who switched what, what the halls did, the report.
About 80 s (typhoon), 45 s (earthquake) and 40 s (hostile) of wall time.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from ems.sim.drill.runner import run_drill
from ems.sim.drill.scenario import load_scenario
from tests.sim.conftest import SCENARIOS
from tests.servers import require_binary

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def run(name: str, fleet, tmp):
    scenario = load_scenario(SCENARIOS / f"{name}.yaml", fleet)
    outcome = asyncio.run(run_drill(scenario, fleet, tmp / "report", state_dir=tmp / "state"))
    return outcome, tmp / "report"


def explain(outcome) -> str:
    return "\n".join(f"{c.promise} {c.subject}: {c.detail}" for c in outcome.broken) + \
        "\n" + "\n".join(outcome.observations)


@pytest.fixture(scope="module")
def typhoon(fleet, tmp_path_factory):
    require_binary("mosquitto", "mosquitto")
    return run("typhoon", fleet, tmp_path_factory.mktemp("typhoon"))


@pytest.fixture(scope="module")
def earthquake(fleet, tmp_path_factory):
    return run("earthquake", fleet, tmp_path_factory.mktemp("earthquake"))


@pytest.fixture(scope="module")
def hostile(fleet, tmp_path_factory):
    # A SIGKILLed Mosquitto keeps its sessions (autosave); the embedded broker would forget them.
    require_binary("mosquitto", "mosquitto")
    return run("hostile", fleet, tmp_path_factory.mktemp("hostile"))


# -- typhoon --------------------------------------------------------------------------------------------
def test_typhoon_keeps_every_promise(typhoon):
    outcome, _ = typhoon
    assert outcome.exit_code == 0, explain(outcome)
    promises = {c.promise for c in outcome.checks}
    assert {"critical_load", "switch_acked", "telemetry", "disaster_held", "no_crash"} <= promises
    assert outcome.telemetry.lost == 0 and outcome.telemetry.produced > 10_000


def test_typhoon_forecast_switches_every_hall_before_any_warning(typhoon, fleet):
    outcome, _ = typhoon
    first = {}
    for c in outcome.commands:
        if c.mode == "disaster_reserve":
            first.setdefault(c.site, c)
    assert set(first) == {s.id for s in fleet.sites}
    warnings_at = outcome.scenario.time_of(12)
    for c in first.values():  # the typhoon telegram at 06:00, not the warnings at noon nor staff
        assert c.actor == "jma-warning-service" and "台風第14号" in c.reason and c.sent_at < warnings_at, c
    # Every hall holds H_disaster by the forecast arrival of storm-force wind (or the report says why not).
    arrival = [c for c in outcome.checks if c.promise == "reserve_by_arrival"]
    # Every example hall can reach its reserve before the forecast arrival, so "unreachable" (a kept promise
    # for a hall that could not have) would hide a regression here.
    assert len(arrival) == 14 and all(c.ok and not c.detail.startswith("unreachable") for c in arrival), \
        explain(outcome) + "\n" + "\n".join(f"{c.subject}: {c.detail}" for c in arrival)
    returns = [c for c in outcome.commands if c.mode == "vpp"]
    assert sorted(c.site for c in returns) == sorted(s.id for s in fleet.sites)
    assert all(c.status == "ok" and c.delay_wall_s < 30 for c in outcome.commands)


def test_typhoon_halls_reach_the_reserve_island_and_shed(typhoon):
    outcome, _ = typhoon
    for h in outcome.halls.values():
        assert h.time_to_reserve_h is not None and h.time_to_reserve_h <= 6, h.site
        assert h.final_mode == "vpp", h.site
    outages = [o for h in outcome.halls.values() for o in h.outages]
    assert len(outages) == 7
    assert {round(o.length_h) for o in outages} == {3, 6, 8, 12, 48}
    for o in outages:
        assert o.guaranteed_h == 12, (o.site, o.basis)
        assert o.served_h >= min(o.length_h, 12) - 0.3, o
        assert o.islanded_after_min is not None, o.site  # the daemon saw the outage
    two_days = next(o for o in outages if o.length_h > 40)
    assert two_days.unserved_wh > 0 and two_days.shed_wh > 10_000  # a 2-day outage outlasts the promise
    assert sum(o.shed_wh for o in outages) > two_days.shed_wh


def test_typhoon_halls_learn_their_load_from_what_they_measure(typhoon, fleet):
    """Every hall's forecaster kept the slots it measured (in accelerated time too), loads in a sane range."""
    from ems.gateway.history_store import history_path, load_history

    _, report = typhoon
    for site in fleet.sites:
        rows, problems = load_history(history_path(report.parent / "state" / "halls" / site.id, site.id))
        assert not problems and len(rows) >= 24, (site.id, len(rows), problems)
        loads = [r[1] for r in rows if r[1] == r[1]]
        assert 0 < min(loads) and max(loads) < 3 * site.loads.peak_w, (site.id, min(loads), max(loads))


def test_typhoon_report(typhoon):
    outcome, report = typhoon
    for name in ("summary.md", "summary.html", "results.json", "fleet_soc.png", "backup_hours.png"):
        assert (report / name).stat().st_size > 1000, name
    md = (report / "summary.md").read_text(encoding="utf-8")
    assert "PASSED" in md and "| hall-02 |" in md and "jma-warning-service" in md
    assert "Reserve by the typhoon's forecast arrival" in md


# -- earthquake -----------------------------------------------------------------------------------------
def test_earthquake_every_hall_carries_its_vpp_reserve(earthquake, fleet):
    outcome, _ = earthquake
    others = [c for c in outcome.broken if c.promise != "critical_load"]
    assert not others, explain(outcome)
    # No warning: JMA's intensity report alone switched the halls of 鳥取市 (6弱) and 岩美町 (5強), at once.
    quake = outcome.scenario.time_of(21.5)
    switched = {c.site: c for c in outcome.commands if c.mode == "disaster_reserve"}
    assert set(switched) == {"hall-01", "hall-02", "hall-07"}
    for c in switched.values():
        assert c.actor == "jma-warning-service" and "震源・震度に関する情報" in c.reason and c.status == "ok"
        assert (c.sent_at - quake).total_seconds() < 1800, c  # within the poll period at this speed
    assert "震度6弱 in 鳥取市 (3120100)" in switched["hall-01"].reason
    outages = [o for h in outcome.halls.values() for o in h.outages]
    assert {o.site for o in outages} == {s.id for s in fleet.sites}
    for o in outages:
        assert o.guaranteed_h == 4 and "H_vpp" in o.basis
        assert o.served_h >= 0.8 * min(o.length_h, 4), o
        if o.start.astimezone(timezone_jst()).hour == 4:  # the dawn wave: lighter load, sunrise
            assert o.ok, o
    # The late-evening wave strikes after the evening peak: batteries are near their VPP reserve.
    evening = [o for o in outages if o.start.astimezone(timezone_jst()).hour == 21]
    assert evening and all(o.hours_left_at_start < 8 for o in evening)


def test_earthquake_keeps_h_vpp(earthquake):
    """The promise the system keeps: H_vpp hours of the configured critical load, so every outage is carried
    for at least H_vpp within the drill's time resolution and the shelter's load variation (5 % of the hours
    owed, ems.sim.drill.promises.LOAD_VARIATION_SHARE).  Strict: it used to be a non-strict xfail that passed
    either way."""
    outcome, _ = earthquake
    assert outcome.exit_code == 0, explain(outcome)


def timezone_jst():
    from datetime import timezone

    return timezone(timedelta(hours=9))


# -- hostile --------------------------------------------------------------------------------------------
def test_hostile_keeps_its_promises(hostile):
    outcome, _ = hostile
    assert outcome.exit_code == 0, explain(outcome)


def test_hostile_disaster_mode_survives_broker_and_central_outages(hostile):
    outcome, _ = hostile
    marks = {m.kind: m.t for m in outcome.marks}
    assert {"broker_down", "broker_up", "central_restart", "battery_failure"} <= set(marks)
    for site in ("hall-01", "hall-02"):
        tr = outcome.traces[site]
        held = [r for t, r in zip(tr.t, tr.requested) if marks["broker_down"] <= t <= marks["central_restart"]
                + timedelta(hours=2)]
        assert held and set(held) == {"disaster_reserve"}, site
    checks = {(c.promise, c.subject): c.ok for c in outcome.checks}
    assert all(checks[("disaster_held", s)] for s in ("hall-01", "hall-02", "hall-03"))


def test_hostile_warning_during_broker_outage_is_acked_when_it_returns(hostile):
    outcome, _ = hostile
    marks = {m.kind: m.t for m in outcome.marks}
    jma = [c for c in outcome.commands if c.actor == "jma-warning-service"]
    assert sorted(c.site for c in jma) == ["hall-03", "hall-04", "hall-05"]
    for c in jma:
        assert marks["broker_down"] < c.sent_at < marks["broker_up"], c
        assert c.status == "ok" and c.acked_at >= marks["broker_up"], c


def test_hostile_dead_battery_raises_an_alarm_and_goes_safe(hostile):
    outcome, _ = hostile
    tr = outcome.traces["hall-09"]
    after = [i for i, t in enumerate(tr.t) if t > [m.t for m in outcome.marks if m.kind == "battery_failure"][0]
             + timedelta(hours=1)]
    assert after and all("device_fault" in tr.alarms[i] for i in after)
    assert all(tr.mode[i] == "safe" for i in after)
    assert any(a["site"] == "hall-09" and a["code"] == "device_fault" for a in outcome.central_alarms)
    assert outcome.halls["hall-09"].battery_failed


def test_hostile_nothing_crashed(hostile):
    outcome, _ = hostile
    assert outcome.liveness["dead_tasks"] == [] and outcome.liveness["stalled_halls"] == []
    assert outcome.liveness["central_ok"] and not outcome.liveness.get("stop_timeout")
    assert not [o for o in outcome.observations if o.startswith("traceback")], outcome.observations
    assert outcome.telemetry.lost == 0
