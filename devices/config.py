"""Configuration of one device: which nature, which map, how it is reached, how often polled."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, ValidationInfo, model_validator

from devices.configfile import StrictModel
from devices.readings import CANONICAL_FIELDS, Nature

#: Map name that means "find the SunSpec models by discovery" instead of a file.
SUNSPEC = "sunspec"

DeviceId = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")]


class ModbusTcpTransport(StrictModel):
    """Modbus TCP endpoint: host, port and unit (device) id."""

    kind: Literal["modbus_tcp"]
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    unit: int = Field(default=1, ge=0, le=247)

    @property
    def endpoint(self) -> tuple[str, int]:
        """(host, port): devices sharing it share one TCP connection."""
        return (self.host, self.port)


class ModbusRtuTransport(StrictModel):
    """Modbus RTU over a serial line (RS-485)."""

    kind: Literal["modbus_rtu"]
    device: str = Field(min_length=1)  # e.g. /dev/ttyUSB0
    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8
    unit: int = Field(default=1, ge=1, le=247)

    @property
    def endpoint(self) -> tuple[str, int]:
        """(serial device, 0): devices on one bus share it."""
        return (self.device, 0)


class MqttTransport(StrictModel):
    """A device that publishes JSON readings on an MQTT topic.

    ``fields`` maps canonical reading fields to keys (dotted paths) in the
    JSON payload, e.g. ``{soc_pct: "bms.soc", power_w: "p"}``; ``scale``
    optionally multiplies a field (e.g. kW → W: 1000).
    """

    kind: Literal["mqtt"]
    topic: str = Field(min_length=1)
    fields: dict[str, str] = Field(min_length=1)
    scale: dict[str, float] = Field(default_factory=dict)
    time_key: str | None = None  # JSON key with an ISO 8601 or epoch time; else receive time


class EchonetLiteTransport(StrictModel):
    """An ECHONET Lite object on a node reached over UDP (devices.echonet).

    host/port: the node (port 3610 on real equipment; another port for a
    simulated hall); instance: the object's instance code (1..0x7F) within
    its class, which the device's nature gives (battery 0x027D, PV 0x0279,
    meter 0x0288); local_port: the UDP port the gateway listens on for
    answers (3610: real nodes answer there; 0: any free port, for nodes that
    answer to the sender, like the simulator).
    """

    kind: Literal["echonet_lite"]
    host: str = Field(min_length=1)
    port: int = Field(default=3610, ge=1, le=65535)
    instance: int = Field(default=1, ge=1, le=0x7F)
    local_port: int = Field(default=3610, ge=0, le=65535)


Transport = Annotated[
    ModbusTcpTransport | ModbusRtuTransport | MqttTransport | EchonetLiteTransport, Field(discriminator="kind")
]


class DeviceConfig(StrictModel):
    """One device at a site.

    period_s [s]: poll period; timeout_s [s]: per-request timeout;
    rated_w [W]: nameplate power, used to reject implausible power readings.
    """

    id: DeviceId
    nature: Nature
    transport: Transport
    map: str | None = None  # register map name in config/devicemaps, or "sunspec"
    period_s: float = Field(default=1.0, gt=0, le=3600)
    timeout_s: float = Field(default=0.5, gt=0, le=60)
    rated_w: float | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> "DeviceConfig":
        if isinstance(self.transport, MqttTransport):
            if self.map is not None:
                raise ValueError("an MQTT device takes 'transport.fields', not 'map'")
            allowed = CANONICAL_FIELDS[self.nature]
            unknown = sorted(set(self.transport.fields) - set(allowed))
            if unknown:
                raise ValueError(
                    f"transport.fields: {', '.join(unknown)} not a {self.nature.value} field "
                    f"(one of {', '.join(sorted(allowed))})"
                )
            return self
        if isinstance(self.transport, EchonetLiteTransport):
            if self.map is not None:
                raise ValueError("an ECHONET Lite device takes no 'map': its class (from the nature) defines the properties")
            return self
        if not self.map:
            raise ValueError("a Modbus device needs 'map' (a file in config/devicemaps, or 'sunspec')")
        if self.map != SUNSPEC:
            maps_dir = (info.context or {}).get("maps_dir")
            if maps_dir is not None and not (Path(maps_dir) / f"{self.map}.yaml").is_file():
                raise ValueError(f"map {self.map!r}: no file {Path(maps_dir) / (self.map + '.yaml')}")
        return self
