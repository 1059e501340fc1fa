"""Build a site's devices from configuration, one shared connection per endpoint.

``build_devices`` turns the ``devices:`` list of a site into nature objects
(BatteryDevice, MeterDevice, PVDevice; MQTT devices via
``devices.mqtt_device.MqttDevice``).  Devices behind the same endpoint
(host:port, or serial line) share one :class:`ModbusConnection`;
``close_all`` closes each connection once.  ``check_devices`` tells what
``build_devices`` would refuse, without opening anything (``ems check-config``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from devices.config import (
    SUNSPEC,
    DeviceConfig,
    EchonetLiteTransport,
    ModbusRtuTransport,
    ModbusTcpTransport,
    MqttTransport,
)
from devices.configfile import ConfigError
from devices.errors import DeviceError
from devices.modbus.connection import ModbusConnection
from devices.natures import NATURE_CLASSES, Clock, Device, utc_now
from devices.registermap import load_register_map


def _endpoint_key(transport: ModbusTcpTransport | ModbusRtuTransport) -> tuple:
    if isinstance(transport, ModbusTcpTransport):
        return ("tcp", transport.host, transport.port)
    return ("rtu", transport.device)


def _new_connection(transport: ModbusTcpTransport | ModbusRtuTransport, timeout_s: float) -> ModbusConnection:
    if isinstance(transport, ModbusTcpTransport):
        return ModbusConnection.tcp(transport.host, transport.port, timeout_s)
    return ModbusConnection.rtu(
        transport.device,
        baudrate=transport.baudrate,
        parity=transport.parity,
        stopbits=transport.stopbits,
        bytesize=transport.bytesize,
        timeout_s=timeout_s,
    )


def _serial_settings(t: ModbusRtuTransport) -> tuple:
    return (t.baudrate, t.parity, t.stopbits, t.bytesize)


def _mqtt_device(config: DeviceConfig, **kwargs: Any) -> Device:
    # Imported here so that sites with only Modbus devices never load paho-mqtt.
    from devices.mqtt_device import MqttDevice

    return MqttDevice(config, **kwargs)


def _echonet_device(config: DeviceConfig, sockets: dict[int, Any], clock: Clock) -> Device:
    # One UDP socket per local port for all ECHONET Lite devices of the site (real nodes answer to 3610).
    from devices.echonet.client import EchonetSocket
    from devices.echonet.natures import ECHONET_CLASSES

    local_port = config.transport.local_port
    sock = sockets.get(local_port)
    if sock is None:
        sock = sockets[local_port] = EchonetSocket(local_port=local_port)
    return ECHONET_CLASSES[config.nature](config, sock, clock=clock)


def build_devices(
    site_devices: Iterable[DeviceConfig],
    maps_dir: Path | None = None,
    *,
    clock: Clock = utc_now,
    mqtt_kwargs: dict[str, Any] | None = None,
) -> dict[str, Device]:
    """Device objects keyed by device id; Modbus devices on one endpoint share a connection.

    Register maps are loaded from ``maps_dir`` (default: the shipped
    ``config/devicemaps``); ``map: sunspec`` devices discover theirs on first
    read.  ``mqtt_kwargs`` are passed to ``MqttDevice`` (e.g. the broker).
    Raises ConfigError for a missing/invalid map or a map of the wrong
    nature, ValueError for a duplicate device id or one serial line
    configured with two different settings.
    """
    connections: dict[tuple, ModbusConnection] = {}
    serial: dict[tuple, tuple] = {}
    devices: dict[str, Device] = {}
    echonet_sockets: dict[int, Any] = {}
    for cfg in site_devices:
        if cfg.id in devices:
            raise ValueError(f"duplicate device id {cfg.id!r}")
        if isinstance(cfg.transport, MqttTransport):
            devices[cfg.id] = _mqtt_device(cfg, **(mqtt_kwargs or {}))
            continue
        if isinstance(cfg.transport, EchonetLiteTransport):
            devices[cfg.id] = _echonet_device(cfg, echonet_sockets, clock)
            continue
        key = _endpoint_key(cfg.transport)
        if isinstance(cfg.transport, ModbusRtuTransport):
            settings = _serial_settings(cfg.transport)
            if serial.setdefault(key, settings) != settings:
                raise ValueError(
                    f"device {cfg.id}: serial line {cfg.transport.device} is configured with different "
                    f"settings {settings} than another device on it {serial[key]}"
                )
        conn = connections.get(key)
        if conn is None:
            conn = connections[key] = _new_connection(cfg.transport, cfg.timeout_s)
        else:
            conn.timeout_s = max(conn.timeout_s, cfg.timeout_s)  # the most patient device sets the default
        regmap = None
        if cfg.map != SUNSPEC:
            regmap = load_register_map(cfg.map, maps_dir)
            if regmap.nature != cfg.nature:
                raise ConfigError(
                    [f"device {cfg.id}: map {cfg.map!r} is a {regmap.nature.value} map, the device is a {cfg.nature.value}"]
                )
        devices[cfg.id] = NATURE_CLASSES[cfg.nature](cfg, conn, regmap, clock=clock)
    if echonet_sockets:
        from devices.echonet.natures import link_grid_probe

        link_grid_probe(devices.values())
    return devices


async def close_all(devices: dict[str, Device] | Iterable[Device]) -> None:
    """Close every device and every shared connection exactly once."""
    items = devices.values() if isinstance(devices, dict) else devices
    seen: set[int] = set()
    for dev in items:
        close = getattr(dev, "close", None)
        if close is not None:
            result = close()
            if hasattr(result, "__await__"):
                await result
        conn = getattr(dev, "connection", None)  # a ModbusConnection or an EchonetSocket, shared by devices
        if conn is not None and id(conn) not in seen:
            seen.add(id(conn))
            await conn.close()


@dataclass(frozen=True)
class DeviceProblem:
    """One reason :func:`build_devices` would refuse a site's devices.

    ``field``: where in the site's device list (``devices[1].map``), or None
    when ``message`` names its own file (a broken register map:
    ``config/devicemaps/x.yaml: points.foo: ...``).
    """

    field: str | None
    message: str


#: "transport.fields: ..." -> ("transport.fields", "...") for messages that start with a field.
_FIELD_PREFIX = re.compile(r"^([a-z_][a-z0-9_.]*): (.+)$", re.S)


def check_devices(site_devices: Sequence[DeviceConfig], maps_dir: Path | None = None) -> list[DeviceProblem]:
    """Everything :func:`build_devices` checks, with every problem named; nothing is connected.

    Loads each register map (problems name the map file and point), checks
    its nature against the device's, builds each device as the gateway does
    (read plan, MQTT field mapping; connections open only on first use, so
    none is opened here) and checks that devices on one serial line agree on
    its settings.  A map's problems are reported once per device using it.
    """
    problems: list[DeviceProblem] = []
    serial: dict[tuple, tuple[int, ModbusRtuTransport]] = {}
    for j, cfg in enumerate(site_devices):
        where = f"devices[{j}]"
        t = cfg.transport
        if isinstance(t, ModbusRtuTransport):
            first = serial.setdefault(_endpoint_key(t), (j, t))
            if first[0] != j:
                for name in ("baudrate", "parity", "stopbits", "bytesize"):
                    if getattr(t, name) != getattr(first[1], name):
                        problems.append(DeviceProblem(
                            f"{where}.transport.{name}",
                            f"{getattr(t, name)} differs from devices[{first[0]}] on the same serial line "
                            f"{t.device} ({getattr(first[1], name)})"))
                        break
        if not isinstance(t, (MqttTransport, EchonetLiteTransport)) and cfg.map != SUNSPEC:
            try:
                regmap = load_register_map(cfg.map, maps_dir)  # type: ignore[arg-type]
            except ConfigError as exc:
                problems += [DeviceProblem(None, line) for line in exc.problems]
                continue
            if regmap.nature != cfg.nature:
                problems.append(DeviceProblem(
                    f"{where}.map", f"{cfg.map!r} is a {regmap.nature.value} map, the device is a {cfg.nature.value}"))
                continue
        try:
            build_devices([cfg], maps_dir)  # the gateway's own construction; connects nothing
        except (ConfigError, DeviceError, ValueError) as exc:
            text = exc.message if isinstance(exc, DeviceError) else \
                "; ".join(exc.problems) if isinstance(exc, ConfigError) else str(exc)
            m = _FIELD_PREFIX.match(text)
            problems.append(DeviceProblem(f"{where}.{m.group(1)}", m.group(2)) if m else DeviceProblem(where, text))
    if not problems:
        try:  # what spans devices (shared endpoints), should a check above have missed it
            build_devices(site_devices, maps_dir)
        except (ConfigError, DeviceError, ValueError) as exc:
            problems.append(DeviceProblem("devices", str(exc)))
    return problems
