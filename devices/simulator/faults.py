"""Faults a test or drill can inject into what the simulated devices serve.

Battery faults are physics (the inverter stops, see
:meth:`devices.simulator.physics.HallPhysics.inject_battery_fault`).  The
faults here only change the registers a device serves, as a broken
communication module or firmware would: frozen registers, garbage values,
SunSpec "not implemented" sentinels.  The server reads this object every
time it refreshes a device's registers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from devices.readings import Nature


@dataclass
class RegisterFaults:
    """Register-level faults per device nature.

    frozen: natures whose registers stop updating (values stay as they were);
    garbage: nature → {point name: value [map units, our sign]} served instead
    of the physics value (e.g. ``{"soc": 140.0}``);
    sentinels: natures whose every readable point serves the SunSpec "not
    implemented" raw value of its type; refused_writes: natures that answer
    every write with a Modbus exception (device failure); ignored_setpoints:
    the battery takes setpoint writes (they read back) but does not follow
    them, as an inverter left in local mode does.
    """

    frozen: set[Nature] = field(default_factory=set)
    garbage: dict[Nature, dict[str, float]] = field(default_factory=dict)
    sentinels: set[Nature] = field(default_factory=set)
    refused_writes: set[Nature] = field(default_factory=set)
    ignored_setpoints: bool = False

    def freeze(self, nature: Nature | str, on: bool = True) -> None:
        """Stop (or resume) refreshing the registers of the ``nature`` device."""
        n = Nature(nature)
        (self.frozen.add if on else self.frozen.discard)(n)

    def serve_garbage(self, nature: Nature | str, point: str, value: float) -> None:
        """Serve ``value`` for ``point`` of the ``nature`` device instead of the physics value."""
        self.garbage.setdefault(Nature(nature), {})[point] = value

    def serve_sentinels(self, nature: Nature | str, on: bool = True) -> None:
        """Serve "not implemented" raw values for every point of the ``nature`` device."""
        n = Nature(nature)
        (self.sentinels.add if on else self.sentinels.discard)(n)

    def refuse_writes(self, nature: Nature | str, on: bool = True) -> None:
        """Answer (or stop answering) every write to the ``nature`` device with a Modbus exception."""
        n = Nature(nature)
        (self.refused_writes.add if on else self.refused_writes.discard)(n)

    def ignore_setpoints(self, on: bool = True) -> None:
        """The battery accepts setpoint writes but does not follow them (or follows them again)."""
        self.ignored_setpoints = on

    def clear(self) -> None:
        """Remove every register fault."""
        self.frozen.clear()
        self.garbage.clear()
        self.sentinels.clear()
        self.refused_writes.clear()
        self.ignored_setpoints = False

    @property
    def active(self) -> bool:
        """True when any register fault is injected."""
        return bool(self.frozen or self.garbage or self.sentinels or self.refused_writes or self.ignored_setpoints)
