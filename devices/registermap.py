"""Register maps as data: what each Modbus register of a device means.

A map is a YAML file in ``config/devicemaps/``.  Each point says where a value
lives (address, function), how it is encoded (type, word order, scale or
scale-factor register), what it means (unit, canonical field of the device
nature), whether it can be written, and which range is plausible.

Example (``config/devicemaps/generic_battery.yaml``)::

    name: generic_battery
    nature: battery
    points:
      - {name: soc, field: soc_pct, address: 0, type: uint16, scale: 0.1,
         unit: "%", range: [0, 100]}

SunSpec model files use the same point schema with ``offset`` (relative to
the first data register of the model, i.e. after the ID and length header)
instead of ``address``; :mod:`devices.sunspec` rebases them after discovery.
"""

from __future__ import annotations

import enum
from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from devices.configfile import StrictModel, load_yaml_model
from devices.readings import CANONICAL_FIELDS, Nature


class Function(str, enum.Enum):
    """Modbus register table a point lives in."""

    HOLDING = "holding"  # function 3 read, 6/16 write
    INPUT = "input"  # function 4, read-only


class RegType(str, enum.Enum):
    """Encoding of a point in 16-bit registers."""

    INT16 = "int16"
    UINT16 = "uint16"
    INT32 = "int32"
    UINT32 = "uint32"
    FLOAT32 = "float32"
    STRING = "string"
    SUNSSF = "sunssf"  # SunSpec scale factor: int16 exponent, value * 10**sf
    ACC32 = "acc32"  # SunSpec 32-bit accumulator (uint32)
    BITFIELD16 = "bitfield16"
    BITFIELD32 = "bitfield32"
    ENUM16 = "enum16"


#: Registers each fixed-size type occupies.
TYPE_WORDS: dict[RegType, int] = {
    RegType.INT16: 1,
    RegType.UINT16: 1,
    RegType.SUNSSF: 1,
    RegType.ENUM16: 1,
    RegType.BITFIELD16: 1,
    RegType.INT32: 2,
    RegType.UINT32: 2,
    RegType.ACC32: 2,
    RegType.BITFIELD32: 2,
    RegType.FLOAT32: 2,
}

#: Raw register values that SunSpec defines as "not implemented".
NOT_IMPLEMENTED: dict[RegType, int] = {
    RegType.INT16: 0x8000,
    RegType.SUNSSF: 0x8000,
    RegType.UINT16: 0xFFFF,
    RegType.ENUM16: 0xFFFF,
    RegType.BITFIELD16: 0xFFFF,
    RegType.INT32: 0x80000000,
    RegType.UINT32: 0xFFFFFFFF,
    RegType.BITFIELD32: 0xFFFFFFFF,
    RegType.ACC32: 0x00000000,  # SunSpec: accumulator 0 = not accumulated
}


class Point(StrictModel):
    """One value in a device's register space.

    ``value = raw * scale * 10**raw(scale_factor) * sign``; writes invert it.
    """

    name: str = Field(min_length=1)
    field: str | None = None  # canonical reading field this point feeds
    address: int | None = Field(default=None, ge=0, le=65535)
    offset: int | None = Field(default=None, ge=0, le=65535)  # SunSpec model files only
    function: Function = Function.HOLDING
    type: RegType
    words: int | None = Field(default=None, ge=1, le=125)  # strings: register count
    word_order: Literal["big", "little"] | None = None  # None: the map's default
    scale: float = 1.0
    scale_factor: str | None = None  # name of a sunssf point in the same map/model
    sign: Literal[1, -1] = 1  # -1 where the device's sign is opposite to ours
    unit: str = ""
    access: Literal["r", "rw", "w"] = "r"
    range: tuple[float, float] | None = None  # plausible values, after scaling
    description: str = ""

    @model_validator(mode="after")
    def _check(self) -> "Point":
        if self.type == RegType.STRING and not self.words:
            raise ValueError("a string point needs 'words' (its length in registers)")
        if self.range is not None and self.range[0] > self.range[1]:
            raise ValueError("range must be [low, high] with low <= high")
        if self.scale == 0:
            raise ValueError("scale must not be 0")
        if self.access != "r" and self.function == Function.INPUT:
            raise ValueError("input registers cannot be written; use function: holding")
        return self

    @property
    def word_count(self) -> int:
        """Number of 16-bit registers this point occupies."""
        return self.words if self.type == RegType.STRING else TYPE_WORDS[self.type]


def check_scale_factors(points: list[Point], what: str) -> None:
    """Raise ValueError when a point's ``scale_factor`` names no sunssf point of the same ``what``."""
    sunssf = {q.name for q in points if q.type == RegType.SUNSSF}
    for i, p in enumerate(points):
        if p.scale_factor is not None and p.scale_factor not in sunssf:
            raise ValueError(f"points[{i}] ({p.name}): scale_factor {p.scale_factor!r} "
                             f"is not a sunssf point of this {what}")


class Heartbeat(StrictModel):
    """A watchdog register the gateway must keep changing, or the device reverts to idle."""

    point: str
    period_s: float = Field(default=5.0, gt=0)


class RegisterMap(StrictModel):
    """A device's register map: points with absolute addresses."""

    name: str
    nature: Nature
    description: str = ""
    word_order: Literal["big", "little"] = "big"
    sentinels: bool = False  # treat SunSpec "not implemented" raw values as None
    max_gap: int = Field(default=8, ge=0, le=100)  # registers a read may span over unused
    max_read: int = Field(default=100, ge=1, le=125)  # registers per read request
    heartbeat: Heartbeat | None = None
    points: list[Point] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> "RegisterMap":
        names: set[str] = set()
        allowed = CANONICAL_FIELDS[self.nature]
        fields_seen: set[str] = set()
        for i, p in enumerate(self.points):
            where = f"points[{i}] ({p.name})"
            if p.name in names:
                raise ValueError(f"{where}: duplicate point name")
            names.add(p.name)
            if p.address is None:
                raise ValueError(f"{where}: address is required")
            if p.field is not None:
                if p.field not in allowed:
                    raise ValueError(
                        f"{where}: field {p.field!r} is not a {self.nature.value} field "
                        f"(one of {', '.join(sorted(allowed))})"
                    )
                if p.field in fields_seen:
                    raise ValueError(f"{where}: field {p.field!r} bound twice")
                fields_seen.add(p.field)
        check_scale_factors(self.points, "map")
        missing = [f for f, required in allowed.items() if required and f not in fields_seen]
        if missing:
            raise ValueError(f"a {self.nature.value} map must bind field(s): {', '.join(missing)}")
        if self.heartbeat is not None and self.heartbeat.point not in names:
            raise ValueError(f"heartbeat.point {self.heartbeat.point!r} is not a point of this map")
        # Overlapping points in the same table are almost always a typo in the map.
        spans = sorted(
            (p.function.value, p.address, p.address + p.word_count, p.name) for p in self.points
        )
        for a, b in zip(spans, spans[1:]):
            if a[0] == b[0] and b[1] < a[2]:
                raise ValueError(f"points {a[3]!r} and {b[3]!r} overlap in the {a[0]} registers")
        return self

    @cached_property
    def by_name(self) -> dict[str, Point]:
        """Points keyed by register-level name."""
        return {p.name: p for p in self.points}

    @cached_property
    def by_field(self) -> dict[str, Point]:
        """Points keyed by canonical reading field."""
        return {p.field: p for p in self.points if p.field}

    def effective_word_order(self, point: Point) -> str:
        """Word order of ``point``: its own, else the map's default."""
        return point.word_order or self.word_order


def maps_dir() -> Path:
    """The folder holding the shipped device maps (``config/devicemaps``)."""
    return Path(__file__).resolve().parent.parent / "config" / "devicemaps"


def load_register_map(name_or_path: str | Path, search_dir: Path | None = None) -> RegisterMap:
    """Load a map by file path, or by name from ``search_dir`` (default: shipped maps).

    Raises :class:`devices.configfile.ConfigError` naming the file and field.
    """
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = (search_dir or maps_dir()) / f"{name_or_path}.yaml"
    return load_yaml_model(path, RegisterMap)
