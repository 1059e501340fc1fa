"""Fixtures for the drill tests: the shipped fleet and scenario files."""

from __future__ import annotations

from pathlib import Path

import pytest

from ems.config import load_fleet

ROOT = Path(__file__).resolve().parents[2]
FLEET_FILE = ROOT / "config" / "fleet.yaml"
SCENARIOS = ROOT / "config" / "scenarios"


@pytest.fixture(scope="session")
def fleet():
    return load_fleet(FLEET_FILE)
