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
