"""Bad register-map YAML files give a ConfigError naming the file and the field."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.configfile import ConfigError
from devices.registermap import load_register_map, maps_dir

GOOD = """\
name: m
nature: battery
heartbeat: {point: hb}
points:
  - {name: soc, field: soc_pct, address: 0, type: uint16, scale: 0.1, range: [0, 100]}
  - {name: power, field: power_w, address: 1, type: int32}
  - {name: sf, address: 3, type: sunssf}
  - {name: hb, address: 4, type: uint16, access: rw}
"""

CASES = {
    "unknown key": (GOOD.replace("type: int32}", "type: int32, colour: red}"), "points[1].colour: unknown key"),
    "unknown top-level key": (GOOD + "polling: fast\n", "polling: unknown key"),
    "wrong type": (GOOD.replace("address: 1,", "address: one,"), "points[1].address"),
    "unknown register type": (GOOD.replace("type: int32", "type: int24"), "points[1].type"),
    "address out of range": (GOOD.replace("address: 1,", "address: 70000,"), "points[1].address: must be <= 65535"),
    "overlapping points": (GOOD.replace("address: 3, type: sunssf", "address: 2, type: sunssf"),
                           "points.sf: overlaps points.power (registers 2-2)"),
    "missing required field binding": (GOOD.replace("field: power_w, ", ""), "must bind field(s): power_w"),
    "field of another nature": (GOOD.replace("field: power_w", "field: frequency_hz"),
                                "points[1] (power): field 'frequency_hz' is not a battery field"),
    "scale_factor naming a non-sunssf point": (
        GOOD.replace("type: int32}", "type: int32, scale_factor: soc}"),
        "points[1] (power): scale_factor 'soc' is not a sunssf point"),
    "scale_factor naming no point": (
        GOOD.replace("type: int32}", "type: int32, scale_factor: nope}"), "scale_factor 'nope'"),
    "heartbeat naming no point": (GOOD.replace("{point: hb}", "{point: watchdog}"),
                                  "heartbeat.point 'watchdog' is not a point of this map"),
    "string without words": (GOOD.replace("type: uint16, access: rw", "type: string, access: rw"),
                             "points[3]: a string point needs 'words'"),
    "writable input register": (GOOD.replace("type: uint16, access: rw", "type: uint16, function: input, access: rw"),
                                "input registers cannot be written"),
    "duplicate point name": (GOOD.replace("name: sf,", "name: soc,"), "duplicate point name"),
    "invalid yaml": (GOOD.replace("points:", "points: [", 1), "invalid YAML"),
    "empty file": ("", "file is empty"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_map_file(tmp_path: Path, case):
    text, expected = CASES[case]
    path = tmp_path / "bad_map.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_register_map(path)
    message = str(info.value)
    assert message.startswith(str(path)), message
    assert expected in message, message


def test_good_map_loads(tmp_path: Path):
    path = tmp_path / "m.yaml"
    path.write_text(GOOD)
    m = load_register_map(path)
    assert m.heartbeat.point == "hb" and m.by_field["soc_pct"].name == "soc"


def test_missing_map_file_names_the_path(tmp_path: Path):
    with pytest.raises(ConfigError, match="no_such_map.yaml: file not found"):
        load_register_map("no_such_map", tmp_path)


@pytest.mark.parametrize("name", ["generic_battery", "sdm630"])
def test_shipped_maps_load(name):
    assert load_register_map(name, maps_dir()).name == name
