"""Keep what a gateway builds once out of the garbage collector's full collections.

Modules, devices and the optimizer's Pyomo model (Pyomo alone is ~150k
objects) live as long as the process.  A full collection walks all of them:
about 60 ms for one ``ems run`` gateway, up to 0.22 s of wall time for the
simulation's one process with every hall (an earthquake drill on an idle
machine), a pause of every control cycle, and at 3600x 13 simulated minutes
of nobody watching the grid.  ``gc.freeze`` moves them to the permanent
generation: once at start, and again when each hall's first plan has built
its model.
"""

from __future__ import annotations

import asyncio
import gc
import time
from typing import Any, Iterable

#: Longest wait [s wall] for every hall's first plan before freezing what was built for it.
FIRST_PLANS_WAIT_S = 30.0


async def freeze_after_first_plans(gateways: Iterable[Any], stop: asyncio.Event | None = None,
                                   wait_s: float = FIRST_PLANS_WAIT_S) -> None:
    """Freeze now, then again once every gateway with a plan source (ems.gateway.compose.Gateway) has its
    first plan, or after ``wait_s`` [s], or not at all if ``stop`` is set first."""
    gateways = list(gateways)
    gc.freeze()
    deadline = time.monotonic() + wait_s
    while not all(g.plan_source is None or g.plan_source.plan is not None for g in gateways):
        if time.monotonic() >= deadline:
            break
        if stop is not None and stop.is_set():
            return
        await asyncio.sleep(0.2)
    gc.freeze()
