"""Move some simulated halls of a fleet onto ECHONET Lite equipment (``ems demo/drill --echonet-halls N``).

The first N halls with a ``simulator:`` section get an ECHONET Lite storage
battery, smart meter and home solar object (instance 1) on one loopback node
instead of their Modbus devices; ids, natures, ratings and poll periods stay.
The simulation runtime then moves each node to a free UDP port, and the
gateways are composed by the same function as ever (the device factory
builds ECHONET Lite devices from the transport kind).
"""

from __future__ import annotations

from ems.config import FleetConfig
from ems.errors import UsageError

#: Node port before relocation: the hall's simulator port + this (the runtime moves it to a free port).
NODE_PORT_OFFSET = 1000


def with_echonet_halls(fleet: FleetConfig, count: int) -> FleetConfig:
    """A copy of ``fleet`` whose first ``count`` simulated halls are on ECHONET Lite; UsageError if too many."""
    simulated = [s for s in fleet.sites if s.simulator is not None]
    if not 0 <= count <= len(simulated):
        raise UsageError(f"--echonet-halls: {count} is not between 0 and the {len(simulated)} simulated halls")
    chosen = {s.id for s in simulated[:count]}
    data = fleet.model_dump(mode="python")
    for site in data["sites"]:
        if site["id"] not in chosen:
            continue
        transport = {"kind": "echonet_lite", "host": "127.0.0.1", "instance": 1, "local_port": 0,
                     "port": site["simulator"]["port"] + NODE_PORT_OFFSET}
        for dev in site["devices"]:
            dev["transport"] = dict(transport)
            dev["map"] = None
    return FleetConfig.model_validate(data)
