"""Broker connection settings and a configured paho-mqtt client (paho 2.x, callback API v2).

paho runs its network loop in its own thread (``loop_start``) and reconnects
by itself after a drop, waiting ``min_reconnect_s`` doubling up to
``max_reconnect_s``; each client's first wait is randomised (×1..2) so a
fleet does not reconnect in lock-step after a broker restart.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
import os
import random
import socket
import ssl
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from pydantic import BaseModel


@dataclass(frozen=True)
class MqttSettings:
    """Where and how to reach the broker.

    password: give it from a file or the environment (see :func:`read_secret`),
    never from the repository; tls: use TLS (ca_file: PEM bundle to trust,
    None = system store; certfile/keyfile: client certificate if the broker
    wants one); keepalive_s [s]; min/max_reconnect_s [s]: backoff bounds;
    max_queued: QoS>0 messages kept in memory while the broker is away.
    """

    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = dataclasses.field(default=None, repr=False)
    tls: bool = False
    ca_file: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    keepalive_s: int = 30
    min_reconnect_s: float = 1.0
    max_reconnect_s: float = 60.0
    max_queued: int = 10_000


def read_secret(file: str | Path | None = None, env: str | None = None) -> str:
    """A secret from a file (first line, stripped) or an environment variable; ValueError naming
    which one is missing or empty."""
    if file is not None:
        try:
            value = Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"secret file {file}: cannot read: {exc.strerror}") from None
        if not value:
            raise ValueError(f"secret file {file}: empty")
        return value
    if env is not None:
        value = os.environ.get(env, "").strip()
        if not value:
            raise ValueError(f"environment variable {env} is not set or empty")
        return value
    raise ValueError("a secret needs a file or an environment variable name")


def make_client(settings: MqttSettings, client_id: str, clean_session: bool = False) -> mqtt.Client:
    """A paho client with credentials, TLS, backoff and queue limits applied (not yet connected).

    clean_session False: the broker keeps the subscriptions and queues QoS 1
    messages while this client is away (commands reach a gateway after a
    short outage).
    """
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=clean_session,
                         protocol=mqtt.MQTTv311)
    if settings.username is not None:
        client.username_pw_set(settings.username, settings.password)
    if settings.tls:
        client.tls_set(ca_certs=settings.ca_file, certfile=settings.certfile, keyfile=settings.keyfile,
                       cert_reqs=ssl.CERT_REQUIRED, tls_version=ssl.PROTOCOL_TLS_CLIENT)
    first = settings.min_reconnect_s * (1 + random.random())
    client.reconnect_delay_set(min_delay=max(1, round(first)), max_delay=max(1, int(settings.max_reconnect_s)))
    client.max_queued_messages_set(settings.max_queued)
    client.on_socket_open = _no_delay
    return client


def _no_delay(client: mqtt.Client, userdata: Any, sock: Any) -> None:
    # Small MQTT packets (commands, acks) would otherwise wait for Nagle's
    # algorithm and the peer's delayed ACK: ~40 ms per hop.
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


def json_default(obj: Any) -> Any:
    """JSON for what the daemon publishes: datetimes as ISO UTC, enums by value, dataclasses, models."""
    if isinstance(obj, datetime):
        return obj.astimezone(timezone.utc).isoformat() if obj.tzinfo else obj.isoformat()
    if isinstance(obj, date):
        return obj.isoformat()
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, BaseModel):
        return obj.model_dump(mode="json")
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} as JSON")


def to_json(obj: Any) -> bytes:
    """Compact UTF-8 JSON of ``obj`` (see :func:`json_default`); NaN and infinities become null
    (they are not valid JSON).  TypeError for objects that cannot be encoded."""
    try:
        text = json.dumps(obj, default=json_default, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except ValueError:
        text = json.dumps(_finite_only(json.loads(json.dumps(obj, default=json_default))),
                          separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode("utf-8")


def _finite_only(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite_only(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_finite_only(v) for v in obj]
    return obj
