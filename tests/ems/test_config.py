"""Fleet configuration: every kind of bad file is refused with file name and field path;
the shipped config/fleet.yaml is valid and every hall's disaster reserve fits."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from devices.configfile import ConfigError
from ems.config import load_fleet, state_dir_for
from optimizer.reserve import reserve_energy_wh, reserve_floor_wh

REPO = Path(__file__).resolve().parents[2]

SITE: dict[str, Any] = {
    "id": "hall-01", "name": "Koyama", "area_code": "3120100", "lat": 35.5, "lon": 134.2,
    "battery": {"capacity_wh": 15000, "max_charge_w": 5000, "max_discharge_w": 5000},
    "inverter": {"rated_w": 5000}, "pv": {"capacity_w": 10000},
    "grid": {"import_limit_w": 15000}, "loads": {"base_w": 500, "peak_w": 3000, "critical_w": 900},
    "simulator": {"port": 15021},
    "devices": [
        {"id": "battery", "nature": "battery", "map": "generic_battery",
         "transport": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": 15021, "unit": 1}},
        {"id": "meter", "nature": "meter", "map": "sdm630",
         "transport": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": 15021, "unit": 2}},
    ],
}


def site(i: int) -> dict[str, Any]:
    s = copy.deepcopy(SITE)
    s["id"] = f"hall-{i:02d}"
    s["simulator"]["port"] = 15020 + i
    for d in s["devices"]:
        d["transport"]["port"] = 15020 + i
    return s


@pytest.fixture
def cfg_dir(tmp_path: Path) -> Path:
    """A config folder with the real device maps next to the fleet file."""
    d = tmp_path / "config"
    d.mkdir()
    shutil.copytree(REPO / "config" / "devicemaps", d / "devicemaps")
    return d


def write(cfg_dir: Path, mutate: Callable[[dict], Any] | None = None) -> Path:
    doc = {"fleet": {"name": "test fleet"}, "sites": [site(1), site(2)]}
    if mutate:
        mutate(doc)
    path = cfg_dir / "fleet.yaml"
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_fleet(path)
    assert str(info.value) == "\n".join(info.value.problems)
    return info.value.problems


def test_the_base_fixture_is_valid(cfg_dir):
    fleet = load_fleet(write(cfg_dir))
    assert [s.id for s in fleet.sites] == ["hall-01", "hall-02"]


def bat(**kw):
    return lambda d: d["sites"][0]["battery"].update(**kw)


# (mutation, exact "field path: message" expected after "<file>: ")
CASES = {
    "negative capacity": (bat(capacity_wh=-1), "sites[0].battery.capacity_wh: must be > 0"),
    "zero power": (bat(max_charge_w=0), "sites[0].battery.max_charge_w: must be > 0"),
    "unknown key": (bat(colour="red"), "sites[0].battery.colour: unknown key"),
    "unknown top key": (lambda d: d.update(extra=1), "extra: unknown key"),
    "missing key": (lambda d: d["sites"][0]["battery"].pop("capacity_wh"),
                    "sites[0].battery.capacity_wh: required key is missing"),
    "text for number": (bat(capacity_wh="lots"), "sites[0].battery.capacity_wh: Input should be a valid number"),
    "yes for number": (bat(capacity_wh=True), "sites[0].battery.capacity_wh: Input should be a valid number"),
    "nan": (bat(capacity_wh=float("nan")), "sites[0].battery.capacity_wh: must be a finite number"),
    "inf": (bat(capacity_wh=float("inf")), "sites[0].battery.capacity_wh: must be a finite number"),
    "list for mapping": (lambda d: d["sites"][0].update(battery=[1, 2]),
                         "sites[0].battery: must be a mapping of keys to values"),
    "soc above 100": (bat(soc_max_pct=120), "sites[0].battery.soc_max_pct: must be <= 100"),
    "soc min >= max": (bat(soc_min_pct=95, soc_max_pct=95),
                       "sites[0].battery: soc_min_pct must be below soc_max_pct"),
    "efficiency > 1": (bat(charge_efficiency=1.2), "sites[0].battery.charge_efficiency: must be <= 1"),
    "power in kW by mistake": (lambda d: d["sites"][0]["inverter"].update(rated_w=5),
                               "sites[0]: battery power limits exceed 1.5 × inverter.rated_w"),
    "critical > peak": (lambda d: d["sites"][1]["loads"].update(critical_w=5000),
                        "sites[1].loads: critical_w must be <= peak_w"),
    "lat outside Japan": (lambda d: d["sites"][0].update(lat=51.5), "sites[0].lat: must be <= 46"),
    "bad area code": (lambda d: d["sites"][0].update(area_code="31"), "sites[0].area_code: String should match"),
    "bad site id": (lambda d: d["sites"][0].update(id="Hall 1"), "sites[0].id: String should match pattern"),
    "duplicate site id": (lambda d: d["sites"][1].update(id="hall-01"),
                          "sites[1].id: duplicate site id 'hall-01' (also sites[0])"),
    "duplicate device id": (lambda d: d["sites"][0]["devices"][1].update(id="battery"),
                            "sites[0]: devices: duplicate device id(s) battery"),
    "no meter": (lambda d: d["sites"][0]["devices"].pop(),
                 "sites[0]: devices: exactly one meter device is required, found 0"),
    "no devices": (lambda d: d["sites"][0].update(devices=[]), "sites[0].devices: List should have at least 1"),
    "no sites": (lambda d: d.update(sites=[]), "sites: List should have at least 1"),
    "map missing": (lambda d: d["sites"][0]["devices"][1].update(map="nope"),
                    "sites[0].devices[1]: map 'nope': no file "),
    "modbus without map": (lambda d: d["sites"][0]["devices"][1].pop("map"),
                           "sites[0].devices[1]: a Modbus device needs 'map'"),
    "unknown transport": (lambda d: d["sites"][0]["devices"][0].update(transport={"kind": "smoke"}),
                          "sites[0].devices[0].transport: Input tag 'smoke'"),
    "port out of range": (lambda d: d["sites"][0]["devices"][0]["transport"].update(port=70000),
                          "sites[0].devices[0].transport.port: must be <= 65535"),
    "unit out of range": (lambda d: d["sites"][0]["devices"][0]["transport"].update(unit=300),
                          "sites[0].devices[0].transport.unit: must be <= 247"),
    "same simulator port": (lambda d: d["sites"][1]["simulator"].update(port=15021),
                            "sites[1].simulator.port: port 15021 already used by sites[0]"),
    "same device endpoint across sites": (
        lambda d: d["sites"][1]["devices"][0]["transport"].update(port=15021),
        "sites[1].devices[0].transport: 127.0.0.1:15021 unit 1 already used by sites[0].devices[0].transport"),
    "same device endpoint in a site": (
        lambda d: d["sites"][0]["devices"][1]["transport"].update(unit=1),
        "sites[0].devices[1].transport: 127.0.0.1:15021 unit 1 already used by sites[0].devices[0].transport"),
    "bad timezone": (lambda d: d["fleet"].update(timezone="Mars/Olympus"),
                     "fleet.timezone: unknown timezone 'Mars/Olympus'"),
    "path as timezone": (lambda d: d["fleet"].update(timezone="../../etc/passwd"),
                         "fleet.timezone: unknown timezone '../../etc/passwd'"),
    "bad slot length": (lambda d: d["fleet"].update(slot_minutes=20), "fleet.slot_minutes: Input should be 15 or 30"),
    "stale cycles 0": (lambda d: d["sites"][0].update(control={"stale_cycles": 0}),
                       "sites[0].control.stale_cycles: must be >= 1"),
    "reserve hours negative": (lambda d: d["sites"][0].update(reserve={"h_disaster": -1}),
                               "sites[0].reserve.h_disaster: must be >= 0"),
    "mqtt with unknown field": (
        lambda d: d["sites"][0]["devices"][1].update(
            map=None, transport={"kind": "mqtt", "topic": "m", "fields": {"watts": "p"}}),
        "sites[0].devices[1]: transport.fields: watts not a meter field"),
    "mqtt device without a device broker": (
        lambda d: d["sites"][0]["devices"][1].update(
            map=None, transport={"kind": "mqtt", "topic": "m", "fields": {"power_w": "p"}}),
        "sites[0]: device_broker: required for the MQTT device(s) meter"),
    "device broker password inline": (
        lambda d: d["sites"][0].update(device_broker={"username": "gw", "password": "hunter2"}),
        "sites[0].device_broker.password: unknown key"),
    "yes as stop bits": (lambda d: d["sites"][0]["devices"][0].update(
        transport={"kind": "modbus_rtu", "device": "/dev/ttyUSB0", "stopbits": True}),
        "sites[0].devices[0].transport.stopbits: Input should be 1 or 2"),
    "poll period never fresh": (lambda d: d["sites"][0]["devices"][0].update(period_s=10),
                                "sites[0]: devices[0].period_s: 10 s is not below the stale limit"),
    "yes as seed": (lambda d: d["sites"][0]["simulator"].update(seed=True),
                    "sites[0].simulator.seed: Input should be a valid integer"),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_bad_fleet_files_name_file_and_field(cfg_dir, name):
    mutate, expected = CASES[name]
    path = write(cfg_dir, mutate)
    found = problems(path)
    assert any(line.startswith(f"{path}: {expected}") for line in found), found


def test_every_problem_is_reported_not_just_the_first(cfg_dir):
    def two(d):
        d["sites"][0]["battery"]["capacity_wh"] = -1
        d["sites"][1]["grid"]["import_limit_w"] = 0
    found = problems(write(cfg_dir, two))
    assert len(found) == 2
    assert found[1].endswith("sites[1].grid.import_limit_w: must be > 0")
    # fleet-level checks also come together
    def three(d):
        d["fleet"]["timezone"] = "Nowhere/Land"
        d["sites"][1]["id"] = "hall-01"
        d["sites"][1]["simulator"]["port"] = 15021
    found = problems(write(cfg_dir, three))
    assert [line.split(": ")[1] for line in found] == ["fleet.timezone", "sites[1].id", "sites[1].simulator.port"]


@pytest.mark.parametrize("text, expected", [
    ("fleet:\n  name: x\nsites:\n  - id: [unclosed\n", "line 5, column 1: invalid YAML"),
    ("fleet:\n\tname: x\n", "line 2, column 1: invalid YAML"),
    ("fleet:\n  name: a\n  name: b\nsites: []\n", "line 3, column 3: invalid YAML: duplicate key 'name'"),
    ("", "file is empty"),
    ("# only a comment\n", "file is empty"),
    ("- 1\n- 2\n", "must be a mapping of keys to values"),
])
def test_unparseable_files(cfg_dir, text, expected):
    path = cfg_dir / "fleet.yaml"
    path.write_text(text)
    found = problems(path)
    assert found == [f"{path}: {expected}"] or found[0].startswith(f"{path}: {expected}"), found


def test_missing_and_unreadable_files(cfg_dir):
    assert problems(cfg_dir / "nope.yaml") == [f"{cfg_dir / 'nope.yaml'}: file not found"]
    assert problems(cfg_dir) == [f"{cfg_dir}: cannot read: Is a directory"]


def test_not_utf8(cfg_dir):
    path = cfg_dir / "fleet.yaml"
    path.write_bytes("fleet: {name: 湖山}\n".encode("shift_jis"))
    found = problems(path)
    assert found == [f"{path}: not UTF-8 text (byte 14); save the file as UTF-8"]


# -- the shipped fleet ---------------------------------------------------------------

@pytest.fixture(scope="module")
def fleet():
    return load_fleet(REPO / "config" / "fleet.yaml")


def test_shipped_fleet_loads_with_fourteen_halls(fleet):
    assert len(fleet.sites) == 14
    assert len({s.id for s in fleet.sites}) == 14
    ports = [s.simulator.port for s in fleet.sites]
    assert len(set(ports)) == 14
    endpoints = [(d.transport.host, d.transport.port, d.transport.unit)
                 for s in fleet.sites for d in s.devices]
    assert len(set(endpoints)) == len(endpoints)
    assert all(d.transport.host == "127.0.0.1" for s in fleet.sites for d in s.devices)
    assert state_dir_for(REPO / "config" / "fleet.yaml", fleet) == REPO / "var" / "state"


def test_shipped_halls_look_like_real_shelters(fleet):
    for s in fleet.sites:
        assert 10_000 <= s.battery.capacity_wh <= 30_000, s.id
        assert 5_000 <= s.inverter.rated_w <= 10_000, s.id
        assert 5_000 <= s.pv.capacity_w <= 31_000, s.id
        assert 500 <= s.loads.critical_w <= 1_500, s.id
        assert 35.0 <= s.lat <= 35.7 and 133.1 <= s.lon <= 134.5, s.id  # Tottori prefecture
        assert s.area_code.startswith("31"), s.id


def test_every_halls_disaster_reserve_fits_between_its_soc_limits(fleet):
    for s in fleet.sites:
        p = s.safety_policy()
        need = reserve_energy_wh([s.loads.critical_w], [], 0.5, s.reserve.h_disaster,
                                 p.discharge_efficiency)
        usable = p.max_energy_wh - p.min_energy_wh
        assert s.reserve.h_disaster >= 12, s.id
        assert need <= usable, f"{s.id}: 12 h reserve {need:.0f} Wh > usable {usable:.0f} Wh"
        floor = reserve_floor_wh(p, "disaster_reserve", [s.loads.critical_w], [], 0.5)
        assert floor < p.max_energy_wh, s.id  # not capped: the battery can hold it
        assert reserve_floor_wh(p, "vpp", [s.loads.critical_w], [], 0.5) < floor
