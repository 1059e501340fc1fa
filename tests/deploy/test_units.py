"""The generated systemd units pass `systemd-analyze verify` and carry the hardening we promise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.deploy.conftest import Deployment
from tests.servers import require_binary

UNITS = ("ems-gateway@.service", "ems-central.service", "ems-broker.service")


def _service(deployment: Deployment, name: str) -> dict[str, list[str]]:
    """The [Service] section as {key: [values]} (repeated keys kept)."""
    section: dict[str, list[str]] = {}
    current = None
    for line in (deployment.out / "systemd" / name).read_text().splitlines():
        line = line.strip()
        if line.startswith("["):
            current = line
        elif current == "[Service]" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            section.setdefault(key, []).append(value)
    return section


def test_systemd_analyze_verify(deployment: Deployment):
    analyze = require_binary("systemd-analyze", "systemd")
    unit_dir = deployment.out / "systemd"
    # A template is verified through an instance; systemd finds ems-gateway@.service beside it.
    targets = [unit_dir / "ems-gateway@hall-01.service", unit_dir / "ems-central.service",
               unit_dir / "ems-broker.service"]
    r = subprocess.run([analyze, "verify", *map(str, targets)], capture_output=True, text=True, timeout=60)
    ours = [line for line in (r.stdout + r.stderr).splitlines() if "ems-" in line]
    assert r.returncode == 0 and not ours, r.stdout + r.stderr


def test_verify_would_catch_a_missing_binary(deployment: Deployment, tmp_path):
    analyze = require_binary("systemd-analyze", "systemd")
    broken = tmp_path / "ems-central.service"
    broken.write_text((deployment.out / "systemd" / "ems-central.service").read_text()
                      .replace(f"{sys.prefix}/bin/ems", "/nonexistent/bin/ems"))
    r = subprocess.run([analyze, "verify", str(broken)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "/nonexistent/bin/ems" in r.stderr


@pytest.mark.parametrize("name", UNITS)
def test_hardening(deployment: Deployment, name: str):
    s = _service(deployment, name)
    for key, value in (("ProtectSystem", "strict"), ("ProtectHome", "yes"), ("PrivateTmp", "yes"),
                       ("NoNewPrivileges", "yes"), ("Restart", "on-failure")):
        assert s.get(key) == [value], (name, key)
    assert s["RestartSec"] and s["StateDirectory"] and s["User"]
    assert s["Type"] == ["notify"]
    if name != "ems-broker.service":  # the broker's user is the test's own here (--broker-user)
        assert s["User"] == ["ems"] and s["WatchdogSec"] and s["NotifyAccess"] == ["main"]
        assert s["ExecStart"][0].startswith(f"{sys.prefix}/bin/ems ")


def test_exec_lines_name_the_installed_files(deployment: Deployment):
    etc = deployment.root / "etc"
    gw = _service(deployment, "ems-gateway@.service")
    assert gw["ExecStart"] == [f"{sys.prefix}/bin/ems run --config {etc}/gateways/%i/gateway.yaml "
                               f"--state-dir %S/ems/%i"]
    assert gw["StateDirectory"] == ["ems/%i"]
    assert _service(deployment, "ems-central.service")["ExecStart"] == [
        f"{sys.prefix}/bin/ems central --config {etc}/central/central.yaml"]
    broker = _service(deployment, "ems-broker.service")
    assert broker["ExecStart"] == [f"/usr/sbin/mosquitto -c {etc}/broker/mosquitto.conf"]
    assert broker["ExecReload"] == ["/bin/kill -HUP $MAINPID"]
