"""Read planning: as few Modbus requests as possible for a register map.

Points are grouped by register table (holding/input), sorted by address and
merged while the hole between two points is at most ``RegisterMap.max_gap``
registers and the request stays within ``RegisterMap.max_read`` registers.
The plan is computed once per map (per device client), not per poll.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

from devices.registermap import Function, Point, RegisterMap


@dataclass(frozen=True)
class ReadRequest:
    """One read request: table, first register address, register count, and the points it covers."""

    function: Function
    address: int
    count: int
    points: tuple[Point, ...]

    @property
    def end(self) -> int:
        """First register address after this request."""
        return self.address + self.count

    @property
    def has_gaps(self) -> bool:
        """True when the request also reads registers no point uses."""
        return sum(p.word_count for p in self.points) < self.count

    def describe(self, limit: int = 4) -> str:
        """Point names for messages, e.g. ``soc, soh, power, +3 more``."""
        names = [p.name for p in self.points]
        extra = f", +{len(names) - limit} more" if len(names) > limit else ""
        return ", ".join(names[:limit]) + extra


def plan_reads(
    regmap: RegisterMap,
    points: Iterable[Point] | None = None,
    *,
    max_gap: int | None = None,
) -> tuple[ReadRequest, ...]:
    """Requests covering ``points`` (default: every point of ``regmap``).

    ``max_gap`` overrides the map's (0 gives gap-free requests).  Raises
    ValueError when a single point is longer than the map's ``max_read``.
    """
    gap = regmap.max_gap if max_gap is None else max_gap
    chosen = list(regmap.points if points is None else points)
    requests: list[ReadRequest] = []
    for function in Function:
        table = sorted((p for p in chosen if p.function == function), key=lambda p: p.address)
        current: list[Point] = []
        start = end = 0
        for p in table:
            if p.word_count > regmap.max_read:
                raise ValueError(
                    f"{regmap.name}: point {p.name} has {p.word_count} registers, more than max_read {regmap.max_read}"
                )
            p_end = p.address + p.word_count
            if current and p.address - end <= gap and max(end, p_end) - start <= regmap.max_read:
                current.append(p)
                end = max(end, p_end)
                continue
            if current:
                requests.append(ReadRequest(function, start, end - start, tuple(current)))
            current, start, end = [p], p.address, p_end
        if current:
            requests.append(ReadRequest(function, start, end - start, tuple(current)))
    return tuple(requests)


def split_at_gaps(request: ReadRequest) -> tuple[ReadRequest, ...]:
    """The same points as gap-free requests (for devices that reject reads over unused registers)."""
    pseudo = _GapFree(request)
    return plan_reads(pseudo, request.points, max_gap=0)  # type: ignore[arg-type]


class _GapFree:
    """Minimal map stand-in for :func:`split_at_gaps`."""

    def __init__(self, request: ReadRequest):
        self.name = "split"
        self.max_gap = 0
        self.max_read = max(request.count, 1)
        self.points = request.points
