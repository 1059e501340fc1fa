"""Mode state machine: requests, safe on bad data, islanding with debounce, recovery."""

from __future__ import annotations

import json
import math
from datetime import datetime

import pytest

from devices.readings import BatteryState
from ems.config import ControlSpec
from ems.gateway.modes import (
    REQUESTABLE, Mode, ModeChange, ModeMachine, ModeRequest, ModeRequestError, ModeTiming,
    default_request,
)

from .helpers import T0, at, snap

TIMING = ModeTiming(stale_after_s=5.0, bad_data_cycles=5, recover_cycles=3,
                    grid_loss_cycles=2, grid_return_s=10.0, max_power_w=5000.0)


def req(mode="vpp", t=0.0, by="operator-a", reason="normal operation", **kw) -> ModeRequest:
    return ModeRequest(mode, reason, by, at(t), **kw)


def machine(request: ModeRequest | None = None, timing: ModeTiming = TIMING) -> ModeMachine:
    return ModeMachine("hall-01", request or req(), timing, T0)


def run(m: ModeMachine, start: float, end: float, **snap_kw) -> list[ModeChange]:
    """One cycle per second from start to end (inclusive); all changes."""
    out: list[ModeChange] = []
    t = start
    while t <= end + 1e-9:
        out += m.update(snap(t=t, **snap_kw))
        t += 1.0
    return out


def started(request: ModeRequest | None = None) -> ModeMachine:
    m = machine(request)
    run(m, 0, 2)
    assert m.state.effective is m.requested.mode
    return m


# -- requests ---------------------------------------------------------------------

@pytest.mark.parametrize("kw, message", [
    (dict(mode="turbo"), "unknown mode 'turbo'"),
    (dict(mode="safe"), "'safe' cannot be requested"),
    (dict(mode=Mode.ISLANDED), "'islanded' cannot be requested"),
    (dict(mode="manual"), "needs setpoint_w"),
    (dict(mode="manual", setpoint_w=math.nan), "finite number"),
    (dict(mode="manual", setpoint_w=math.inf), "finite number"),
    (dict(mode="manual", setpoint_w="3000"), "finite number"),
    (dict(mode="manual", setpoint_w=True), "finite number"),
    (dict(mode="vpp", setpoint_w=1000.0), "only allowed with mode 'manual'"),
    (dict(reason="  "), "needs a reason"),
    (dict(by=""), "needs issued_by"),
])
def test_invalid_requests_are_refused_with_a_clear_error(kw, message):
    with pytest.raises(ModeRequestError, match=message):
        req(**kw)


def test_naive_issue_time_is_refused():
    with pytest.raises(ModeRequestError, match="timezone-aware"):
        ModeRequest("vpp", "x", "y", datetime(2025, 1, 1))


def test_request_round_trips_through_dict():
    r = req("manual", setpoint_w=-2500, command_id="cmd-7")
    assert r.mode is Mode.MANUAL and r.setpoint_w == -2500.0
    back = ModeRequest.from_dict(json.loads(json.dumps(r.to_dict())))
    assert back == r


@pytest.mark.parametrize("data, message", [
    ([], "JSON object"),
    ({"mode": "vpp", "reason": "r", "issued_by": "x"}, "issued_at is missing"),
    ({"mode": "vpp", "reason": "r", "issued_by": "x", "issued_at": "yesterday"}, "ISO 8601"),
    ({"reason": "r", "issued_by": "x", "issued_at": T0.isoformat()}, "mode is missing"),
    ({"mode": "vpp", "reason": "r", "issued_by": "x", "issued_at": T0.isoformat(), "ttl": 3}, "unknown field"),
])
def test_bad_request_dicts(data, message):
    with pytest.raises(ModeRequestError, match=message):
        ModeRequest.from_dict(data)


def test_requestable_modes():
    assert set(REQUESTABLE) == {Mode.VPP, Mode.DISASTER_RESERVE, Mode.MANUAL}
    assert default_request(T0).mode is Mode.VPP and default_request(T0).reason == "default at first start"


# -- start and data health ---------------------------------------------------------

def test_starts_safe_and_follows_the_request_after_good_data():
    m = machine(req("disaster_reserve", by="city-staff", reason="typhoon warning"))
    assert m.state.effective is Mode.SAFE and m.start_change.from_mode is None
    changes = run(m, 0, 1)
    assert changes == [] and m.state.effective is Mode.SAFE
    changes = m.update(snap(t=2))
    assert [(c.from_mode, c.to_mode, c.layer) for c in changes] == [
        (Mode.SAFE, Mode.DISASTER_RESERVE, "effective")]
    assert changes[0].requested_by == "city-staff" and "typhoon warning" in changes[0].reason
    assert m.state.since == at(2)


def test_stale_data_goes_safe_at_once_and_recovers_to_the_previous_mode():
    m = started(req("disaster_reserve"))
    changes = m.update(snap(t=10, age_s=5.5))
    assert [c.to_mode for c in changes] == [Mode.SAFE]
    assert "s old" in changes[0].reason and changes[0].requested_by == "system"
    assert m.state.effective is Mode.SAFE and m.requested.mode is Mode.DISASTER_RESERVE
    assert run(m, 11, 12) == []  # two good cycles are not yet enough
    changes = m.update(snap(t=13))
    assert [(c.from_mode, c.to_mode) for c in changes] == [(Mode.SAFE, Mode.DISASTER_RESERVE)]
    assert "recovered from safe" in changes[0].reason


def test_data_just_under_the_age_limit_is_fine():
    m = started()
    assert m.update(snap(t=10, age_s=4.9)) == []


def test_future_stamped_data_is_stale():
    m = started()
    changes = m.update(snap(t=10, age_s=-60))
    assert changes and changes[0].to_mode is Mode.SAFE


@pytest.mark.parametrize("bad", [dict(no_battery=True), dict(no_meter=True), dict(soc=140.0),
                                 dict(battery_w=math.nan), dict(battery_w=50000.0),
                                 dict(meter_w=math.inf)])
def test_missing_or_implausible_data_goes_safe_after_the_configured_cycles(bad):
    m = started()
    assert run(m, 10, 13, **bad) == []  # 4 bad cycles: tolerated
    changes = m.update(snap(t=14, **bad))  # the 5th is not
    assert [c.to_mode for c in changes] == [Mode.SAFE]
    assert "for 5 cycles" in changes[0].reason
    run(m, 15, 17)
    assert m.state.effective is Mode.VPP


def test_a_single_good_cycle_resets_the_bad_count():
    m = started()
    run(m, 10, 13, no_meter=True)
    run(m, 14, 14)
    assert run(m, 15, 18, no_meter=True) == []
    assert m.state.effective is Mode.VPP


def test_battery_fault_goes_safe_at_once():
    m = started()
    changes = m.update(snap(t=5, bat_kw=dict(state=BatteryState.FAULT, fault_code=42)))
    assert changes[0].to_mode is Mode.SAFE and "fault" in changes[0].reason and "42" in changes[0].reason


# -- islanding -------------------------------------------------------------------

def test_grid_loss_is_debounced_and_return_must_be_stable():
    m = started(req("vpp"))
    assert m.update(snap(t=10, grid_ok=False)) == []  # one cycle: a glitch
    assert m.update(snap(t=11)) == []
    assert m.update(snap(t=12, grid_ok=False)) == []
    changes = m.update(snap(t=13, grid_ok=False))
    assert [(c.from_mode, c.to_mode) for c in changes] == [(Mode.VPP, Mode.ISLANDED)]
    assert "grid lost" in changes[0].reason and m.state.grid_lost
    # grid back for 5 s, then lost again: the wait starts over
    assert run(m, 14, 19) == []
    assert m.update(snap(t=20, grid_ok=False)) == []
    assert run(m, 21, 30) == []  # 9 s stable
    assert m.state.effective is Mode.ISLANDED and "grid back" in m.state.reason
    changes = m.update(snap(t=31))  # 10 s stable
    assert [(c.from_mode, c.to_mode) for c in changes] == [(Mode.ISLANDED, Mode.VPP)]
    assert not m.state.grid_lost


def test_stale_meter_restarts_the_grid_return_wait():
    m = started()
    run(m, 10, 11, grid_ok=False)
    assert m.state.effective is Mode.ISLANDED
    run(m, 12, 18)
    m.update(snap(t=19, age_s=6))  # stale: safe, and the grid's stability is unknown
    assert m.state.effective is Mode.SAFE
    run(m, 20, 22)  # data good again, grid ok since 20
    assert m.state.effective is Mode.ISLANDED
    run(m, 23, 29)
    assert m.state.effective is Mode.ISLANDED
    run(m, 30, 30)
    assert m.state.effective is Mode.VPP


def test_safe_takes_precedence_over_islanded():
    m = started()
    run(m, 10, 11, grid_ok=False)
    changes = m.update(snap(t=12, grid_ok=False, bat_kw=dict(fault_code=3)))
    assert [(c.from_mode, c.to_mode) for c in changes] == [(Mode.ISLANDED, Mode.SAFE)]
    changes = run(m, 13, 15, grid_ok=False)
    assert [(c.from_mode, c.to_mode) for c in changes] == [(Mode.SAFE, Mode.ISLANDED)]


def test_request_while_islanded_waits_for_the_grid():
    m = started()
    run(m, 10, 11, grid_ok=False)
    changes = m.request(req("disaster_reserve", t=12, by="city-staff", reason="aftershocks",
                            command_id="c-1"), at(12))
    assert [(c.layer, c.from_mode, c.to_mode) for c in changes] == [
        ("requested", Mode.VPP, Mode.DISASTER_RESERVE)]
    assert changes[0].command_id == "c-1" and changes[0].requested_by == "city-staff"
    assert m.state.effective is Mode.ISLANDED and m.state.requested.mode is Mode.DISASTER_RESERVE
    changes = run(m, 13, 23)
    assert [(c.from_mode, c.to_mode) for c in changes] == [(Mode.ISLANDED, Mode.DISASTER_RESERVE)]


# -- requests on a running machine --------------------------------------------------

def test_request_takes_effect_at_once_when_nothing_overrides_it():
    m = started()
    changes = m.request(req("manual", t=5, setpoint_w=-1500.0, reason="test charge"), at(5))
    assert [(c.layer, c.to_mode) for c in changes] == [("requested", Mode.MANUAL), ("effective", Mode.MANUAL)]
    assert "-1500 W" in changes[0].reason
    assert m.state.manual_setpoint_w == -1500.0
    changes = m.request(req("manual", t=6, setpoint_w=2000.0, reason="test discharge"), at(6))
    assert [c.layer for c in changes] == ["requested"]  # same mode: no effective change
    assert m.state.manual_setpoint_w == 2000.0 and m.state.since == at(5)
    with pytest.raises(ModeRequestError):
        m.request({"mode": "vpp"}, at(7))  # type: ignore[arg-type]


def test_disaster_mode_never_lapses_by_itself():
    m = started(req("disaster_reserve", by="city-staff", reason="typhoon"))
    run(m, 10, 12, age_s=30)        # a comms outage
    run(m, 13, 14, grid_ok=False)   # a grid outage
    run(m, 15, 40)
    for day in range(1, 4):
        run(m, day * 86400, day * 86400 + 2)
    assert m.state.effective is Mode.DISASTER_RESERVE
    assert m.requested.reason == "typhoon" and m.requested.issued_by == "city-staff"


def test_state_is_json_ready():
    m = started(req("manual", setpoint_w=100.0))
    d = json.loads(json.dumps(m.state.to_dict()))
    assert d["effective"] == "manual" and d["requested"]["setpoint_w"] == 100.0
    assert d["since"] == at(2).isoformat()
    change = m.request(req("vpp", t=3), at(3))[-1]
    assert json.loads(json.dumps(change.to_dict()))["from"] == "manual"


# -- timing -------------------------------------------------------------------------

def test_timing_from_control_spec():
    t = ModeTiming.from_control(ControlSpec(cycle_s=0.5, stale_cycles=4), max_power_w=6000.0,
                                grid_return_s=30.0)
    assert t.stale_after_s == 2.0 and t.bad_data_cycles == 4 and t.grid_return_s == 30.0


@pytest.mark.parametrize("kw", [dict(stale_after_s=0), dict(bad_data_cycles=0),
                                dict(recover_cycles=0), dict(grid_loss_cycles=0),
                                dict(grid_return_s=-1)])
def test_bad_timing_is_refused(kw):
    base = dict(stale_after_s=5.0, bad_data_cycles=5)
    base.update(kw)
    with pytest.raises(ValueError):
        ModeTiming(**base)


def test_machine_needs_aware_time():
    with pytest.raises(ValueError):
        ModeMachine("hall-01", req(), TIMING, datetime(2025, 1, 1))
