"""Scenario files: the shipped ones load against the fleet; bad ones give one clear line per problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from devices.configfile import ConfigError
from ems.sim.drill import scenario as sc
from tests.sim.conftest import SCENARIOS

GOOD = """\
name: tiny
start: "2025-09-15T00:00:00+09:00"
duration_h: 10
events:
  - {at_h: 1, type: jma_warning, areas: ["3120100"]}
  - {at_h: 2, type: staff_switch, scope: area, area_code: "3120200", reason: "rising river"}
  - {at_h: 3, type: outage, halls: [hall-01], length_h: 2}
  - {at_h: 3, type: outage, areas: ["3120200"]}
  - {at_h: 5, type: grid_return, areas: ["3120200"]}
  - {at_h: 6, type: broker_down}
  - {at_h: 7, type: broker_up}
  - {at_h: 8, type: battery_failure, hall: hall-09}
  - {at_h: 9, type: weather, halls: [all], cloud_factor: 0.9}
  - {at_h: 9.5, type: staff_return_to_vpp, scope: all, reason: "all clear"}
"""


def write(tmp_path: Path, text: str, name: str = "s.yaml") -> Path:
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


def problems(tmp_path: Path, text: str, fleet=None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        sc.load_scenario(write(tmp_path, text), fleet)
    return info.value.problems


@pytest.mark.parametrize("name", ["typhoon", "earthquake", "hostile"])
def test_shipped_scenarios_load_against_the_fleet(name, fleet):
    s = sc.load_scenario(SCENARIOS / f"{name}.yaml", fleet)
    assert s.name == name
    assert s.events or name == "earthquake"
    assert all(e.at_h <= s.duration_h for e in s.events)
    # A multi-day scenario must fit in minutes of wall time.
    assert s.duration_h * 3600 / s.speed < 120


def test_typhoon_uses_both_jma_formats_and_the_staff_api(fleet):
    s = sc.load_scenario(SCENARIOS / "typhoon.yaml", fleet)
    formats = {e.format for e in s.events if isinstance(e, sc.JmaWarning)}
    assert formats == {"current", "level2026"}
    assert any(isinstance(e, sc.StaffSwitch) for e in s.events)
    assert any(isinstance(e, sc.StaffReturn) for e in s.events)
    lengths = [e.length_h for e in s.events if isinstance(e, sc.Outage) and e.length_h]
    assert min(lengths) <= 3 and max(lengths) >= 48


def test_a_good_file_resolves_halls_and_times(tmp_path, fleet):
    s = sc.load_scenario(write(tmp_path, GOOD), fleet)
    outage = s.events[3]
    assert isinstance(outage, sc.Outage) and outage.length_h is None
    assert outage.resolve(fleet) == ["hall-03", "hall-04"]
    assert s.events[8].resolve(fleet) == [x.id for x in fleet.sites]
    assert s.time_of(1.5).isoformat() == "2025-09-15T01:30:00+09:00"
    assert [i for i, _ in s.sorted_events()][:4] == [0, 1, 2, 3]


def test_unknown_key_and_missing_field_name_file_and_path(tmp_path):
    lines = problems(tmp_path, GOOD.replace("duration_h: 10", "duration_hours: 10"))
    path = str(tmp_path / "s.yaml")
    assert f"{path}: duration_h: required key is missing" in lines
    assert f"{path}: duration_hours: unknown key" in lines


def test_naive_start_time_is_refused(tmp_path):
    lines = problems(tmp_path, GOOD.replace('"2025-09-15T00:00:00+09:00"', '"2025-09-15T00:00:00"'))
    assert any(": start: " in line and "timezone" in line.lower() for line in lines), lines


def test_event_errors_name_the_event(tmp_path):
    bad = GOOD.replace("{at_h: 3, type: outage, halls: [hall-01], length_h: 2}",
                       "{at_h: 3, type: outage, halls: [hall-01], length_h: -2}")
    lines = problems(tmp_path, bad)
    assert any("events[2].length_h: must be > 0" in line for line in lines), lines
    lines = problems(tmp_path, GOOD.replace("type: broker_down", "type: broker_gone"))
    assert any("events[5]" in line and "broker_gone" in line for line in lines), lines


def test_event_after_the_end_and_broker_order(tmp_path):
    lines = problems(tmp_path, GOOD.replace("duration_h: 10", "duration_h: 8.5"))
    assert any("events[8].at_h: 9 h is after the end" in line for line in lines), lines
    assert any("events[9].at_h" in line for line in lines), lines
    lines = problems(tmp_path, GOOD.replace("{at_h: 6, type: broker_down}", "{at_h: 6, type: central_restart}"))
    assert any("events[6]: broker_up without a broker_down" in line for line in lines), lines


def test_staff_scope_needs_its_field(tmp_path):
    lines = problems(tmp_path, GOOD.replace('area_code: "3120200", ', ""))
    assert any("events[1]" in line and "area_code: required when scope is area" in line for line in lines), lines


def test_halls_and_areas_are_checked_against_the_fleet(tmp_path, fleet):
    bad = GOOD.replace("halls: [hall-01], length_h: 2", "halls: [hall-99], length_h: 2") \
              .replace("hall: hall-09", "hall: hall-77").replace('areas: ["3120100"]', 'areas: ["3999999"]')
    lines = problems(tmp_path, bad, fleet)
    path = str(tmp_path / "s.yaml")
    assert any(line.startswith(f"{path}: events[2].halls[0]: unknown hall 'hall-99'") for line in lines), lines
    assert any(line.startswith(f"{path}: events[7].hall: unknown hall 'hall-77'") for line in lines), lines
    assert any(line.startswith(f"{path}: events[0].areas[0]: no hall of the fleet is in area 3999999")
               for line in lines), lines


def test_outage_without_halls_or_areas(tmp_path):
    lines = problems(tmp_path, GOOD.replace("{at_h: 3, type: outage, halls: [hall-01], length_h: 2}",
                                            "{at_h: 3, type: outage, length_h: 2}"))
    assert any("events[2]" in line and "choose halls" in line for line in lines), lines


def test_not_yaml_and_missing_file(tmp_path):
    lines = problems(tmp_path, "name: [unclosed\n")
    assert "invalid YAML" in lines[0] and "line" in lines[0]
    with pytest.raises(ConfigError) as info:
        sc.load_scenario(tmp_path / "nope.yaml")
    assert info.value.problems == [f"{tmp_path / 'nope.yaml'}: file not found"]


def test_a_yes_is_not_a_number(tmp_path):
    lines = problems(tmp_path, GOOD.replace("duration_h: 10", "duration_h: yes"))
    assert any(": duration_h: " in line for line in lines), lines


def test_an_unknown_seismic_intensity_names_the_event_and_the_intensities(tmp_path):
    got = problems(tmp_path, """
        name: bad-quake
        start: "2025-09-16T00:00:00+09:00"
        duration_h: 2
        events:
          - {at_h: 1, type: jma_earthquake, magnitude: 6.2, epicentre: 鳥取県東部, lat: 35.4, lon: 134.2,
             depth_km: 10, cities: [{area: "3120100", intensity: "8"}]}
        """)
    assert any("events[0]" in p and "6弱" in p and "got '8'" in p for p in got), got
