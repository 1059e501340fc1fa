"""The ``ems`` command line as a user runs it: real processes, real exit codes."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from tests.netutil import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
EMS = [sys.executable, "-m", "ems.cli"]


def run(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run([*EMS, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)


def one_site_config(tmp_path: Path, site_id: str = "hall-01") -> tuple[Path, int]:
    """A fleet file with one shipped site moved to a free port; devicemaps linked beside it."""
    fleet = yaml.safe_load((ROOT / "config" / "fleet.yaml").read_text(encoding="utf-8"))
    site = next(s for s in fleet["sites"] if s["id"] == site_id)
    port = free_port()
    site["simulator"]["port"] = port
    for d in site["devices"]:
        d["transport"]["port"] = port
    fleet["sites"] = [site]
    fleet["fleet"]["state_dir"] = str(tmp_path / "state")
    cfg_dir = tmp_path / "config"
    cfg_dir.mkdir()
    (cfg_dir / "devicemaps").symlink_to(ROOT / "config" / "devicemaps")
    path = cfg_dir / "fleet.yaml"
    path.write_text(yaml.safe_dump(fleet, allow_unicode=True), encoding="utf-8")
    return path, port


def test_help_of_every_command():
    out = run("--help")
    assert out.returncode == 0
    for cmd in ("check-config", "simulate", "run", "demo", "bench"):
        assert cmd in out.stdout
        sub = run(cmd, "--help")
        assert sub.returncode == 0 and "usage: ems " + cmd in sub.stdout


def test_check_config_accepts_the_shipped_fleet():
    out = run("check-config", "--config", "config/fleet.yaml")
    assert out.returncode == 0, out.stderr
    assert "14 sites" in out.stdout


def test_bad_config_is_one_line_per_problem_and_exit_2(tmp_path):
    path, _ = one_site_config(tmp_path)
    text = path.read_text(encoding="utf-8").replace("capacity_wh: 15000", "capacity_wh: -1")
    path.write_text(text, encoding="utf-8")
    out = run("run", "--config", str(path), "--site", "hall-01")
    assert out.returncode == 2
    assert "Traceback" not in out.stderr
    assert re.search(r"fleet\.yaml: sites\[0\]\.battery\.capacity_wh: must be > 0", out.stderr), out.stderr


def test_unknown_site_is_exit_2_naming_the_known_ones(tmp_path):
    path, _ = one_site_config(tmp_path)
    out = run("run", "--config", str(path), "--site", "hall-99")
    assert out.returncode == 2
    assert "unknown site 'hall-99'" in out.stderr and "hall-01" in out.stderr
    assert "Traceback" not in out.stderr


def test_demo_bad_option_is_exit_2():
    out = run("demo", "--outage", "hall-01:x:5", "--duration", "1")
    assert out.returncode == 2 and "--outage" in out.stderr


def test_simulate_and_run_as_two_processes(tmp_path):
    """`ems simulate` serves the hall, `ems run` controls it over loopback Modbus."""
    path, port = one_site_config(tmp_path)
    sim = subprocess.Popen([*EMS, "simulate", "--config", str(path)], cwd=ROOT,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port, timeout_s=20)
        out = run("run", "--config", str(path), "--site", "hall-01", "--duration", "8", timeout=60)
        assert out.returncode == 0, out.stderr
        log = out.stderr + out.stdout
        assert "effective mode safe -> vpp" in log, log[-2000:]
        assert re.search(r"hall-01 vpp +SoC +\d", out.stdout), out.stdout
    finally:
        sim.send_signal(signal.SIGINT)
        try:
            sim.wait(timeout=10)
        except subprocess.TimeoutExpired:
            sim.kill()
    assert sim.returncode in (0, -signal.SIGINT, 130), sim.stdout.read() if sim.stdout else ""


def test_run_without_devices_stays_up_in_safe_mode(tmp_path):
    """Nothing listens on the hall's port: the daemon runs, stays safe, exits cleanly."""
    path, _ = one_site_config(tmp_path)
    out = run("run", "--config", str(path), "--site", "hall-01", "--duration", "6", timeout=60)
    assert out.returncode == 0, out.stderr
    assert "vpp" not in re.findall(r"hall-01 (\w+)", out.stdout), out.stdout
    assert re.search(r"hall-01 safe", out.stdout), out.stdout


# -- issue 11: hostile files are refused by check-config with one line naming file and field ----------

def _copied_config(tmp_path: Path) -> Path:
    """A one-hall fleet file with a copy (not a link) of the shipped maps beside it; returns the file."""
    import shutil

    path, _ = one_site_config(tmp_path)
    maps = path.parent / "devicemaps"
    maps.unlink()
    shutil.copytree(ROOT / "config" / "devicemaps", maps)
    return path


def _deep_fleet(path: Path) -> str:
    path.write_text("[" * 100_000, encoding="utf-8")
    return rf"{re.escape(str(path))}: line 1, column \d+: invalid YAML: nested deeper than 64 levels"


def _overlapping_map(path: Path) -> str:
    maps = path.parent / "devicemaps"
    text = (maps / "generic_battery.yaml").read_text(encoding="utf-8").replace(
        "  - {name: max_charge,", "  - {name: foo, address: 3, type: uint16}\n  - {name: max_charge,")
    (maps / "x.yaml").write_text(text.replace("name: generic_battery", "name: x"), encoding="utf-8")
    path.write_text(path.read_text(encoding="utf-8").replace("map: generic_battery", "map: x"), encoding="utf-8")
    return rf"{re.escape(str(maps / 'x.yaml'))}: points\.foo: overlaps points\.power \(registers 3-3\)"


def _map_of_another_nature(path: Path) -> str:
    path.write_text(path.read_text(encoding="utf-8").replace("map: generic_battery", "map: sdm630"), encoding="utf-8")
    return rf"{re.escape(str(path))}: sites\[0\]\.devices\[0\]\.map: 'sdm630' is a meter map"


def _state_dir_is_a_file(path: Path) -> str:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    taken = path.parent / "state.txt"
    taken.write_text("a file", encoding="utf-8")
    doc["fleet"]["state_dir"] = str(taken)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return rf"{re.escape(str(path))}: fleet\.state_dir: {re.escape(str(taken))} exists and is not a folder"


def _set(path: Path, section: str, **values) -> None:
    """Update ``fleet`` or the one site (``site``, or a sub-mapping such as ``reserve``) of the file."""
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    target = doc["fleet"] if section == "fleet" else doc["sites"][0] if section == "site" \
        else doc["sites"][0].setdefault(section, {})
    target.update(values)
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")


def _reserve_too_big(path: Path) -> str:
    _set(path, "reserve", h_disaster=72)
    return (rf"{re.escape(str(path))}: sites\[0\]\.reserve\.h_disaster: 72 h of critical load needs 68\.2 kWh, "
            r"the battery holds 12\.8 kWh usable \(15 kWh between 10 % and 95 %\)")


def _no_disaster_reserve(path: Path) -> str:
    _set(path, "reserve", h_disaster=0)
    return rf"{re.escape(str(path))}: sites\[0\]\.reserve\.h_disaster: must be > 0"


def _pv_never_fresh(path: Path) -> str:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    pv = next(d for d in doc["sites"][0]["devices"] if d["nature"] == "pv")
    pv["period_s"] = 3600
    path.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    return rf"{re.escape(str(path))}: sites\[0\]: devices\[2\]\.period_s: 3600 s is not below the stale limit"


def _nul_in_hall_name(path: Path) -> str:
    _set(path, "site", name="湖山\x00公民館")
    return rf"{re.escape(str(path))}: sites\[0\]\.name: control character U\+0000 at character 3"


def _ten_mb_hall_name(path: Path) -> str:
    _set(path, "site", name="TEN-MB")
    path.write_text(path.read_text(encoding="utf-8").replace("TEN-MB", "x" * 10_000_000), encoding="utf-8")
    return rf"{re.escape(str(path))}: sites\[0\]\.name: 10000000 characters; at most 100"


HOSTILE = {
    "pv polled hourly": _pv_never_fresh,
    "NUL in a hall name": _nul_in_hall_name,
    "10 MB hall name": _ten_mb_hall_name,
    "72 h reserve on a 15 kWh hall": _reserve_too_big,
    "0 h disaster reserve": _no_disaster_reserve,
    "state_dir is a file": _state_dir_is_a_file,
    "100,000 nested lists": _deep_fleet,
    "map with overlapping points": _overlapping_map,
    "map of another nature": _map_of_another_nature,
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_check_config_refuses_a_hostile_file_with_one_line_and_exit_2(tmp_path, case):
    path = _copied_config(tmp_path)
    expected = HOSTILE[case](path)
    out = run("check-config", "--config", str(path))
    assert out.returncode == 2, (out.returncode, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and re.fullmatch("error: " + expected + ".*", lines[0]), out.stderr
