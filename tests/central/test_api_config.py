"""central.yaml: the example loads, bad files name file and field, secrets never inline; `ems central` runs."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import urllib.request

from devices.configfile import ConfigError
from ems.central.cli import build_service
from ems.central.config import load_central_config
from tests.netutil import free_port, wait_for_port

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "config" / "central.example.yaml"


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "fleet.yaml").write_text((ROOT / "config" / "fleet.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "devicemaps").symlink_to(ROOT / "config" / "devicemaps")
    p = tmp_path / "central.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def test_example_loads_with_the_password_from_the_environment(monkeypatch):
    monkeypatch.setenv("EMS_MQTT_PASSWORD", "from-the-env")
    cfg = load_central_config(EXAMPLE)
    assert (cfg.listen.host, cfg.listen.port) == ("127.0.0.1", 8080)
    assert cfg.fleet_path == ROOT / "config" / "fleet.yaml"
    assert cfg.mqtt.settings(cfg.base_dir).password == "from-the-env"
    assert cfg.history.backend == "local" and cfg.public_page


def test_missing_secret_names_the_field(monkeypatch):
    monkeypatch.delenv("EMS_MQTT_PASSWORD", raising=False)
    with pytest.raises(ConfigError) as err:
        load_central_config(EXAMPLE)
    assert "mqtt.password_env" in str(err.value) and "EMS_MQTT_PASSWORD" in str(err.value)


@pytest.mark.parametrize("text, field", [
    ("listen: {port: 70000}\n", "listen.port"),
    ("mqtt: {password: hunter2}\n", "mqtt.password"),  # inline passwords are not accepted
    ("history: {backend: influx1}\n", "history"),
    ("history: {backend: influx1, url: 'ftp://x'}\n", "history"),
    ("jma: {enabled: true}\n", "jma"),
    ("jma: {poll_s: 1}\n", "jma.poll_s"),
    ("jma: {kinds: [earthquake]}\n", "jma.kinds[0]"),
    ("sessions: {ttl_s: -1}\n", "sessions.ttl_s"),
    ("public_page: maybe\n", "public_page"),
    ("colour: red\n", "colour"),
])
def test_bad_files_name_file_and_field(tmp_path, text, field):
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_central_config(path)
    assert str(path) in str(err.value) and field in str(err.value), str(err.value)


def test_password_file_is_read_relative_to_the_config(tmp_path):
    (tmp_path / "secret").write_text("s3cret\n")
    cfg = load_central_config(write(tmp_path, "mqtt: {password_file: secret}\n"))
    assert cfg.mqtt.settings(cfg.base_dir).password == "s3cret"
    (tmp_path / "secret").unlink()
    with pytest.raises(ConfigError, match="mqtt.password_file: secret file .*cannot read"):
        load_central_config(tmp_path / "central.yaml")


def test_build_service_from_config_with_jma_folder(tmp_path):
    (tmp_path / "jma").mkdir()
    cfg = load_central_config(write(tmp_path, "data_dir: data\nmqtt: {username: null}\n"
                                              "jma: {enabled: true, source: jma, poll_s: 30}\n"))
    service = build_service(cfg)
    assert len(service.sites) == 14 and service.jma is not None and service.jma.poll_s == 30
    assert service.jma_status.source == str(tmp_path / "jma")
    assert (tmp_path / "data" / "users.sqlite").exists() and (tmp_path / "data" / "audit.sqlite").exists()


def _cli(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "ems.cli", "central", *args], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, **(env or {})}, timeout=60, **kw)


def test_cli_bad_config_is_one_line_per_problem_and_exit_2(tmp_path):
    r = _cli("--config", str(write(tmp_path, "listen: {port: 0}\n")))
    assert r.returncode == 2
    assert "listen.port" in r.stderr and "Traceback" not in r.stderr
    r = _cli("--config", str(tmp_path / "nope.yaml"))
    assert r.returncode == 2 and "file not found" in r.stderr


def test_cli_serves_the_dashboard_and_public_page(tmp_path):
    port = free_port()
    path = write(tmp_path, f"data_dir: data\nlisten: {{port: {port}}}\nmqtt: {{port: {free_port()}, username: null}}\n")
    proc = subprocess.Popen([sys.executable, "-m", "ems.cli", "central", "--config", str(path)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        wait_for_port(port, timeout_s=30)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/public/shelters", timeout=10) as r:
            assert r.status == 200 and b"Koyama" in r.read()
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert b"Shelter EMS" in r.read()
    finally:
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=30)
    assert "no users yet" in out and "ems users add" in out
