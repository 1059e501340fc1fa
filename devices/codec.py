"""Encoding and decoding of point values to and from 16-bit registers.

The byte-level work is pymodbus' own ``convert_from_registers`` /
``convert_to_registers`` (one well-tested implementation shared by client and
simulator); this module adds what register maps say on top: scale, SunSpec
scale-factor exponents, sign, "not implemented" sentinels and plausibility.
"""

from __future__ import annotations

import math

from pymodbus.client.mixin import ModbusClientMixin

from devices.registermap import NOT_IMPLEMENTED, Point, RegisterMap, RegType

_DT = ModbusClientMixin.DATATYPE

#: pymodbus data type used for the raw integer behind each register type.
_RAW_TYPE = {
    RegType.INT16: _DT.INT16,
    RegType.SUNSSF: _DT.INT16,
    RegType.UINT16: _DT.UINT16,
    RegType.ENUM16: _DT.UINT16,
    RegType.BITFIELD16: _DT.UINT16,
    RegType.INT32: _DT.INT32,
    RegType.UINT32: _DT.UINT32,
    RegType.ACC32: _DT.UINT32,
    RegType.BITFIELD32: _DT.UINT32,
    RegType.FLOAT32: _DT.FLOAT32,
}

_INT_BOUNDS = {
    RegType.INT16: (-0x8000, 0x7FFF),
    RegType.SUNSSF: (-10, 10),
    RegType.UINT16: (0, 0xFFFF),
    RegType.ENUM16: (0, 0xFFFF),
    RegType.BITFIELD16: (0, 0xFFFF),
    RegType.INT32: (-0x80000000, 0x7FFFFFFF),
    RegType.UINT32: (0, 0xFFFFFFFF),
    RegType.ACC32: (0, 0xFFFFFFFF),
    RegType.BITFIELD32: (0, 0xFFFFFFFF),
}


class DecodeError(ValueError):
    """A register value cannot be turned into a usable value (implausible, NaN)."""


def _unsigned(registers: list[int]) -> int:
    """Registers as one unsigned integer, first register most significant."""
    out = 0
    for r in registers:
        out = (out << 16) | (r & 0xFFFF)
    return out


def decode_raw(point: Point, registers: list[int], word_order: str = "big") -> int | float | str | None:
    """Raw value of ``point`` from its registers, before scaling.

    Returns None for a SunSpec "not implemented" sentinel only when the caller
    asks for it via :func:`decode`; here the raw value is returned as is.
    """
    if len(registers) != point.word_count:
        raise DecodeError(f"{point.name}: expected {point.word_count} registers, got {len(registers)}")
    if point.type == RegType.STRING:
        raw = ModbusClientMixin.convert_from_registers(registers, _DT.STRING, "big")
        return str(raw).split("\x00", 1)[0].strip()
    return ModbusClientMixin.convert_from_registers(registers, _RAW_TYPE[point.type], word_order)


def is_not_implemented(point: Point, registers: list[int], word_order: str = "big") -> bool:
    """True when ``registers`` hold the SunSpec "not implemented" value for the point's type."""
    if point.type == RegType.STRING:
        return all(r == 0 for r in registers)
    if point.type == RegType.FLOAT32:
        value = ModbusClientMixin.convert_from_registers(registers, _DT.FLOAT32, word_order)
        return math.isnan(value)
    sentinel = NOT_IMPLEMENTED.get(point.type)
    if sentinel is None:
        return False
    ordered = registers if word_order == "big" else list(reversed(registers))
    return _unsigned(ordered) == sentinel


def decode(
    regmap: RegisterMap,
    point: Point,
    registers: list[int],
    scale_exponent: int | None = None,
) -> int | float | str | None:
    """Engineering value of ``point`` in our units and sign.

    ``scale_exponent`` is the already-decoded SunSpec scale factor the point
    refers to (None if it has none).  Returns None for "not implemented"
    values where the map uses sentinels.  Raises :class:`DecodeError` for NaN
    or a value outside the point's plausible ``range``.
    """
    order = regmap.effective_word_order(point)
    if regmap.sentinels and is_not_implemented(point, registers, order):
        return None
    raw = decode_raw(point, registers, order)
    if point.type == RegType.STRING:
        return raw
    if point.type in (RegType.SUNSSF, RegType.ENUM16, RegType.BITFIELD16, RegType.BITFIELD32):
        return int(raw)
    if isinstance(raw, float) and not math.isfinite(raw):
        raise DecodeError(f"{point.name}: not a finite number ({raw})")
    if point.scale_factor is not None and scale_exponent is None:
        return None  # the scale factor itself is not implemented: value unusable
    value = raw * point.scale * (10.0 ** (scale_exponent or 0)) * point.sign
    if point.type != RegType.FLOAT32 and point.scale == 1.0 and not scale_exponent:
        value = int(value)
    check_range(point, value)
    return value


def check_range(point: Point, value: float) -> None:
    """Raise :class:`DecodeError` when ``value`` is outside the point's plausible range."""
    if point.range is None:
        return
    low, high = point.range
    if not (low <= value <= high):
        unit = f" {point.unit}" if point.unit else ""
        raise DecodeError(f"{point.name}: {value:g}{unit} is outside the plausible range [{low:g}, {high:g}]")


def encode(
    regmap: RegisterMap,
    point: Point,
    value: int | float | str,
    scale_exponent: int | None = None,
) -> list[int]:
    """Registers that carry ``value`` (in our units and sign) for ``point``.

    Inverse of :func:`decode`.  Raises ValueError when the value does not fit
    the register type after scaling.
    """
    order = regmap.effective_word_order(point)
    if point.type == RegType.STRING:
        text = str(value).encode("ascii", errors="replace")[: 2 * point.word_count]
        text = text.ljust(2 * point.word_count, b"\x00")
        return [int.from_bytes(text[i : i + 2], "big") for i in range(0, len(text), 2)]
    if point.type == RegType.FLOAT32:
        raw: int | float = float(value) * point.sign / point.scale / (10.0 ** (scale_exponent or 0))
        return ModbusClientMixin.convert_to_registers(raw, _DT.FLOAT32, order)
    if point.type in (RegType.SUNSSF, RegType.ENUM16, RegType.BITFIELD16, RegType.BITFIELD32):
        raw = int(value)
    else:
        raw = round(float(value) * point.sign / point.scale / (10.0 ** (scale_exponent or 0)))
    low, high = _INT_BOUNDS[point.type]
    if not (low <= raw <= high):
        raise ValueError(f"{point.name}: {value} does not fit a {point.type.value} register (raw {raw})")
    return ModbusClientMixin.convert_to_registers(raw, _RAW_TYPE[point.type], order)
