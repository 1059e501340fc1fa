"""The ECHONET Lite properties this project reads and writes, with names for messages and codecs.

Per APPENDIX Detailed Requirements for ECHONET Device Objects (Release M):
storage battery 0x027D, home solar power generation 0x0279, low-voltage
smart electric energy meter 0x0288.  Values are big-endian; "no data"
sentinels (0x7FFF.., 0xFFFF.. for unsigned, 0x8000.. for signed) decode to None.
"""

from __future__ import annotations

from devices.echonet.frame import HOME_SOLAR, SMART_METER, STORAGE_BATTERY

SUPER = {0x80: "operation status", 0x81: "installation location", 0x82: "standard version", 0x88: "fault status",
         0x8A: "manufacturer code", 0x9D: "status change announcement property map",
         0x9E: "set property map", 0x9F: "get property map"}

BATTERY = {0xA7: "AC discharge lower limit setting", 0xC8: "minimum/maximum charging power",
           0xC9: "minimum/maximum discharging power", 0xCF: "working operation status",
           0xD0: "rated electric energy", 0xD3: "measured instantaneous charging/discharging power",
           0xDA: "operation mode setting", 0xDB: "system-interconnected type",
           0xE2: "remaining stored electricity 1", 0xE4: "remaining stored electricity 3 (%)",
           0xE5: "battery state of health", 0xE7: "charging amount setting 1", 0xE8: "discharging amount setting 1",
           0xEB: "charging power setting", 0xEC: "discharging power setting"}
SOLAR = {0xE0: "measured instantaneous amount of electricity generated",
         0xE1: "measured cumulative amount of electricity generated",
         0xE8: "rated power generation output (system-interconnected)"}
METER = {0xD3: "coefficient", 0xD7: "number of effective digits for cumulative amounts",
         0xE0: "measured cumulative amount of electric energy (normal direction)",
         0xE1: "unit for cumulative amounts of electric energy",
         0xE3: "measured cumulative amount of electric energy (reverse direction)",
         0xE7: "measured instantaneous electric power"}
NODE = {0xD3: "number of self-node instances", 0xD6: "self-node instance list S", 0xD7: "self-node class list S"}

_BY_CLASS = {STORAGE_BATTERY: BATTERY, HOME_SOLAR: SOLAR, SMART_METER: METER, (0x0E, 0xF0): NODE}

# Operation mode setting 0xDA / working operation status 0xCF.
MODE_RAPID_CHARGE, MODE_CHARGE, MODE_DISCHARGE, MODE_STANDBY, MODE_AUTO = 0x41, 0x42, 0x43, 0x44, 0x46
MODE_NAMES = {0x40: "other", 0x41: "rapid charging", 0x42: "charging", 0x43: "discharging", 0x44: "standby",
              0x45: "test", 0x46: "automatic", 0x48: "restart", 0x49: "effective capacity recalculation"}
ON, OFF = 0x30, 0x31  # operation status 0x80
FAULT, NO_FAULT = 0x41, 0x42  # fault status 0x88

#: Unit 0xE1 of the meter's cumulative energy: code -> kWh per count.
METER_UNIT_KWH = {0x00: 1.0, 0x01: 0.1, 0x02: 0.01, 0x03: 0.001, 0x04: 0.0001,
                  0x0A: 10.0, 0x0B: 100.0, 0x0C: 1000.0, 0x0D: 10000.0}


def epc_name(eoj, epc: int) -> str:
    """Human name of property ``epc`` of object ``eoj`` (class group, class[, instance])."""
    return _BY_CLASS.get(tuple(eoj[:2]), {}).get(epc) or SUPER.get(epc) or "unknown property"


def unsigned(edt: bytes) -> int | None:
    """Unsigned big-endian value; None for the "no data" sentinels (0xFF.., 0xFE.. overflow, 0xFD.. underflow)."""
    v = int.from_bytes(edt, "big")
    top = (1 << (8 * len(edt))) - 1
    return None if v >= top - 2 else v


def signed(edt: bytes) -> int | None:
    """Signed big-endian value; None for the sentinels 0x80.. (no data), 0x7FFF.., 0x8001.."""
    v = int.from_bytes(edt, "big", signed=True)
    lo = -(1 << (8 * len(edt) - 1))
    return None if v in (lo, lo + 1, -lo - 1) else v


def u(value: int, n: int) -> bytes:
    """``value`` as n unsigned big-endian bytes (clamped into range)."""
    return max(0, min((1 << (8 * n)) - 4, int(value))).to_bytes(n, "big")


def s(value: int, n: int) -> bytes:
    """``value`` as n signed big-endian bytes (clamped into range)."""
    lim = (1 << (8 * n - 1)) - 2
    return max(-lim, min(lim, int(value))).to_bytes(n, "big", signed=True)
