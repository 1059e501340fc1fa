"""Hostile configuration files: what cannot work is refused at load, naming the file and the field.

Issue 11.  Each case is a file an operator (or an attacker with write access
to /etc/ems) could hand the fleet: absurd nesting, a state folder that is a
file, a reserve larger than the battery, poll periods that are never fresh,
names that are not names.  None may crash a loader (exit 1, a traceback) or
be accepted and fail later in the daemon.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.configfile import ConfigError, read_yaml
from devices.registermap import load_register_map
from ems.config import load_fleet
from tests.ems.test_config import REPO, problems, write


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    """A config folder with the real device maps next to the fleet file."""
    import shutil

    d = tmp_path / "config"
    d.mkdir()
    shutil.copytree(REPO / "config" / "devicemaps", d / "devicemaps")
    return d


# -- item 11: nesting --------------------------------------------------------------------

DEEP = "[" * 100_000  # 100,000 nested lists: RecursionError in the YAML composer before the fix


def test_100000_nested_lists_in_the_fleet_file_are_refused_naming_the_file(cfg_dir):
    path = cfg_dir / "fleet.yaml"
    path.write_text(DEEP)
    found = problems(path)
    assert len(found) == 1 and found[0].startswith(f"{path}: line 1, column "), found
    assert "nested deeper than 64 levels" in found[0], found


def test_deep_nesting_inside_a_field_gives_its_line(cfg_dir):
    path = cfg_dir / "fleet.yaml"
    path.write_text("fleet: {name: x}\nsites:\n  - id: " + "[" * 500 + "]" * 500 + "\n")
    found = problems(path)
    assert found[0].startswith(f"{path}: line 3, column ") and "nested deeper than" in found[0], found


def test_nesting_within_the_bound_still_parses(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("a: " + "[" * 60 + "1" + "]" * 60 + "\n")
    value = read_yaml(path)["a"]
    for _ in range(60):
        value = value[0]
    assert value == 1


def test_deeply_nested_register_map_is_refused_naming_the_file(tmp_path):
    path = tmp_path / "deep_map.yaml"
    path.write_text("name: m\nnature: battery\npoints: " + DEEP)
    with pytest.raises(ConfigError) as info:
        load_register_map(path)
    assert info.value.problems[0].startswith(f"{path}: line 3, column "), info.value.problems
    assert "nested deeper than" in info.value.problems[0]


def test_deeply_nested_gateway_file_is_refused_naming_the_file(tmp_path):
    from ems.gateway.config import load_gateway_config

    path = tmp_path / "gateway.yaml"
    path.write_text(f"fleet: {REPO / 'config' / 'fleet.yaml'}\nsite: hall-01\nuplink: " + DEEP)
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path)
    assert info.value.problems[0].startswith(f"{path}: line 3, column "), info.value.problems


def test_deeply_nested_central_file_is_refused_naming_the_file(tmp_path):
    from ems.central.config import load_central_config

    path = tmp_path / "central.yaml"
    path.write_text("listen: " + DEEP)
    with pytest.raises(ConfigError) as info:
        load_central_config(path)
    assert info.value.problems[0].startswith(f"{path}: line 1, column "), info.value.problems


def test_a_self_referencing_alias_is_a_field_error_not_a_crash(cfg_dir):
    path = cfg_dir / "fleet.yaml"
    path.write_text("fleet: {name: x}\nsites: &s [*s]\n")
    assert problems(path) == [f"{path}: sites[0]: must be a mapping of keys to values"]


# -- item 10: check-config builds every device as start-up does ---------------------------

def overlapping_map(cfg_dir: Path) -> Path:
    """``devicemaps/x.yaml``: the generic battery map with a point laid over ``power`` (registers 2-3)."""
    text = (cfg_dir / "devicemaps" / "generic_battery.yaml").read_text(encoding="utf-8")
    text = text.replace("name: generic_battery", "name: x").replace(
        "  - {name: max_charge,", "  - {name: foo, address: 3, type: uint16}\n  - {name: max_charge,")
    path = cfg_dir / "devicemaps" / "x.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_map_with_overlapping_points_is_refused_when_the_fleet_loads(cfg_dir):
    x = overlapping_map(cfg_dir)

    def use_x(d):
        for s in d["sites"]:
            s["devices"][0]["map"] = "x"
    # both halls use the map: its problem is reported once
    assert problems(write(cfg_dir, use_x)) == [f"{x}: points.foo: overlaps points.power (registers 3-3)"]


def test_a_map_of_another_nature_is_refused_naming_the_device_field(cfg_dir):
    path = write(cfg_dir, lambda d: d["sites"][1]["devices"][0].update(map="sdm630"))
    assert problems(path) == [f"{path}: sites[1].devices[0].map: 'sdm630' is a meter map, the device is a battery"]


def test_a_map_that_does_not_parse_is_refused_naming_the_map_file(cfg_dir):
    (cfg_dir / "devicemaps" / "broken.yaml").write_text("name: [\n")
    path = write(cfg_dir, lambda d: d["sites"][0]["devices"][1].update(map="broken"))
    found = problems(path)
    assert len(found) == 1 and found[0].startswith(f"{cfg_dir / 'devicemaps' / 'broken.yaml'}: line "), found


def test_an_mqtt_device_the_daemon_would_refuse_is_refused_at_load(cfg_dir):
    def mqtt_meter(d):
        d["sites"][0]["device_broker"] = {"host": "127.0.0.1"}
        d["sites"][0]["devices"][1].update(map=None, transport={"kind": "mqtt", "topic": "m",
                                                                "fields": {"voltage_v": "v"}})
    path = write(cfg_dir, mqtt_meter)
    assert problems(path) == [f"{path}: sites[0].devices[1].transport.fields: required field(s) power_w not mapped"]


def test_two_devices_on_one_serial_line_with_different_speeds_are_refused(cfg_dir):
    def rtu(d):
        for k, dev in enumerate(d["sites"][0]["devices"]):
            dev["transport"] = {"kind": "modbus_rtu", "device": "/dev/ttyUSB0", "unit": k + 1,
                                "baudrate": 9600 * (k + 1)}
    path = write(cfg_dir, rtu)
    found = problems(path)
    assert len(found) == 1 and found[0].startswith(
        f"{path}: sites[0].devices[1].transport.baudrate: 19200 differs from devices[0]"), found
