"""The telemetry schema: points, line protocol, type coercion, bad input, documentation."""

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, strategies as st
from influxdb_client import Point, WritePrecision

from devices.readings import BatteryReading, BatteryState, MeterReading, PVReading
from telemetry import schema
from telemetry.schema import MEASUREMENTS, PlanSlot, Priority, make_point, time_ns

T0 = datetime(2025, 7, 1, 3, 0, tzinfo=timezone.utc)
DOC = Path(__file__).resolve().parents[2] / "docs" / "telemetry.md"


def test_time_ns_is_exact_and_timezone_independent():
    jst = timezone(timedelta(hours=9))
    assert time_ns(T0) == 1751338800 * 10**9
    assert time_ns(T0.astimezone(jst)) == time_ns(T0)
    assert time_ns(T0 + timedelta(microseconds=7)) == time_ns(T0) + 7000
    with pytest.raises(ValueError, match="no timezone"):
        time_ns(datetime(2025, 7, 1))


def test_battery_reading_line():
    r = BatteryReading("battery", T0, soc_pct=55, power_w=-1200, state=BatteryState.CHARGING, fault_code=None)
    p = schema.reading_point("hall-01", r, area="3120100")
    assert p.priority == Priority.LOW
    # ints are coerced to the declared float type: a field must never change type in InfluxDB
    assert p.fields == {"soc_pct": 55.0, "power_w": -1200.0, "state": 2}
    assert isinstance(p.fields["soc_pct"], float)
    assert p.to_line() == ("battery,area=3120100,device=battery,site=hall-01 "
                           "power_w=-1200,soc_pct=55,state=2i 1751338800000000000")


def test_meter_and_pv_points():
    m = schema.reading_point("hall-01", MeterReading("meter", T0, power_w=300, grid_ok=False, voltage_v=0.0))
    assert m.measurement == "meter" and m.fields["grid_ok"] is False and "area" not in m.tags
    assert "grid_ok=false" in m.to_line()
    pv = schema.reading_point("hall-01", PVReading("pv", T0, power_w=4200.5, energy_wh=None))
    assert pv.fields == {"power_w": 4200.5}


def test_escaping_of_tags_and_strings():
    p = schema.alarm_point("hall-01", T0, code="stale data", severity="major", message='says "no, data"\\')
    line = p.to_line()
    assert r"code=stale\ data" in line
    assert r'message="says \"no, data\"\\"' in line


def test_plan_points_use_slot_start_so_a_new_plan_overwrites():
    slots = [PlanSlot(T0 + timedelta(minutes=30 * i), battery_w=1000.0 * i, soc_pct=50 + i) for i in range(3)]
    pts = schema.plan_points("hall-01", "p-1", T0, slots, "optimizer")
    assert [p.time_ns for p in pts] == [time_ns(s.start) for s in slots]
    assert all(p.fields["made_at"] == "2025-07-01T03:00:00+00:00" for p in pts)
    jst_made = schema.plan_points("hall-01", "p-2", T0.astimezone(timezone(timedelta(hours=9))), slots, "x")
    assert jst_made[0].fields["made_at"] == "2025-07-01T03:00:00+00:00"


def test_command_and_ack_points_store_json():
    c = schema.command_point("hall-01", T0, "c-1", "dispatch", "op", T0 + timedelta(minutes=5), {"power_w": 3000})
    assert c.fields["payload"] == '{"power_w": 3000}' and c.priority == Priority.HIGH
    a = schema.ack_point("hall-01", T0, "c-1", "dispatch", "refused", "expired: ...", None)
    assert a.tags["status"] == "refused" and "outcome" not in a.fields


@pytest.mark.parametrize("measurement, fields, message", [
    ("nope", {"x": 1.0}, "unknown measurement"),
    ("battery", {"voltage": 1.0}, "unknown field 'voltage'"),
    ("battery", {"soc_pct": "high"}, "battery.soc_pct: expected float"),
    ("battery", {"soc_pct": True}, "expected a number"),
    ("battery", {"soc_pct": None}, "no field has a value"),
    ("battery", {"soc_pct": float("nan")}, "no field has a value"),
])
def test_bad_points_are_refused_with_the_field_named(measurement, fields, message):
    with pytest.raises(ValueError, match=message):
        make_point(measurement, T0, {"site": "hall-01"}, fields)


def test_unknown_tag_refused():
    with pytest.raises(ValueError, match="unknown tag 'rack'"):
        make_point("battery", T0, {"site": "hall-01", "rack": "1"}, {"soc_pct": 1.0})


@given(st.text(min_size=1, max_size=20).filter(lambda s: "\n" not in s and "\r" not in s and s.strip()),
       st.text(max_size=40).filter(lambda s: "\n" not in s and "\r" not in s),
       st.floats(allow_nan=False, allow_infinity=False, width=64))
def test_lines_match_influxdb_client_point(tag, text, value):
    ours = make_point("alarm", T0, {"site": "hall-01", "code": tag, "severity": "minor"},
                      {"message": text, "active": True}).to_line()
    ref = (Point("alarm").tag("code", tag).tag("severity", "minor").tag("site", "hall-01")
           .field("active", True).field("message", text).time(time_ns(T0), WritePrecision.NS).to_line_protocol())
    assert ours == ref
    num = make_point("site", T0, {"site": "hall-01"}, {"load_w": value}).to_line()
    assert num.startswith("site,site=hall-01 load_w=")


def test_every_measurement_field_and_tag_is_documented():
    text = DOC.read_text(encoding="utf-8")
    for m in MEASUREMENTS.values():
        assert f"`{m.name}`" in text, f"measurement {m.name} missing from {DOC}"
        for f in m.fields:
            assert f"`{f}`" in text, f"field {m.name}.{f} missing from {DOC}"
        for t in m.tags:
            assert f"`{t}`" in text
    assert "CREATE CONTINUOUS QUERY" in text and "aggregateWindow" in text
