"""Devices that publish JSON readings over MQTT (a BMS gateway, a smart meter bridge, ...).

Configured by :class:`devices.config.MqttTransport`::

    - {id: meter, nature: meter,
       transport: {kind: mqtt, topic: "site/meter/state", time_key: "ts",
                   fields: {power_w: "p_kw", import_wh: "e.in_kwh"}, scale: {power_w: 1000, import_wh: 1000}}}

``fields`` maps canonical reading fields to (dotted) paths in the JSON
payload, ``scale`` multiplies (kW → W: 1000), ``time_key`` names the
payload's timestamp (ISO 8601 with zone, or epoch s/ms/µs/ns); without it
the receive time is used.

:class:`MqttDevice` has the interface of the Modbus natures
(``async read() -> Reading``) and returns the reading of the latest good
message.  It raises :class:`~devices.errors.DeviceError` when there is none,
when it is older than ``max_age_s`` or, if no fresh good reading exists, with
the problem of the latest bad message.  A bad payload never raises into the
MQTT thread: it is counted (``bad_messages``) and kept as ``last_error``,
naming the topic and the field.

:class:`MqttDeviceHub` is one broker connection shared by all MQTT devices of
a gateway (paho network thread; re-subscribes after every reconnect).
"""

from __future__ import annotations

import json
import logging
import math
import socket
import ssl
import threading
from datetime import datetime, timezone
from typing import Any, Callable

import paho.mqtt.client as mqtt

from devices.config import DeviceConfig, MqttTransport
from devices.errors import DeviceError
from devices.natures import Clock, derive_grid_ok, utc_now
from devices.readings import CANONICAL_FIELDS, BatteryReading, BatteryState, MeterReading, Nature, PVReading, Reading

log = logging.getLogger(__name__)

#: Canonical fields that are write targets: an MQTT device here is read-only.
WRITE_FIELDS = {"setpoint_w", "heartbeat", "limit_pct"}
#: A payload time this far [s] ahead of the gateway's clock is refused as implausible.
MAX_FUTURE_S = 60.0
#: Plausible ranges of some fields (after scaling).
_RANGES = {"soc_pct": (0.0, 100.0), "soh_pct": (0.0, 100.0), "frequency_hz": (0.0, 100.0),
           "voltage_v": (0.0, 1000.0)}


class MqttDeviceHub:
    """One MQTT connection for the gateway's MQTT devices.

    host/port/username/password/tls/ca_file as in telemetry's MqttSettings
    (the password comes from a file or the environment, never the repo).
    ``subscribe(topic, handler)``: handler(topic, payload bytes) is called in
    paho's network thread for every message matching ``topic``.
    """

    def __init__(self, host: str, port: int = 1883, username: str | None = None, password: str | None = None,
                 tls: bool = False, ca_file: str | None = None, client_id: str | None = None,
                 keepalive_s: int = 30):
        self.host, self.port, self.keepalive_s = host, port, keepalive_s
        self._client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id or "",
                                   protocol=mqtt.MQTTv311)
        if username is not None:
            self._client.username_pw_set(username, password)
        if tls:
            self._client.tls_set(ca_certs=ca_file, cert_reqs=ssl.CERT_REQUIRED)
        self._client.reconnect_delay_set(1, 30)
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_socket_open = _no_delay
        self._handlers: dict[str, list[Callable[[str, bytes], None]]] = {}
        self._lock = threading.Lock()
        self._connected = threading.Event()
        self._subscribed = threading.Event()

    def subscribe(self, topic: str, handler: Callable[[str, bytes], None]) -> None:
        """Deliver messages on ``topic`` (wildcards allowed) to ``handler`` (QoS 0)."""
        with self._lock:
            first = topic not in self._handlers
            self._handlers.setdefault(topic, []).append(handler)
        if first and self._connected.is_set():
            self._client.subscribe(topic, qos=0)

    def unsubscribe(self, topic: str, handler: Callable[[str, bytes], None]) -> None:
        with self._lock:
            handlers = self._handlers.get(topic, [])
            if handler in handlers:
                handlers.remove(handler)
            last = not handlers
            if last:
                self._handlers.pop(topic, None)
        if last and self._connected.is_set():
            self._client.unsubscribe(topic)

    def start(self) -> None:
        """Connect in the background (retrying) and start the network thread."""
        self._client.connect_async(self.host, self.port, keepalive=self.keepalive_s)
        self._client.loop_start()

    def wait_ready(self, timeout_s: float = 30.0) -> bool:
        """Block until connected and the subscriptions are confirmed; False after ``timeout_s`` [s]."""
        return self._connected.wait(timeout_s) and (not self._handlers or self._subscribed.wait(timeout_s))

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT devices: broker %s:%d refused the connection: %s", self.host, self.port, reason_code)
            return
        with self._lock:
            topics = list(self._handlers)
        self._subscribed.clear()
        if topics:
            client.subscribe([(t, 0) for t in topics])
        self._connected.set()

    def _on_message(self, client, userdata, msg) -> None:
        with self._lock:
            handlers = [h for t, hs in self._handlers.items() if mqtt.topic_matches_sub(t, msg.topic) for h in hs]
        for handler in handlers:
            try:
                handler(msg.topic, msg.payload)
            except Exception:  # one device's bug must not stop the others
                log.exception("MQTT device handler failed for %s", msg.topic)


def _no_delay(client: Any, userdata: Any, sock: Any) -> None:
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


class MqttDevice:
    """A battery, meter or PV device fed by JSON messages (see the module docstring).

    max_age_s [s]: a reading older than this is stale (default: 5 × the
    device's ``period_s``, at least 5 s); hub: where to subscribe (None:
    feed messages with :meth:`feed`); clock: current UTC time.
    """

    def __init__(self, config: DeviceConfig, hub: MqttDeviceHub | None = None, *, max_age_s: float | None = None,
                 clock: Clock = utc_now):
        if not isinstance(config.transport, MqttTransport):
            raise ValueError(f"device {config.id}: not an MQTT device")
        t = config.transport
        problems = []
        writes = sorted(set(t.fields) & WRITE_FIELDS)
        if writes:
            problems.append(f"{', '.join(writes)}: MQTT devices are read-only")
        missing = [f for f, required in CANONICAL_FIELDS[config.nature].items() if required and f not in t.fields]
        if missing:
            problems.append(f"required field(s) {', '.join(missing)} not mapped")
        unknown_scale = sorted(set(t.scale) - set(t.fields))
        if unknown_scale:
            problems.append(f"scale for unmapped field(s) {', '.join(unknown_scale)}")
        if problems:
            raise DeviceError(config.id, "config", f"transport.fields: {'; '.join(problems)}")
        self.id = config.id
        self.nature: Nature = config.nature
        self.config = config
        self.topic = t.topic
        self.max_age_s = max_age_s if max_age_s is not None else max(5.0, 5 * config.period_s)
        self.clock = clock
        self.hub = hub
        self.messages = 0
        self.bad_messages = 0
        self.last_error: DeviceError | None = None
        self._latest: Reading | None = None
        self._last_error_at: datetime | None = None
        self._lock = threading.Lock()
        if hub is not None:
            hub.subscribe(self.topic, self._on_message)

    # -- input ---------------------------------------------------------------------------
    def _on_message(self, topic: str, payload: bytes) -> None:
        try:
            self.feed(payload, topic=topic)
        except DeviceError:
            pass  # counted and kept by feed(); never raise into the MQTT thread

    def feed(self, payload: bytes | str, topic: str | None = None, received_at: datetime | None = None) -> Reading:
        """Parse one message and keep its reading; DeviceError (counted, kept as last_error) if bad."""
        received_at = received_at or self.clock()
        topic = topic or self.topic
        with self._lock:
            self.messages += 1
        try:
            reading = self._parse(payload, topic, received_at)
        except DeviceError as exc:
            with self._lock:
                self.bad_messages += 1
                self.last_error, self._last_error_at = exc, received_at
            if self.bad_messages == 1 or self.bad_messages % 100 == 0:
                log.warning("%s (%d bad messages so far)", exc, self.bad_messages)
            raise
        with self._lock:
            if self._latest is None or reading.time >= self._latest.time:  # out-of-order messages do not win
                self._latest = reading
        return reading

    def _err(self, kind: str, topic: str, message: str) -> DeviceError:
        return DeviceError(self.id, kind, f"topic {topic}: {message}")

    def _parse(self, payload: bytes | str, topic: str, received_at: datetime) -> Reading:
        try:
            data = json.loads(payload)
        except (ValueError, UnicodeDecodeError) as exc:
            raise self._err("decode", topic, f"payload is not JSON ({exc})") from None
        if not isinstance(data, dict):
            raise self._err("decode", topic, "payload is not a JSON object")
        t: MqttTransport = self.config.transport
        required = CANONICAL_FIELDS[self.nature]
        values: dict[str, Any] = {}
        for field, path in t.fields.items():
            found, raw = _lookup(data, path)
            if not found or raw is None:
                if required.get(field):
                    raise self._err("implausible", topic, f"field {field}: key {path!r} missing")
                continue
            values[field] = self._value(field, raw, path, topic, t.scale.get(field))
        time = self._time(data, topic, received_at) if t.time_key else received_at
        return self._reading(values, time, topic)

    def _value(self, field: str, raw: Any, path: str, topic: str, scale: float | None) -> Any:
        if field == "grid_ok":
            if isinstance(raw, bool):
                return raw
            if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                return raw != 0
            raise self._err("decode", topic, f"field grid_ok: key {path!r} is {raw!r}, not a boolean")
        if isinstance(raw, bool):
            raise self._err("decode", topic, f"field {field}: key {path!r} is a boolean, not a number")
        try:
            value = float(raw)  # numbers, and numbers sent as strings ("12.5")
        except (TypeError, ValueError):
            raise self._err("decode", topic, f"field {field}: key {path!r} is {raw!r}, not a number") from None
        if scale is not None:
            value *= scale
        if not math.isfinite(value):
            raise self._err("implausible", topic, f"field {field}: key {path!r} is not finite ({raw!r})")
        lo_hi = _RANGES.get(field)
        if lo_hi and not lo_hi[0] <= value <= lo_hi[1]:
            raise self._err("implausible", topic, f"field {field}: {value:g} outside {lo_hi[0]:g}..{lo_hi[1]:g}")
        rated = self.config.rated_w
        if field == "power_w" and rated and abs(value) > 1.5 * rated:
            raise self._err("implausible", topic, f"field power_w: {value:g} W exceeds 1.5 × rated_w {rated:g} W "
                            "(check scale)")
        return value

    def _time(self, data: dict, topic: str, received_at: datetime) -> datetime:
        key = self.config.transport.time_key
        found, raw = _lookup(data, key)
        if not found or raw is None:
            raise self._err("implausible", topic, f"time: key {key!r} missing")
        try:
            if isinstance(raw, (int, float)) and not isinstance(raw, bool):
                t = datetime.fromtimestamp(_epoch_seconds(float(raw)), timezone.utc)
            elif isinstance(raw, str):
                t = datetime.fromisoformat(raw.replace("Z", "+00:00"))
                if t.tzinfo is None:
                    raise self._err("decode", topic, f"time: key {key!r} value {raw!r} has no timezone")
                t = t.astimezone(timezone.utc)
            else:
                raise ValueError(raw)
        except (ValueError, OverflowError, OSError):
            raise self._err("decode", topic, f"time: key {key!r} value {raw!r} is not ISO 8601 or epoch") from None
        if (t - received_at).total_seconds() > MAX_FUTURE_S:
            raise self._err("implausible", topic, f"time: {t.isoformat()} is in the future (clock?)")
        return t

    def _reading(self, v: dict[str, Any], time: datetime, topic: str) -> Reading:
        if self.nature == Nature.BATTERY:
            state = BatteryState.UNKNOWN
            if "state" in v:
                try:
                    state = BatteryState(int(v["state"]))
                except ValueError:
                    state = BatteryState.UNKNOWN
            return BatteryReading(self.id, time, soc_pct=v["soc_pct"], power_w=v["power_w"],
                                  max_charge_w=v.get("max_charge_w"), max_discharge_w=v.get("max_discharge_w"),
                                  capacity_wh=v.get("capacity_wh"), soh_pct=v.get("soh_pct"), state=state,
                                  fault_code=int(v["fault_code"]) if "fault_code" in v else None)
        if self.nature == Nature.METER:
            grid_ok = v["grid_ok"] if "grid_ok" in v else derive_grid_ok(v.get("voltage_v"), v.get("frequency_hz"),
                                                                        100.0)
            return MeterReading(self.id, time, power_w=v["power_w"], import_wh=v.get("import_wh"),
                                export_wh=v.get("export_wh"), voltage_v=v.get("voltage_v"),
                                frequency_hz=v.get("frequency_hz"), grid_ok=grid_ok)
        return PVReading(self.id, time, power_w=max(0.0, v["power_w"]), energy_wh=v.get("energy_wh"),
                         rated_w=v.get("rated_w") or self.config.rated_w)

    # -- the nature interface ------------------------------------------------------------
    async def read(self) -> Reading:
        """The reading of the latest good message; DeviceError if none, stale, or the latest was bad."""
        now = self.clock()
        with self._lock:
            latest, error, error_at = self._latest, self.last_error, self._last_error_at
        if latest is not None:
            age = (now - latest.time).total_seconds()
            if age <= self.max_age_s:
                return latest
        if error is not None and (latest is None or error_at >= latest.time):
            raise error
        if latest is None:
            raise DeviceError(self.id, "timeout", f"topic {self.topic}: no message received yet")
        raise DeviceError(self.id, "timeout", f"topic {self.topic}: latest reading is {age:.1f} s old "
                          f"(max {self.max_age_s:g} s)")

    async def close(self) -> None:
        """Stop receiving (the hub itself is closed by its owner)."""
        if self.hub is not None:
            self.hub.unsubscribe(self.topic, self._on_message)


def _lookup(data: Any, path: str) -> tuple[bool, Any]:
    """Follow a dotted path through dicts (and lists by index): (found, value)."""
    cur = data
    for part in path.split("."):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            return False, None
    return True, cur


def _epoch_seconds(x: float) -> float:
    """Epoch in s, ms, µs or ns → seconds (by magnitude; valid for years 2001..2286)."""
    for divisor in (1.0, 1e3, 1e6, 1e9):
        if abs(x / divisor) < 1e10:
            return x / divisor
    raise ValueError(x)
