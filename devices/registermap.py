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
import hashlib
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from devices.configfile import ConfigError, StrictModel, load_yaml_model
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


#: Highest Modbus register address.
LAST_REGISTER = 65535


def _register_problems(points: list[Point]) -> list[str]:
    """What the gateway could never read, one ``points.<name>: ...`` line each:
    a point overlapping another in the same table (almost always a typo in the
    map) and a point running past register 65535."""
    problems: list[str] = []
    for p in points:
        assert p.address is not None
        end = p.address + p.word_count - 1
        if end > LAST_REGISTER:
            problems.append(f"points.{p.name}: registers {p.address}-{end} run past the last register {LAST_REGISTER}")
    for function in Function:
        table = sorted((p for p in points if p.function == function), key=lambda p: (p.address, p.name))
        furthest: Point | None = None  # the point reaching highest so far
        for p in table:
            assert p.address is not None
            if furthest is not None:
                reach = furthest.address + furthest.word_count - 1  # type: ignore[operator]
                if p.address <= reach:
                    last = min(reach, p.address + p.word_count - 1)
                    which = "registers" if function == Function.HOLDING else f"{function.value} registers"
                    problems.append(f"points.{p.name}: overlaps points.{furthest.name} ({which} {p.address}-{last})")
            if furthest is None or p.address + p.word_count > furthest.address + furthest.word_count:  # type: ignore[operator]
                furthest = p
    return problems


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
        problems = _register_problems(self.points)
        if problems:
            # One line per problem; the loader reports each as ``<file>: <line>``.
            raise ValueError("\n".join(problems))
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
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return load_yaml_model(path, RegisterMap)  # names the file and what is wrong with it
    return _parsed_map(str(path), digest)


@lru_cache(maxsize=256)
def _parsed_map(path: str, digest: str) -> RegisterMap:
    """The map in ``path`` as of its content ``digest``: loading a fleet checks every hall's
    devices, and fourteen halls sharing two maps should not parse them 28 times.  Keyed on
    the content, so an edited file is read again; maps are frozen, so sharing one is safe.
    A map that fails is not kept."""
    regmap = load_yaml_model(Path(path), RegisterMap)
    # The read planner refuses a point longer than one request when the gateway builds the
    # device (a ValueError naming no file); a map file is refused for it here.
    too_long = [f"{path}: points.{p.name}.words: {p.word_count} registers, more than max_read "
                f"{regmap.max_read} (one read request)" for p in regmap.points if p.word_count > regmap.max_read]
    if too_long:
        raise ConfigError(too_long)
    return regmap
