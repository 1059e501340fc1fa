"""ems.gateway.config: the gateway file is validated like the fleet file; errors name the file and the field."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from devices.configfile import ConfigError
from ems.gateway.config import load_gateway_config

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "config" / "fleet.yaml"


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def problems(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_gateway_config(path)
    return info.value.problems


def test_a_minimal_file_loads_with_paths_from_its_own_folder(tmp_path):
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "mqtt.password").write_text("s3cret-word\n")
    path = write(tmp_path, f"fleet: {FLEET}\nsite: hall-01\n"
                           "uplink: {host: 127.0.0.1, port: 1883, username: gw-hall-01, "
                           "password_file: secrets/mqtt.password}\n")
    cfg = load_gateway_config(path)
    assert cfg.state_path == tmp_path / "state"
    assert cfg.maps_path == FLEET.parent / "devicemaps"
    assert cfg.prices.source == "central" and cfg.weather.source == "central"
    assert cfg.uplink._secret("password", cfg.base_dir) == "s3cret-word"


@pytest.mark.parametrize("text, where", [
    ("site: hall-01\n", "fleet"),
    (f"fleet: {FLEET}\nsite: hall-01\nsurprise: 1\n", "surprise"),
    (f"fleet: {FLEET}\nsite: hall-01\nuplink: {{host: h, port: 70000}}\n", "uplink.port"),
    (f"fleet: {FLEET}\nsite: hall-01\nuplink: {{host: h, password: inline}}\n", "uplink.password"),
    (f"fleet: {FLEET}\nsite: hall-01\nuplink: {{host: h, ca_file: ca.pem}}\n", "uplink"),
    (f"fleet: {FLEET}\nsite: hall-01\ntelemetry: {{influx: {{api: v3, url: 'http://x'}}}}\n", "telemetry.influx"),
    (f"fleet: {FLEET}\nsite: hall-01\ntelemetry: {{influx: {{api: v1, url: 'ftp://x', database: d}}}}\n",
     "telemetry.influx.url"),
    (f"fleet: {FLEET}\nsite: hall-01\nprices: {{source: jepx_csv}}\n", "prices"),
    (f"fleet: {FLEET}\nsite: hall-01\nprices: {{tariff: {{kind: tou, periods: [{{from_hour: 7, jpy_per_kwh: 30}}]}}}}\n",
     "prices.tariff"),
    (f"fleet: {FLEET}\nsite: hall-01\nprices: {{jepx_area: Chugoku}}\n", "prices.jepx_area"),
    (f"fleet: {FLEET}\nsite: hall-01\nweather: {{source: jma}}\n", "weather.source"),
    (f"fleet: {FLEET}\nsite: hall-01\nplanner: {{horizon_slots: 2}}\n", "planner.horizon_slots"),
])
def test_bad_fields_are_named(tmp_path, text, where):
    path = write(tmp_path, text)
    lines = problems(path)
    assert any(line.startswith(f"{path}: {where}") for line in lines), lines


def test_missing_files_and_secrets_are_named(tmp_path, monkeypatch):
    monkeypatch.delenv("EMS_TEST_NO_SUCH_VAR", raising=False)
    path = write(tmp_path, "fleet: nowhere.yaml\nsite: hall-01\n"
                           "uplink: {host: h, tls: true, ca_file: ca.pem, password_file: secrets/none}\n"
                           "telemetry: {influx: {api: v2, url: 'http://127.0.0.1:1', bucket: b, "
                           "token_env: EMS_TEST_NO_SUCH_VAR}}\n"
                           "prices: {source: jepx_csv, jepx_csv: prices/}\n")
    lines = problems(path)
    for field in ("fleet", "uplink.password_file", "uplink.ca_file", "telemetry.influx.token_env",
                  "prices.jepx_csv"):
        assert any(line.startswith(f"{path}: {field}:") for line in lines), (field, lines)
    assert not any("s3cret" in line for line in lines)


def test_ems_run_with_a_bad_gateway_file_exits_2_with_one_line_per_problem(tmp_path):
    path = write(tmp_path, f"fleet: {FLEET}\nsite: hall-01\nuplink: {{host: h, port: 0}}\n")
    proc = subprocess.run([sys.executable, "-m", "ems.cli", "run", "--config", str(path)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2, proc.stderr
    assert f"error: {path}: uplink.port" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_ems_run_names_an_unknown_site(tmp_path):
    path = write(tmp_path, f"fleet: {FLEET}\nsite: hall-99\n")
    proc = subprocess.run([sys.executable, "-m", "ems.cli", "run", "--config", str(path)], capture_output=True,
                          text=True, timeout=60, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 2 and "hall-99" in proc.stderr and "Traceback" not in proc.stderr
