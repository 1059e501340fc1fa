"""The jma: section of central.yaml: each trigger's settings, validated with errors naming the field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from devices.configfile import ConfigError
from ems.central.config import load_central_config
from ems.central.jma.config_spec import trigger_kwargs
from ems.central.jma.trigger import WarningTrigger

ROOT = Path(__file__).resolve().parents[3]


def write_config(tmp_path: Path, jma: str) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "config" / "fleet.yaml", tmp_path / "fleet.yaml")
    (tmp_path / "devicemaps").symlink_to(ROOT / "config" / "devicemaps")
    (tmp_path / "jma").mkdir()
    p = tmp_path / "central.yaml"
    p.write_text("data_dir: data\nmqtt: {username: null}\njma: {enabled: true, source: jma, " + jma + "}\n",
                 encoding="utf-8")
    return p


def test_defaults_and_a_full_section_build_the_trigger(tmp_path):
    cfg = load_central_config(write_config(tmp_path, ""))
    t = WarningTrigger([], **trigger_kwargs(cfg.jma))
    assert t.kinds == {"storm", "heavy_rain", "storm_surge", "landslide", "typhoon"}
    assert (t.quake_min_intensity, t.typhoon_lead.total_seconds(), t.tsunami_lower_action) == ("5-", 86400, "suggest")
    assert not t.accept_drills  # never from a config file
    cfg = load_central_config(write_config(tmp_path / "full", (
        "kinds: [storm, heavy_snow], min_level: 4, warning_action: suggest, "
        "typhoon: {lead_h: 36, action: suggest}, "
        "earthquake: {min_intensity: 6弱, action: switch, radius_km: 50, min_magnitude: 6.5, hold_h: 12}, "
        "tsunami: {grades: [major_warning], action: suggest, lower_action: none}")))
    t = WarningTrigger([], **trigger_kwargs(cfg.jma))
    assert (t.min_level, t.warning_action, t.typhoon_action, t.quake_min_intensity) == (4, "suggest", "suggest", "6-")
    assert (t.quake_radius_km, t.quake_min_magnitude, t.tsunami_action, t.tsunami_lower_action) == (
        50, 6.5, "suggest", "none")
    cfg = load_central_config(write_config(tmp_path / "off", "earthquake: {enabled: false}"))
    assert WarningTrigger([], **trigger_kwargs(cfg.jma)).quake_min_intensity is None


@pytest.mark.parametrize("jma, field", [
    ("earthquake: {min_intensity: 8}", "jma.earthquake.min_intensity: must be a JMA seismic intensity"),
    ("earthquake: {min_intensity: 5中}", "jma.earthquake.min_intensity"),
    ("earthquake: {radius_km: 50}", "radius_km and min_magnitude go together"),
    ("earthquake: {action: ignore}", "jma.earthquake.action"),
    ("typhoon: {lead_h: 0}", "jma.typhoon.lead_h"),
    ("typhoon: {lead_h: 500}", "jma.typhoon.lead_h"),
    ("tsunami: {grades: []}", "jma.tsunami.grades"),
    ("tsunami: {grades: [huge]}", "jma.tsunami.grades[0]"),
    ("tsunami: {lower_action: switch}", "jma.tsunami.lower_action"),
    ("warning_action: maybe", "jma.warning_action"),
    ("kinds: [tsunami]", "jma.kinds[0]"),
    ("min_level: 1", "jma.min_level"),
    ("accept_drills: true", "jma.accept_drills"),
])
def test_errors_name_the_field(tmp_path, jma, field):
    path = write_config(tmp_path, jma)
    with pytest.raises(ConfigError) as err:
        load_central_config(path)
    assert str(path) in str(err.value) and field in str(err.value), str(err.value)
