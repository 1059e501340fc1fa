"""Alarm set: raise/clear by code, de-duplicated, with history."""

from __future__ import annotations

import json
from datetime import datetime
from types import SimpleNamespace

import pytest

from ems.gateway.alarms import SAFETY_RULE_UNMET, STALE_DATA, AlarmSet, Severity, sync_clip_alarm

from .helpers import at


def test_raise_is_deduplicated_and_clear_ends_it():
    a = AlarmSet("hall-01")
    first = a.raise_(STALE_DATA, Severity.WARNING, "meter data 7 s old", at(0))
    assert first is not None and first.active and first.site == "hall-01"
    assert a.raise_(STALE_DATA, Severity.WARNING, "meter data 8 s old", at(1)) is None
    assert [x.message for x in a.active()] == ["meter data 7 s old"]
    cleared = a.clear(STALE_DATA, at(5))
    assert cleared.id == first.id and cleared.cleared_at == at(5) and not cleared.active
    assert a.clear(STALE_DATA, at(6)) is None and a.active() == []
    again = a.raise_(STALE_DATA, "warning", "again", at(7))
    assert again.id != first.id and a.history() == [cleared]


def test_sync_and_json():
    a = AlarmSet("hall-01")
    assert a.sync("x", True, Severity.CRITICAL, "m", at(0)).code == "x"
    assert a.sync("x", True, Severity.CRITICAL, "m", at(1)) is None
    assert a.is_active("x")
    d = json.loads(json.dumps(a.sync("x", False, Severity.CRITICAL, "m", at(2)).to_dict()))
    assert d["severity"] == "critical" and d["cleared_at"] == at(2).isoformat()


def test_bad_input():
    a = AlarmSet("hall-01")
    with pytest.raises(ValueError):
        a.raise_("x", Severity.INFO, "m", datetime(2025, 1, 1))
    with pytest.raises(ValueError):
        a.raise_("x", "loud", "m", at(0))


def test_history_is_bounded():
    a = AlarmSet("hall-01", history=3)
    for i in range(5):
        a.raise_("x", Severity.INFO, str(i), at(i))
        a.clear("x", at(i + 0.5))
    assert [h.message for h in a.history()] == ["2", "3", "4"]


def test_clip_alarm_only_for_unmet_safety_rules():
    a = AlarmSet("hall-01")
    clip = lambda stage, unmet: SimpleNamespace(stage=SimpleNamespace(value=stage), reason="r", unmet=unmet)
    assert sync_clip_alarm(a, [clip("soc", False), clip("ramp", True)], at(0)) is None
    raised = sync_clip_alarm(a, [clip("grid", True)], at(1))
    assert raised.code == SAFETY_RULE_UNMET and "grid: r" in raised.message
    assert sync_clip_alarm(a, [], at(2)).cleared_at == at(2)
