"""The example fleet with ECHONET Lite halls: validated like the others, relocated for simulation."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from devices.configfile import ConfigError
from ems.config import load_fleet
from ems.sim.runtime import relocated_fleet

EXAMPLE = Path(__file__).parents[3] / "config" / "fleet-echonet.yaml"


def _write(folder: Path, data: dict) -> Path:
    (folder / "devicemaps").symlink_to(EXAMPLE.parent / "devicemaps")  # the Modbus halls' maps
    path = folder / "fleet.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


def test_example_fleet_mixes_echonet_and_modbus_halls():
    fleet = load_fleet(EXAMPLE)
    kinds = {s.id: {d.transport.kind for d in s.devices} for s in fleet.sites}
    assert sum(k == {"echonet_lite"} for k in kinds.values()) == 5
    assert sum(k == {"modbus_tcp"} for k in kinds.values()) == 9
    moved = relocated_fleet(fleet, True, None, None)
    ports = [s.devices[0].transport.port for s in moved.sites if s.devices[0].transport.kind == "echonet_lite"]
    assert len(set(ports)) == 5 and all(s.devices[0].transport.local_port == 0 for s in moved.sites[:5])


def test_errors_name_file_and_field(tmp_path):
    data = yaml.safe_load(EXAMPLE.read_text())
    data["sites"][1]["devices"][0]["transport"]["port"] = data["sites"][0]["devices"][0]["transport"]["port"]
    data["sites"][2]["devices"][1]["transport"]["instance"] = 0
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_fleet(path)
    text = "\n".join(err.value.problems)
    assert "sites[2].devices[1].transport" in text and "instance" in text
    assert str(path) in text


def test_two_halls_cannot_share_a_loopback_node(tmp_path):
    data = yaml.safe_load(EXAMPLE.read_text())
    first = data["sites"][0]["devices"][0]["transport"]["port"]
    for dev in data["sites"][1]["devices"]:
        dev["transport"]["port"] = first
    path = _write(tmp_path, data)
    with pytest.raises(ConfigError) as err:
        load_fleet(path)
    text = "\n".join(err.value.problems)
    assert f"sites[1].devices[0].transport: 127.0.0.1:{first} battery instance 1 already used by sites[0]" in text
