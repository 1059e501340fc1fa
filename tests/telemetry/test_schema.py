"""The telemetry schema: points, line protocol, type coercion, bad input, documentation."""

import dataclasses
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, strategies as st

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


@pytest.mark.parametrize("reading_type", [BatteryReading, MeterReading, PVReading])
def test_reading_measurements_hold_exactly_the_reading_values(reading_type):
    # reading_point takes the field list from MEASUREMENTS: a field added on
    # either side without the other must show up here.
    measurement = schema._READING_MEASUREMENT[reading_type]
    values = {f.name for f in dataclasses.fields(reading_type)} - {"device_id", "time", "extra"}
    assert set(MEASUREMENTS[measurement].fields) == values


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


# Expected lines written by hand from the InfluxDB line protocol: in tag values
# (and keys) comma, '=' and space are escaped with a backslash; in string field
# values only '"' and '\' are, and commas, '=' and spaces stand as they are.
TS = " 1751338800000000000"


@pytest.mark.parametrize("code, expected_tag", [
    ("stale data", r"code=stale\ data"),
    ("a,b", r"code=a\,b"),
    ("k=v", r"code=k\=v"),
    ("x, y=z  w", r"code=x\,\ y\=z\ \ w"),
    ("データ欠損", "code=データ欠損"),  # non-ASCII stays as UTF-8 text
])
def test_tag_values_are_escaped_per_line_protocol(code, expected_tag):
    line = make_point("alarm", T0, {"site": "hall-01", "code": code, "severity": "minor"},
                      {"message": "m", "active": True}).to_line()
    assert line == f'alarm,{expected_tag},severity=minor,site=hall-01 active=true,message="m"{TS}'


@pytest.mark.parametrize("message, expected_field", [
    ('say "hi"', r'message="say \"hi\""'),
    ("C:\\dir\\", r'message="C:\\dir\\"'),
    ('\\"', r'message="\\\""'),
    ("a, b=c d", 'message="a, b=c d"'),
    ("", 'message=""'),
])
def test_string_fields_are_escaped_per_line_protocol(message, expected_field):
    line = make_point("alarm", T0, {"site": "hall-01", "code": "c", "severity": "minor"},
                      {"message": message, "active": False}).to_line()
    assert line == f"alarm,code=c,severity=minor,site=hall-01 active=false,{expected_field}{TS}"


def test_numbers_per_line_protocol():
    line = make_point("battery", T0, {"site": "hall-01", "device": "battery"},
                      {"soc_pct": 0.1, "power_w": 4200.5, "state": 3, "fault_code": -2}).to_line()
    assert line == f"battery,device=battery,site=hall-01 fault_code=-2i,power_w=4200.5,soc_pct=0.1,state=3i{TS}"


def _split_escaped(text: str, sep: str) -> list[str]:
    """Split ``text`` at each ``sep`` not escaped by a backslash (escapes are kept)."""
    parts, start, i = [], 0, 0
    while i < len(text):
        if text[i] == "\\":
            i += 2
            continue
        if text[i] == sep:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    return parts + [text[start:]]


def _unescape_tag(text: str) -> str:
    return re.sub(r"\\([, =])", r"\1", text)


def _parse_alarm_line(line: str) -> tuple[dict[str, str], str]:
    """Tags and the ``message`` field of one alarm line: a minimal parser written from the spec."""
    head = _split_escaped(line, " ")[0]  # tag values escape their spaces: the first bare one ends the tags
    body, ts = line[len(head) + 1:].rsplit(" ", 1)
    assert ts == TS.strip()
    measurement, *pairs = _split_escaped(head, ",")
    assert measurement == "alarm"
    tags = {}
    for pair in pairs:
        key, value = _split_escaped(pair, "=")  # exactly one bare '=' per tag
        tags[_unescape_tag(key)] = _unescape_tag(value)
    prefix = 'active=true,message="'
    assert body.startswith(prefix) and body.endswith('"'), body
    raw, message, i = body[len(prefix):-1], "", 0
    while i < len(raw):
        if raw[i] == "\\":
            assert raw[i + 1] in '"\\', f"stray backslash in {raw!r}"
            message += raw[i + 1]
            i += 2
        else:
            assert raw[i] != '"', f"unescaped quote in {raw!r}"
            message += raw[i]
            i += 1
    return tags, message


# Backslashes are left out of tag values: the protocol keeps them literally, so
# 'a\' followed by an escaped space cannot be told apart from an escaped backslash.
_TAG_TEXT = st.text(st.characters(blacklist_characters="\\\n\r\t", blacklist_categories=("Cs",)), min_size=1,
                    max_size=20).filter(str.strip)
_MESSAGE_TEXT = st.text(st.characters(blacklist_characters="\n\r", blacklist_categories=("Cs",)), max_size=40)


@given(_TAG_TEXT, _MESSAGE_TEXT)
def test_lines_parse_back_to_the_same_tags_and_text(tag, text):
    line = make_point("alarm", T0, {"site": "hall-01", "code": tag, "severity": "minor"},
                      {"message": text, "active": True}).to_line()
    assert "\n" not in line
    tags, message = _parse_alarm_line(line)
    assert tags == {"code": tag, "severity": "minor", "site": "hall-01"}
    assert message == text


def test_every_measurement_field_and_tag_is_documented():
    text = DOC.read_text(encoding="utf-8")
    for m in MEASUREMENTS.values():
        assert f"`{m.name}`" in text, f"measurement {m.name} missing from {DOC}"
        for f in m.fields:
            assert f"`{f}`" in text, f"field {m.name}.{f} missing from {DOC}"
        for t in m.tags:
            assert f"`{t}`" in text
    assert "CREATE CONTINUOUS QUERY" in text and "aggregateWindow" in text
