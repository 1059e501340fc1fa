"""SunSpec models as data, SunSpec register images, and discovery.

Model definitions live in ``config/devicemaps/sunspec/model_<id>.yaml`` in
the register-map point schema with ``offset`` (relative to the first data
register after the model's ID/length header) instead of ``address``.

* :func:`build_image` encodes a complete SunSpec register image ('SunS',
  model headers, values, "not implemented" sentinels, end marker); the hall
  simulator serves it.
* :func:`discover` finds the 'SunS' marker on a live device, walks the model
  chain and builds a concrete :class:`~devices.registermap.RegisterMap`
  with absolute addresses that the normal read planner and codec use.

SunSpec registers are big-endian; values here are in our units and signs
([W], [Wh], [%]).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Mapping, Sequence

from pydantic import Field, model_validator

from devices import codec
from devices.configfile import ConfigError, StrictModel, load_yaml_model
from devices.errors import DeviceError
from devices.readings import CANONICAL_FIELDS, Nature
from devices.registermap import (
    NOT_IMPLEMENTED,
    check_scale_factors,
    Function,
    Heartbeat,
    Point,
    RegisterMap,
    RegType,
    maps_dir,
)

#: 'SunS' as two registers.
SUNS_MARKER = (0x5375, 0x6E53)
#: Base addresses to probe, in the order the SunSpec spec recommends.
BASE_ADDRESSES = (40000, 0, 50000)
#: Model id that ends the chain.
END_MODEL_ID = 0xFFFF
#: Value SunSpec puts in pad registers.
PAD_VALUE = 0x8000
#: When several models bind the same canonical field, the first model in this
#: order wins (the battery's own model is more direct than the inverter's
#: nameplate or the 124 control block).
FIELD_PRECEDENCE = (802, 713, 124, 120, 103, 101, 102, 1)


class SunSpecModel(StrictModel):
    """One SunSpec model definition (a ``model_<id>.yaml`` file)."""

    sunspec_model: int = Field(ge=1, lt=END_MODEL_ID)
    name: str = Field(min_length=1)
    length: int = Field(ge=1, le=2000)  # registers after the ID/length header
    nature: Nature | None = None  # field bindings only for devices of this nature
    description: str = ""
    points: list[Point] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> "SunSpecModel":
        names: set[str] = set()
        for i, p in enumerate(self.points):
            where = f"points[{i}] ({p.name})"
            if p.name in names:
                raise ValueError(f"{where}: duplicate point name")
            names.add(p.name)
            if p.offset is None or p.address is not None:
                raise ValueError(f"{where}: a SunSpec model point needs 'offset', not 'address'")
            if p.function != Function.HOLDING:
                raise ValueError(f"{where}: SunSpec points are holding registers")
            if p.offset + p.word_count > self.length:
                raise ValueError(f"{where}: ends at offset {p.offset + p.word_count} beyond length {self.length}")
            if p.field is not None:
                natures = [self.nature] if self.nature else list(Nature)
                if not any(p.field in CANONICAL_FIELDS[n] for n in natures):
                    raise ValueError(f"{where}: field {p.field!r} is not a canonical field")
        check_scale_factors(self.points, "model")
        spans = sorted((p.offset, p.offset + p.word_count, p.name) for p in self.points)
        for a, b in zip(spans, spans[1:]):
            if b[0] < a[1]:
                raise ValueError(f"points {a[2]!r} and {b[2]!r} overlap")
        return self

    def point(self, name: str) -> Point:
        """The point called ``name``; KeyError naming the model if there is none."""
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(f"SunSpec model {self.sunspec_model} ({self.name}) has no point {name!r}")


def models_dir() -> Path:
    """Folder of the shipped SunSpec model files."""
    return maps_dir() / "sunspec"


@lru_cache(maxsize=None)
def load_model(model_id: int, folder: Path | None = None) -> SunSpecModel | None:
    """The definition of SunSpec model ``model_id``, or None if we ship none.

    Raises :class:`devices.configfile.ConfigError` (file and field) for a
    broken model file, or when the file's ``sunspec_model`` disagrees with its name.
    """
    path = (folder or models_dir()) / f"model_{model_id}.yaml"
    if not path.is_file():
        return None
    model = load_yaml_model(path, SunSpecModel)
    if model.sunspec_model != model_id:
        raise ConfigError([f"{path}: sunspec_model: {model.sunspec_model} does not match the file name"])
    return model


# --------------------------------------------------------------------------
# Register images (what a SunSpec device serves)
# --------------------------------------------------------------------------


class _BigEndian:
    """Stand-in map for codec calls: SunSpec is big-endian throughout."""

    sentinels = True

    @staticmethod
    def effective_word_order(point: Point) -> str:
        return "big"


def sentinel_registers(point: Point) -> list[int]:
    """Registers that say "not implemented" for ``point`` (SunSpec rules)."""
    n = point.word_count
    if point.type == RegType.STRING:
        return [0] * n
    if point.type == RegType.FLOAT32:
        return [0x7FC0, 0x0000]  # quiet NaN
    raw = NOT_IMPLEMENTED[point.type]
    return [(raw >> (16 * (n - 1 - i))) & 0xFFFF for i in range(n)]


def _fits(point: Point, value: Any, exponent: int) -> bool:
    try:
        codec.encode(_BigEndian, point, value, exponent)  # type: ignore[arg-type]
    except (ValueError, OverflowError):
        return False
    return True


def _choose_exponent(model: SunSpecModel, sf: Point, values: Mapping[str, Any]) -> int | None:
    """Smallest scale factor in [-2, 10] at which every given value using ``sf`` fits.

    None when no given value uses it (the scale factor stays "not implemented").
    Simulators that rebuild the image every tick should pass ``*_SF`` values
    explicitly so scale factors do not change from one image to the next.
    """
    users = [p for p in model.points if p.scale_factor == sf.name and values.get(p.name) is not None]
    if not users:
        return None
    for exponent in range(-2, 11):
        if all(_fits(p, values[p.name], exponent) for p in users):
            return exponent
    worst = users[0].name
    raise ValueError(f"model {model.sunspec_model}: no scale factor makes {worst} fit its register")


def encode_model(model: SunSpecModel, values: Mapping[str, Any]) -> list[int]:
    """The ``model.length`` data registers of one model block.

    ``values`` maps point names to values in our units and sign (strings
    for string points, ints for scale factors).  Points not given, or given
    as None, get the "not implemented" sentinel.  Raises ValueError naming the
    model and point for an unknown name or a value that does not fit.
    """
    by_name = {p.name: p for p in model.points}
    unknown = sorted(set(values) - set(by_name))
    if unknown:
        raise ValueError(f"SunSpec model {model.sunspec_model} ({model.name}) has no point(s) {', '.join(unknown)}")
    regs = [PAD_VALUE] * model.length
    exponents: dict[str, int | None] = {}
    for p in model.points:
        if p.type == RegType.SUNSSF:
            given = values.get(p.name)
            exponents[p.name] = int(given) if given is not None else _choose_exponent(model, p, values)
    for p in model.points:
        value = values.get(p.name)
        if p.type == RegType.SUNSSF:
            value = exponents[p.name]
        if value is None or (isinstance(value, float) and math.isnan(value)):
            words = sentinel_registers(p)
        else:
            exponent = exponents.get(p.scale_factor) if p.scale_factor else None
            if p.scale_factor and exponent is None:
                raise ValueError(f"model {model.sunspec_model}: {p.name} needs {p.scale_factor}")
            try:
                words = codec.encode(_BigEndian, p, value, exponent)  # type: ignore[arg-type]
            except (ValueError, OverflowError) as exc:
                raise ValueError(f"model {model.sunspec_model}: {exc}") from None
        regs[p.offset : p.offset + p.word_count] = words
    return regs


def build_image(
    models: Sequence[tuple[int, Mapping[str, Any]]],
    base: int = 40000,
    *,
    folder: Path | None = None,
) -> dict[int, int]:
    """A SunSpec register image: ``{absolute address: register value}``.

    ``models`` is the chain in order, each ``(model id, {point name: value})``
    with values in our units and sign; model 1 first by SunSpec convention.
    The image holds 'SunS' at ``base``, each model's ID and length header and
    data, then the end marker (0xFFFF, 0).  Raises ValueError for a model id
    we have no definition for, an unknown point name or a value that does
    not fit its register.
    """
    image: dict[int, int] = {base: SUNS_MARKER[0], base + 1: SUNS_MARKER[1]}
    address = base + 2
    for model_id, values in models:
        model = load_model(model_id, folder)
        if model is None:
            raise ValueError(f"no definition for SunSpec model {model_id} in {folder or models_dir()}")
        image[address] = model_id
        image[address + 1] = model.length
        for i, reg in enumerate(encode_model(model, values), start=address + 2):
            image[i] = reg
        address += 2 + model.length
    image[address] = END_MODEL_ID
    image[address + 1] = 0
    if address + 1 > 0xFFFF:
        raise ValueError(f"SunSpec image from base {base} does not fit the 16-bit address space")
    return image


# --------------------------------------------------------------------------
# Concrete register maps from a discovered model chain
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelBlock:
    """A model found on a device: id, absolute address of its first data register, length."""

    model_id: int
    address: int
    length: int
    prefix: str  # point-name prefix in the concrete map, e.g. "m124"


def point_prefix(model_id: int, instance: int) -> str:
    """Prefix of a model's points in a concrete map: ``m124``, second instance ``m124_2``."""
    return f"m{model_id}" if instance == 1 else f"m{model_id}_{instance}"


def build_register_map(
    blocks: Sequence[ModelBlock],
    nature: Nature,
    *,
    name: str = "sunspec",
    folder: Path | None = None,
    skip_models: Sequence[int] = (1,),
) -> RegisterMap:
    """A concrete :class:`RegisterMap` (absolute addresses, sentinels on) for ``blocks``.

    Points are named ``m<id>.<point>`` (see :func:`point_prefix`).  Canonical
    field bindings are kept only where the field belongs to ``nature`` and the
    model is for that nature (or for any); when several models bind one field,
    :data:`FIELD_PRECEDENCE` decides.  Model 1 (static identity strings) is
    left out of the polled map by default.  Raises ValueError (via pydantic)
    when the result lacks a required field, e.g. no power point for a battery.
    """
    allowed = CANONICAL_FIELDS[nature]
    rank = {mid: i for i, mid in enumerate(FIELD_PRECEDENCE)}
    ordered = sorted(blocks, key=lambda b: (rank.get(b.model_id, len(rank)), b.address))
    taken: set[str] = set()
    points: list[Point] = []
    for block in ordered:
        if block.model_id in skip_models:
            continue
        model = load_model(block.model_id, folder)
        if model is None:
            continue
        use_fields = model.nature in (None, nature)
        # A device may ship a shorter (older) revision of a model: points past
        # its length do not exist, nor do points scaled by such a point.
        present = {p.name for p in model.points if p.offset + p.word_count <= block.length}
        for p in model.points:
            if p.name not in present or (p.scale_factor and p.scale_factor not in present):
                continue
            fld = p.field if (use_fields and p.field in allowed and p.field not in taken) else None
            if fld is None and nature == Nature.BATTERY and block.model_id == 103 and p.name == "W":
                # A storage inverter without model 802: its AC power (+ delivered =
                # discharging) is the best battery power there is.
                fld = "power_w" if "power_w" not in taken else None
            if fld:
                taken.add(fld)
            points.append(
                p.model_copy(
                    update={
                        "name": f"{block.prefix}.{p.name}",
                        "address": block.address + p.offset,
                        "offset": None,
                        "field": fld,
                        "scale_factor": f"{block.prefix}.{p.scale_factor}" if p.scale_factor else None,
                    }
                )
            )
    points.sort(key=lambda p: p.address)
    heartbeat = next((p.name for p in points if p.field == "heartbeat"), None)
    return RegisterMap(
        name=name,
        nature=nature,
        description="built by SunSpec discovery: " + ", ".join(str(b.model_id) for b in blocks),
        word_order="big",
        sentinels=True,
        heartbeat=Heartbeat(point=heartbeat, period_s=5.0) if heartbeat else None,
        points=points,
    )


@dataclass(frozen=True)
class SunSpecInfo:
    """What discovery found on one device.

    ``base`` [register address] of 'SunS'; ``blocks`` every model in the chain
    (known or not); ``unknown_models`` ids we have no definition for (skipped);
    identity strings from model 1; ``regmap`` the concrete map to poll.
    """

    base: int
    blocks: tuple[ModelBlock, ...]
    unknown_models: tuple[int, ...]
    manufacturer: str | None
    model: str | None
    serial: str | None
    version: str | None
    regmap: RegisterMap
    model_ids: tuple[int, ...] = field(default=())


# --------------------------------------------------------------------------
# Discovery on a live device
# --------------------------------------------------------------------------


async def _read_or_none(connection: Any, address: int, count: int, unit: int, device_id: str) -> list[int] | None:
    """Registers, or None when the device answers with an exception (nothing there)."""
    try:
        return await connection.read(Function.HOLDING, address, count, unit, device_id=device_id)
    except DeviceError as exc:
        if exc.kind == "exception_response":
            return None
        raise  # timeouts and dropped connections are not "no SunSpec here"


async def find_base(connection: Any, unit: int, device_id: str = "sunspec") -> int:
    """Address of the 'SunS' marker, probing :data:`BASE_ADDRESSES` in order.

    Raises :class:`DeviceError` (kind "not_sunspec") when no base holds it.
    """
    for base in BASE_ADDRESSES:
        regs = await _read_or_none(connection, base, 2, unit, device_id)
        if regs is not None and tuple(regs) == SUNS_MARKER:
            return base
    tried = ", ".join(str(b) for b in BASE_ADDRESSES)
    raise DeviceError(device_id, "not_sunspec", f"unit {unit}: no 'SunS' marker at register {tried}")


async def discover(
    connection: Any,
    unit: int,
    nature: Nature | None = None,
    *,
    device_id: str = "sunspec",
    folder: Path | None = None,
    max_models: int = 64,
) -> SunSpecInfo:
    """Find the SunSpec models of ``unit`` behind ``connection`` and build its register map.

    Looks for 'SunS' at 40000, then 0, then 50000; walks the (id, length)
    headers until 0xFFFF; model ids we have no file for are skipped but
    recorded in ``unknown_models``.  ``nature`` defaults to battery when a
    storage model (124, 713, 802) is present, else pv.  Raises
    :class:`DeviceError`: "not_sunspec" (no marker, broken chain, or no usable
    models for the nature), or the connection's own kinds.
    """
    base = await find_base(connection, unit, device_id)
    blocks: list[ModelBlock] = []
    unknown: list[int] = []
    seen: dict[int, int] = {}
    address = base + 2
    for _ in range(max_models):
        header = await _read_or_none(connection, address, 2, unit, device_id)
        if header is None:
            break  # some devices end the chain without the 0xFFFF marker
        model_id, length = header
        if model_id == END_MODEL_ID:
            break
        if address + 2 + length > 0x10000:
            raise DeviceError(device_id, "not_sunspec", f"model {model_id} at {address}: length {length} runs past 65535")
        seen[model_id] = seen.get(model_id, 0) + 1
        blocks.append(ModelBlock(model_id, address + 2, length, point_prefix(model_id, seen[model_id])))
        if load_model(model_id, folder) is None:
            unknown.append(model_id)
        address += 2 + length
    else:
        raise DeviceError(device_id, "not_sunspec", f"model chain longer than {max_models} models (no end marker)")

    ids = {b.model_id for b in blocks}
    if nature is None:
        nature = Nature.BATTERY if ids & {124, 713, 802} else Nature.PV
    try:
        regmap = build_register_map(blocks, nature, name=f"sunspec-unit{unit}", folder=folder)
    except ValueError as exc:
        raise DeviceError(
            device_id, "not_sunspec", f"models {sorted(ids)} cannot serve a {nature.value}: {exc}"
        ) from None
    identity: dict[str, str | None] = {"Mn": None, "Md": None, "SN": None, "Vr": None}
    common = next((b for b in blocks if b.model_id == 1), None)
    model1 = load_model(1, folder)
    if common is not None and model1 is not None:
        regs = await connection.read(Function.HOLDING, common.address, min(common.length, 64), unit, device_id=device_id)
        for key in identity:
            p = model1.point(key)
            if p.offset + p.word_count <= len(regs):
                text = codec.decode_raw(p, regs[p.offset : p.offset + p.word_count])
                identity[key] = str(text) or None
    return SunSpecInfo(
        base=base,
        blocks=tuple(blocks),
        unknown_models=tuple(unknown),
        manufacturer=identity["Mn"],
        model=identity["Md"],
        serial=identity["SN"],
        version=identity["Vr"],
        regmap=regmap,
        model_ids=tuple(b.model_id for b in blocks),
    )


__all__ = [
    "SunSpecModel",
    "SunSpecInfo",
    "ModelBlock",
    "build_image",
    "build_register_map",
    "discover",
    "encode_model",
    "find_base",
    "load_model",
]
