"""Register maps that the gateway would refuse at start-up are refused when the map is loaded,
each problem naming the map file and the point (issue 11, item 10)."""

from __future__ import annotations

from pathlib import Path

import pytest

from devices.config import DeviceConfig
from devices.configfile import ConfigError
from devices.factory import check_devices
from devices.registermap import load_register_map, maps_dir

HEAD = "name: m\nnature: meter\npoints:\n  - {name: power, field: power_w, address: 0, type: int32}\n"


def refused(tmp_path: Path, points: str) -> list[str]:
    path = tmp_path / "x.yaml"
    path.write_text(HEAD + points)
    with pytest.raises(ConfigError) as info:
        load_register_map(path)
    return info.value.problems


def test_overlapping_points_name_the_file_both_points_and_the_registers(tmp_path):
    found = refused(tmp_path, "  - {name: foo, address: 40009, type: uint32}\n"
                              "  - {name: bar, address: 40010, type: int32}\n")
    assert found == [f"{tmp_path / 'x.yaml'}: points.bar: overlaps points.foo (registers 40010-40010)"]


def test_every_overlap_is_reported_not_just_the_first(tmp_path):
    found = refused(tmp_path, "  - {name: label, address: 100, type: string, words: 10}\n"
                              "  - {name: a, address: 102, type: uint16}\n"
                              "  - {name: b, address: 108, type: uint32}\n")
    assert found == [f"{tmp_path / 'x.yaml'}: points.a: overlaps points.label (registers 102-102)",
                     f"{tmp_path / 'x.yaml'}: points.b: overlaps points.label (registers 108-109)"]


def test_input_and_holding_tables_do_not_overlap_each_other(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text(HEAD + "  - {name: v, field: voltage_v, address: 0, function: input, type: uint16}\n")
    assert load_register_map(path).by_name["v"].address == 0


def test_overlap_in_the_input_table_says_so(tmp_path):
    found = refused(tmp_path, "  - {name: a, address: 0, function: input, type: float32}\n"
                              "  - {name: b, address: 1, function: input, type: uint16}\n")
    assert found == [f"{tmp_path / 'x.yaml'}: points.b: overlaps points.a (input registers 1-1)"]


def test_a_point_running_past_the_last_register_is_refused(tmp_path):
    found = refused(tmp_path, "  - {name: tail, address: 65535, type: uint32}\n")
    assert found == [f"{tmp_path / 'x.yaml'}: points.tail: registers 65535-65536 run past the last register 65535"]


def test_a_point_longer_than_one_read_is_refused_at_load_not_at_start(tmp_path):
    # plan_reads raised a ValueError when the gateway built the device: exit 1, no file named.
    path = tmp_path / "x.yaml"
    path.write_text(HEAD.replace("points:\n", "max_read: 8\npoints:\n")
                    + "  - {name: serial, address: 10, type: string, words: 20}\n")
    with pytest.raises(ConfigError) as info:
        load_register_map(path)
    assert info.value.problems == [
        f"{path}: points.serial.words: 20 registers, more than max_read 8 (one read request)"]


def test_the_shipped_maps_still_load():
    for name in ("generic_battery", "sdm630"):
        load_register_map(name, maps_dir())


# -- check_devices: what build_devices would refuse, without a connection -------------------

def dev(**kw) -> DeviceConfig:
    base = {"id": "meter", "nature": "meter", "map": "sdm630",
            "transport": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": 1502, "unit": 2}}
    return DeviceConfig.model_validate({**base, **kw})


def test_check_devices_accepts_what_build_devices_builds():
    assert check_devices([dev(), dev(id="battery", nature="battery", map="generic_battery")], maps_dir()) == []


def test_check_devices_names_the_map_of_the_wrong_nature():
    found = check_devices([dev(id="battery", nature="battery")], maps_dir())
    assert [(p.field, p.message) for p in found] == [
        ("devices[0].map", "'sdm630' is a meter map, the device is a battery")]


def test_check_devices_reports_a_broken_map_by_its_own_file(tmp_path):
    (tmp_path / "bad.yaml").write_text(HEAD + "  - {name: x, address: 1, type: uint16}\n")
    found = check_devices([dev(map="bad")], tmp_path)
    assert [(p.field, p.message) for p in found] == [
        (None, f"{tmp_path / 'bad.yaml'}: points.x: overlaps points.power (registers 1-1)")]


def test_check_devices_refuses_an_mqtt_device_without_its_required_fields():
    found = check_devices([dev(map=None, transport={"kind": "mqtt", "topic": "m", "fields": {"voltage_v": "v"}})])
    assert [(p.field, p.message) for p in found] == [
        ("devices[0].transport.fields", "required field(s) power_w not mapped")]


def test_check_devices_refuses_one_serial_line_with_two_settings():
    rtu = {"kind": "modbus_rtu", "device": "/dev/ttyUSB0", "baudrate": 9600, "unit": 1}
    found = check_devices([dev(transport=rtu),
                           dev(id="battery", nature="battery", map="generic_battery",
                               transport={**rtu, "baudrate": 19200, "unit": 2})], maps_dir())
    assert [p.field for p in found] == ["devices[1].transport.baudrate"]
    assert "/dev/ttyUSB0" in found[0].message and "devices[0]" in found[0].message
