"""Reading and writing the points of one device's register map.

:class:`RegisterClient` sits between a shared :class:`ModbusConnection` and
a device nature: it runs the read plan, decodes every point (scale factors
first), rejects implausible values (logged once, then treated as missing),
fails the read when a required canonical field is missing, and writes points
with read-back verification.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any

from devices import codec
from devices.errors import DeviceError
from devices.modbus.connection import ModbusConnection
from devices.modbus.planner import ReadRequest, plan_reads, split_at_gaps
from devices.readings import CANONICAL_FIELDS
from devices.registermap import Function, Point, RegisterMap, RegType

log = logging.getLogger(__name__)

#: A power reading above rated_w times this is rejected as implausible.
RATED_POWER_MARGIN = 1.2
#: Canonical fields whose values are powers checked against rated_w.
POWER_FIELDS = ("power_w",)

Value = int | float | str | None


@dataclass(frozen=True)
class PointValues:
    """Decoded values of one read.

    ``values`` maps point name to value in our units and sign (None when not
    implemented or rejected); ``rejected`` maps point name to the reason.
    """

    values: dict[str, Value]
    rejected: dict[str, str] = field(default_factory=dict)


class RegisterClient:
    """Reads/writes the points of ``regmap`` on ``unit`` behind ``connection``.

    ``rated_w`` [W] enables the rated-power plausibility check; ``timeout_s``
    [s] is the per-request timeout (default: the connection's).
    """

    def __init__(
        self,
        connection: ModbusConnection,
        unit: int,
        regmap: RegisterMap,
        *,
        device_id: str,
        rated_w: float | None = None,
        timeout_s: float | None = None,
    ):
        self.connection = connection
        self.unit = unit
        self.regmap = regmap
        self.device_id = device_id
        self.rated_w = rated_w
        self.timeout_s = timeout_s
        self.plan: list[ReadRequest] = list(plan_reads(regmap))  # once per map, not per poll
        self._warned: set[str] = set()  # points whose rejection was already logged

    # -- reading -------------------------------------------------------------

    async def _read_request(self, req: ReadRequest) -> list[int]:
        return await self.connection.read(
            req.function, req.address, req.count, self.unit,
            device_id=self.device_id, what=req.describe(), timeout_s=self.timeout_s,
        )

    async def _read_plan(self, plan: list[ReadRequest], adapt: bool) -> dict[tuple[Function, int], int]:
        regs: dict[tuple[Function, int], int] = {}
        i = 0
        while i < len(plan):
            req = plan[i]
            try:
                words = await self._read_request(req)
            except DeviceError as exc:
                if exc.kind != "exception_response" or not req.has_gaps:
                    raise
                # Many devices refuse reads that span unused registers; read the
                # points gap-free from now on (logged once, the plan adapts).
                parts = list(split_at_gaps(req))
                log.info("%s: %s; reading %s as %d gap-free requests from now on",
                         self.device_id, exc.message, req.describe(), len(parts))
                plan[i : i + 1] = parts
                continue
            for k, w in enumerate(words):
                regs[(req.function, req.address + k)] = w
            i += 1
        if adapt:
            self.plan = plan
        return regs

    def _registers(self, regs: dict[tuple[Function, int], int], p: Point) -> list[int]:
        return [regs[(p.function, p.address + k)] for k in range(p.word_count)]

    def _reject(self, name: str, reason: str, rejected: dict[str, str]) -> None:
        rejected[name] = reason
        if name not in self._warned:
            self._warned.add(name)
            log.warning("%s: rejecting %s (treated as missing until plausible again)", self.device_id, reason)

    def _decode(self, regs: dict[tuple[Function, int], int], points: list[Point]) -> PointValues:
        values: dict[str, Value] = {}
        rejected: dict[str, str] = {}
        # Scale factors first: every scaled point needs its exponent.
        ordered = sorted(points, key=lambda p: p.type != RegType.SUNSSF)
        for p in ordered:
            exponent = None
            if p.scale_factor is not None:
                exponent = values.get(p.scale_factor)
                if exponent is not None and not -10 <= int(exponent) <= 10:
                    self._reject(p.name, f"{p.name}: scale factor {p.scale_factor} = {exponent} is out of [-10, 10]", rejected)
                    values[p.name] = None
                    continue
            try:
                value = codec.decode(self.regmap, p, self._registers(regs, p), exponent)
            except codec.DecodeError as exc:
                self._reject(p.name, str(exc), rejected)
                values[p.name] = None
                continue
            if (
                self.rated_w is not None
                and p.field in POWER_FIELDS
                and isinstance(value, (int, float))
                and abs(value) > self.rated_w * RATED_POWER_MARGIN
            ):
                self._reject(
                    p.name,
                    f"{p.name}: {value:g} W is beyond {RATED_POWER_MARGIN:g} x rated {self.rated_w:g} W",
                    rejected,
                )
                values[p.name] = None
                continue
            if p.name in self._warned:
                self._warned.discard(p.name)
                log.info("%s: %s plausible again (%s)", self.device_id, p.name, value)
            values[p.name] = value
        return PointValues(values, rejected)

    def _require(self, result: PointValues) -> None:
        required = [f for f, req in CANONICAL_FIELDS[self.regmap.nature].items() if req]
        for f in required:
            p = self.regmap.by_field[f]
            if result.values.get(p.name) is None:
                why = result.rejected.get(p.name) or f"{p.name} (register {p.address}) is not implemented / unavailable"
                raise DeviceError(self.device_id, "implausible", f"required {f} missing: {why}")

    async def read_points(self) -> PointValues:
        """Read and decode every point of the map.

        Raises :class:`DeviceError`: transport kinds from the connection, or
        "implausible" when a required canonical field of the map's nature is
        missing or was rejected.
        """
        regs = await self._read_plan(list(self.plan), adapt=True)
        result = self._decode(regs, list(self.regmap.points))
        self._require(result)
        return result

    async def read_named(self, names: list[str]) -> dict[str, Value]:
        """Read just the named points (plus their scale factors); no required-field check."""
        points = [self._point(n) for n in names]
        sfs = [self._point(p.scale_factor) for p in points if p.scale_factor]
        wanted = {p.name: p for p in points + sfs}
        plan = list(plan_reads(self.regmap, wanted.values()))
        regs = await self._read_plan(plan, adapt=False)
        return self._decode(regs, list(wanted.values())).values

    # -- writing -------------------------------------------------------------

    def _point(self, name: str) -> Point:
        try:
            return self.regmap.by_name[name]
        except KeyError:
            raise DeviceError(self.device_id, "config", f"map {self.regmap.name} has no point {name!r}") from None

    async def write_point(
        self, name: str, value: Any, *, verify: bool = True, exponent: int | None = None
    ) -> None:
        """Write ``value`` (our units and sign) to point ``name`` and verify by read-back.

        FC6 for one register, FC16 for several.  Read-back must match within
        one raw LSB (floats: relative 1e-6).  ``exponent``: the value of the
        point's scale factor when the caller has just read it (saves one read
        request per write); None reads it from the device.  Raises
        :class:`DeviceError`: "config" (no such point / not writable / scale
        factor unavailable, out of [-10, 10], or given for an unscaled point),
        "invalid_value" (NaN, outside the point's range, does not fit),
        "write_verify" (read-back differs), or transport kinds.
        """
        p = self._point(name)
        if p.access == "r":
            raise DeviceError(self.device_id, "config", f"point {name} (register {p.address}) is read-only")
        if isinstance(value, float) and not math.isfinite(value):
            raise DeviceError(self.device_id, "invalid_value", f"{name}: refusing to write {value}")
        if p.range is not None and isinstance(value, (int, float)) and not p.range[0] <= value <= p.range[1]:
            raise DeviceError(
                self.device_id, "invalid_value",
                f"{name}: {value:g} {p.unit} is outside the allowed range [{p.range[0]:g}, {p.range[1]:g}]",
            )
        if p.scale_factor is None:
            if exponent is not None:
                raise DeviceError(self.device_id, "config", f"{name}: has no scale factor, got exponent {exponent!r}")
        elif exponent is None:
            # read_named applies the same [-10, 10] check (None when outside).
            exponent = (await self.read_named([p.scale_factor])).get(p.scale_factor)
            if exponent is None:
                raise DeviceError(self.device_id, "config", f"{name}: scale factor {p.scale_factor} is not available")
        elif isinstance(exponent, bool) or not isinstance(exponent, int) or not -10 <= exponent <= 10:
            raise DeviceError(
                self.device_id, "config", f"{name}: scale factor {p.scale_factor} = {exponent!r} is not in [-10, 10]"
            )
        try:
            words = codec.encode(self.regmap, p, value, exponent)
        except (ValueError, OverflowError) as exc:
            raise DeviceError(self.device_id, "invalid_value", str(exc)) from None
        await self.connection.write(
            p.address, words, self.unit, device_id=self.device_id, what=name, timeout_s=self.timeout_s
        )
        if not verify or p.access == "w":
            return
        back = await self.connection.read(
            p.function, p.address, p.word_count, self.unit,
            device_id=self.device_id, what=f"{name} read-back", timeout_s=self.timeout_s,
        )
        if not _same(self.regmap, p, words, back):
            order = self.regmap.effective_word_order(p)
            raise DeviceError(
                self.device_id, "write_verify",
                f"{name} (register {p.address}): wrote {codec.decode_raw(p, words, order)!r} "
                f"(for {value!r}) but read back {codec.decode_raw(p, back, order)!r}",
            )


def _same(regmap: RegisterMap, p: Point, written: list[int], back: list[int]) -> bool:
    """Read-back equality: one raw LSB of tolerance for integers, relative 1e-6 for floats."""
    if p.type == RegType.STRING:
        return written == back
    order = regmap.effective_word_order(p)
    a = codec.decode_raw(p, written, order)
    b = codec.decode_raw(p, back, order)
    if p.type == RegType.FLOAT32:
        return math.isclose(float(a), float(b), rel_tol=1e-6, abs_tol=1e-9)
    return abs(int(a) - int(b)) <= 1
