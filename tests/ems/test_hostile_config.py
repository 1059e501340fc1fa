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
from devices.readings import Nature
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


# -- item 12: a state folder the daemon cannot use ----------------------------------------

def fleet_state_dir(value: str):
    return lambda d: d["fleet"].update(state_dir=value)


@pytest.fixture
def not_writable(monkeypatch):
    """Folders made read-only (mode 0555) really are, even for root, who writes anywhere.

    Root passes every os.access check, and the tests run as root in CI; so
    os.access here answers from the mode bits as it would for the daemon's
    own (non-root) user.  Returns the function that locks a folder.
    """
    import os
    import stat

    real_access = os.access

    def access(path, mode, *a, **kw):
        if mode & os.W_OK and os.path.isdir(path) and not os.stat(path).st_mode & stat.S_IWUSR:
            return False
        return real_access(path, mode, *a, **kw)

    monkeypatch.setattr(os, "access", access)

    def lock(folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        folder.chmod(0o555)
        return folder

    yield lock


def test_a_fleet_state_dir_that_is_a_file_is_refused_at_load(cfg_dir):
    taken = cfg_dir / "state.txt"
    taken.write_text("not a folder")
    path = write(cfg_dir, fleet_state_dir(str(taken)))
    assert problems(path) == [f"{path}: fleet.state_dir: {taken} exists and is not a folder: "
                              "the daemons would have nowhere to save their mode"]


def test_a_relative_fleet_state_dir_is_resolved_like_state_dir_for(cfg_dir):
    (cfg_dir.parent / "var").write_text("a file where the state folder's parent should be")
    path = write(cfg_dir, fleet_state_dir("var/state"))
    assert problems(path) == [f"{path}: fleet.state_dir: {cfg_dir.parent / 'var'} is not a folder: "
                              f"cannot create {cfg_dir.parent / 'var' / 'state'}"]


def test_a_fleet_state_dir_under_an_unwritable_folder_is_refused_where_it_is_used(cfg_dir, not_writable):
    from ems.config import state_dir_for

    locked = not_writable(cfg_dir.parent / "locked")
    path = write(cfg_dir, fleet_state_dir(str(locked / "state")))
    # Loading stays possible: deployed gateways and the central service read this fleet file from a
    # read-only /etc/ems and never use its state_dir (each gateway file has its own).
    fleet = load_fleet(path)
    with pytest.raises(ConfigError) as info:
        state_dir_for(path, fleet)  # `ems run --config fleet.yaml --site ...` saves its mode there
    assert info.value.problems == [f"{path}: fleet.state_dir: cannot create {locked / 'state'}: "
                                   f"{locked} is not writable"]


def test_check_config_refuses_a_fleet_state_dir_it_could_not_create(cfg_dir, not_writable, capsys):
    from ems.cli.main import main

    locked = not_writable(cfg_dir.parent / "locked")
    path = write(cfg_dir, fleet_state_dir(str(locked / "state")))
    assert main(["check-config", "--config", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"error: {path}: fleet.state_dir: cannot create {locked / 'state'}: {locked} is not writable"]


def test_an_existing_writable_state_dir_is_fine(cfg_dir, not_writable):
    from ems.config import state_dir_for

    state = cfg_dir.parent / "state"
    state.mkdir()
    path = write(cfg_dir, fleet_state_dir(str(state)))
    assert state_dir_for(path, load_fleet(path)) == state


def gateway_file(tmp_path: Path, state_dir: Path) -> Path:
    path = tmp_path / "gateway.yaml"
    path.write_text(f"fleet: {REPO / 'config' / 'fleet.yaml'}\nsite: hall-01\nstate_dir: {state_dir}\n")
    return path


def test_a_gateway_state_dir_that_is_a_file_is_refused(tmp_path):
    from ems.gateway.config import load_gateway_config

    taken = tmp_path / "state"
    taken.write_text("")
    path = gateway_file(tmp_path, taken)
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path)
    assert info.value.problems == [f"{path}: state_dir: {taken} exists and is not a folder: "
                                   "the daemons would have nowhere to save their mode"]


def test_a_gateway_state_dir_under_an_unwritable_folder_is_refused(tmp_path, not_writable):
    from ems.gateway.config import load_gateway_config

    locked = not_writable(tmp_path / "locked")
    path = gateway_file(tmp_path, locked / "hall-01")
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path)
    assert info.value.problems == [f"{path}: state_dir: cannot create {locked / 'hall-01'}: {locked} is not writable"]


def test_a_gateway_state_dir_that_is_itself_unwritable_is_refused(tmp_path, not_writable):
    from ems.gateway.config import load_gateway_config

    locked = not_writable(tmp_path / "state")
    path = gateway_file(tmp_path, locked)
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path)
    assert info.value.problems == [f"{path}: state_dir: {locked} is not writable"]


# -- item 13: a reserve the battery cannot hold ---------------------------------------------

def reserve(i: int, **kw):
    return lambda d: d["sites"][i].update(reserve=kw)


def test_72_hours_on_a_15_kwh_hall_is_refused_with_the_figures(cfg_dir):
    path = write(cfg_dir, reserve(1, h_disaster=72))
    assert problems(path) == [
        f"{path}: sites[1].reserve.h_disaster: 72 h of critical load needs 68.2 kWh, "
        "the battery holds 12.8 kWh usable (15 kWh between 10 % and 95 %)"]


def test_a_narrow_soc_window_that_cannot_hold_12_hours_is_refused(cfg_dir):
    def narrow(d):
        d["sites"][0]["battery"].update(soc_min_pct=40, soc_max_pct=60)
    found = problems(write(cfg_dir, narrow))
    assert len(found) == 1 and found[0].endswith(
        "sites[0].reserve.h_disaster: 12 h of critical load needs 11.4 kWh, "
        "the battery holds 3.0 kWh usable (15 kWh between 40 % and 60 %)"), found


def test_the_discharge_efficiency_of_the_policy_counts(cfg_dir):
    # 12 h × 900 W = 10.8 kWh: fits 12.75 kWh usable at 95 %, not at 80 % (13.5 kWh from storage)
    load_fleet(write(cfg_dir))
    found = problems(write(cfg_dir, lambda d: d["sites"][0]["battery"].update(discharge_efficiency=0.8)))
    assert len(found) == 1 and "sites[0].reserve.h_disaster: 12 h of critical load needs 13.5 kWh" in found[0], found


def test_the_figure_is_the_daemons_reserve_over_a_day(cfg_dir):
    """The same critical profile and reserve function as the daemon's ReservePolicy, averaged
    over every start slot of a day (more lighting at night, less by day)."""
    from datetime import datetime, timedelta, timezone

    from ems.config import reserve_need_wh
    from ems.gateway.reserve_policy import ReservePolicy
    from optimizer.reserve import reserve_energy_wh

    site = load_fleet(write(cfg_dir)).sites[0]
    policy = site.safety_policy()
    rp = ReservePolicy(policy, site.loads.critical_w, 0.5)
    start = datetime(2025, 1, 6, tzinfo=timezone.utc)
    needs = []
    for k in range(48):
        critical, pv = rp.critical_forecast(start + k * timedelta(minutes=30))
        needs.append(reserve_energy_wh(critical, pv, 0.5, 12, policy.discharge_efficiency, policy.pv_pessimism))
    assert reserve_need_wh(site, 30) == pytest.approx(sum(needs) / len(needs), rel=1e-9)
    assert min(needs) < reserve_need_wh(site, 30) < max(needs)


def test_a_zero_hour_disaster_reserve_is_refused(cfg_dir):
    path = write(cfg_dir, reserve(0, h_disaster=0))
    assert problems(path) == [f"{path}: sites[0].reserve.h_disaster: must be > 0 "
                              "(the hours of critical load a shelter keeps for a disaster)"]


def test_a_vpp_reserve_longer_than_the_disaster_reserve_is_refused(cfg_dir):
    path = write(cfg_dir, reserve(0, h_vpp=8, h_disaster=6))
    assert problems(path) == [f"{path}: sites[0].reserve.h_vpp: 8 h is more than h_disaster (6 h)"]


def test_a_negative_vpp_reserve_is_refused(cfg_dir):
    path = write(cfg_dir, reserve(0, h_vpp=-1))
    assert problems(path) == [f"{path}: sites[0].reserve.h_vpp: must be >= 0"]


def test_the_shipped_fleet_still_loads():
    fleet = load_fleet(REPO / "config" / "fleet.yaml")
    assert all(s.reserve.h_disaster == 12 for s in fleet.sites)


# -- item 14: poll periods that are never fresh, names that are not names ----------------------

PV = {"id": "pv", "nature": "pv", "map": "sunspec", "period_s": 2,
      "transport": {"kind": "modbus_tcp", "host": "127.0.0.1", "port": 15021, "unit": 3}}


def with_pv(period_s: float):
    def mutate(d):
        d["sites"][0]["devices"].append({**PV, "period_s": period_s})
    return mutate


def test_a_pv_poll_period_that_is_never_fresh_is_refused_like_the_batterys(cfg_dir):
    path = write(cfg_dir, with_pv(3600))
    assert problems(path) == [
        f"{path}: sites[0]: devices[2].period_s: 3600 s is not below the stale limit control.stale_cycles × "
        "control.cycle_s = 5 s; its readings would always be stale"]


def test_a_pv_poll_period_below_the_stale_limit_is_fine(cfg_dir):
    assert load_fleet(write(cfg_dir, with_pv(4.5))).sites[0].device(Nature.PV).period_s == 4.5


def name(where: str, value: str):
    def mutate(d):
        if where == "fleet":
            d["fleet"]["name"] = value
        else:
            d["sites"][0][where] = value
    return mutate


@pytest.mark.parametrize("where, value, expected", [
    ("name", "Koyama\x00hall", "sites[0].name: control character U+0000 at character 7; a name is printable text"),
    ("name", "   ", "sites[0].name: must not be blank"),
    ("name", "", "sites[0].name: must not be blank"),
    ("name", "x" * 101, "sites[0].name: 101 characters; at most 100"),
    ("name", "湖山公民館\nKoyama", "sites[0].name: control character U+000A at character 6; a name is printable text"),
    ("area_name", "鳥取市\u202e", "sites[0].area_name: control character U+202E at character 4; a name is printable text"),
    ("area_name", " ", "sites[0].area_name: must not be blank"),
    ("fleet", "VPP\x1b[31m", "fleet.name: control character U+001B at character 4; a name is printable text"),
    ("fleet", "", "fleet.name: must not be blank"),
])
def test_names_are_printable_text_of_sane_length(cfg_dir, where, value, expected):
    path = write(cfg_dir, name(where, value))
    assert problems(path) == [f"{path}: {expected}"]


def test_a_10_mb_hall_name_is_refused_without_echoing_it(cfg_dir):
    path = write(cfg_dir, name("name", "TEN-MB"))
    path.write_text(path.read_text(encoding="utf-8").replace("TEN-MB", "x" * 10_000_000), encoding="utf-8")
    found = problems(path)
    assert found == [f"{path}: sites[0].name: 10000000 characters; at most 100"]


def test_real_names_pass(cfg_dir):
    # Japanese with an ideographic variation selector (葛󠄀: U+845B U+E0100), an empty area name (not given)
    fleet = load_fleet(write(cfg_dir, lambda d: (d["sites"][0].update(name="葛\U000E0100飾公民館 (Katsushika) 第2", area_name=""),
                                                 d["fleet"].update(name="x" * 100))))
    assert fleet.sites[0].name.startswith("葛")
