"""ems.sim.echonet_halls: some halls of the example fleet on ECHONET Lite, the rest on Modbus."""

from __future__ import annotations

from pathlib import Path

import pytest

from ems.cli.main import build_parser
from ems.config import load_fleet
from ems.errors import UsageError
from ems.sim.echonet_halls import with_echonet_halls
from ems.sim.runtime import relocated_fleet

FLEET = Path(__file__).parents[2] / "config" / "fleet.yaml"


def test_first_halls_move_to_echonet_lite():
    fleet = load_fleet(FLEET)
    mixed = with_echonet_halls(fleet, 3)
    kinds = [{d.transport.kind for d in s.devices} for s in mixed.sites]
    assert kinds[:3] == [{"echonet_lite"}] * 3 and all(k == {"modbus_tcp"} for k in kinds[3:])
    assert [d.id for d in mixed.sites[0].devices] == [d.id for d in fleet.sites[0].devices]
    assert all(d.map is None for d in mixed.sites[0].devices)
    moved = relocated_fleet(mixed, True, None, None)
    assert len({s.devices[0].transport.port for s in moved.sites[:3]}) == 3
    with pytest.raises(UsageError, match="--echonet-halls: 15"):
        with_echonet_halls(fleet, 15)


def test_demo_and_drill_take_the_option():
    parser = build_parser()
    assert parser.parse_args(["demo", "--echonet-halls", "5"]).echonet_halls == 5
    assert parser.parse_args(["drill", "x.yaml", "--report", "r", "--echonet-halls", "2"]).echonet_halls == 2
