"""The command envelope, its payloads per kind, and the ack.

A command arrives on ``ems/v1/<site>/cmd/<kind>`` as JSON::

    {"id": "c-20250101-0001", "site": "hall-01", "issued_by": "operator:tanaka",
     "issued_at": "2025-01-01T00:00:00Z", "expires_at": "2025-01-01T00:05:00Z",
     "kind": "dispatch", "payload": {"power_w": 3000, "start": "...", "end": "..."}}

:func:`parse_command` checks it completely (shape, payload of its kind, site
and kind match the topic, time window) and raises :class:`CommandRefused`
with a code and a message naming the problem.  Replays are checked by
:mod:`telemetry.replay`.  The site answers every command on
``ems/v1/<site>/ack`` with an :class:`Ack`.

Signs: ``power_w`` [W] positive = battery discharging (see devices.readings).
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, model_validator

from devices.configfile import field_path
from telemetry.mqtt_topics import COMMAND_KINDS, SITE_ID_RE

#: Longest accepted command lifetime (expires_at - issued_at): seen ids are kept
#: this long for replay protection.
MAX_LIFETIME = timedelta(days=7)
#: How far issued_at may lie in the future of the site's clock (clocks drift).
MAX_CLOCK_SKEW = timedelta(minutes=5)
#: Largest power a command may ask for [W]: far above any hall, catches kW/W mix-ups.
MAX_COMMAND_POWER_W = 1_000_000.0

#: Largest command accepted [bytes]: a real one is well under 2 KiB (reasons are at most 500 characters).
MAX_COMMAND_BYTES = 64 * 1024
#: Deepest nesting of JSON objects and arrays accepted: a real command has 2 (envelope, payload).
#: Checked before parsing, so a hostile document never reaches the recursive parser.
MAX_NESTING = 8

CommandId = Annotated[str, Field(pattern=r"^[A-Za-z0-9._:-]{1,64}$")]


class _Strict(BaseModel):
    # allow_inf_nan=False: NaN/inf in any float field (power_w, hold_s) is refused by name.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class ModePayload(_Strict):
    """Switch the site's mode.  ``safe`` forces the battery idle; islanded is detected, not commanded."""

    mode: Literal["vpp", "disaster_reserve", "manual", "safe"]
    reason: str = Field(min_length=1, max_length=500)


class DispatchPayload(_Strict):
    """Aggregator dispatch: hold ``power_w`` [W] (+ discharge) from ``start`` to ``end`` (a lease; it
    lapses back to the local plan at ``end``).  At most 24 h."""

    power_w: float = Field(ge=-MAX_COMMAND_POWER_W, le=MAX_COMMAND_POWER_W)
    start: AwareDatetime
    end: AwareDatetime
    reason: str = Field(default="", max_length=500)

    @model_validator(mode="after")
    def _window(self) -> "DispatchPayload":
        if self.end <= self.start:
            raise ValueError("end must be after start")
        if self.end - self.start > timedelta(hours=24):
            raise ValueError("a dispatch lease lasts at most 24 h")
        return self


class SetpointPayload(_Strict):
    """Manual battery setpoint ``power_w`` [W] (+ discharge), optionally only for ``hold_s`` [s]."""

    power_w: float = Field(ge=-MAX_COMMAND_POWER_W, le=MAX_COMMAND_POWER_W)
    device: str = Field(default="battery", pattern=r"^[a-z0-9][a-z0-9_-]{0,31}$")
    hold_s: float | None = Field(default=None, gt=0, le=86_400)


PAYLOADS: dict[str, type[_Strict]] = {"mode": ModePayload, "dispatch": DispatchPayload, "setpoint": SetpointPayload}


class CommandEnvelope(_Strict):
    """What travels on the wire; ``payload`` is checked against the kind's model separately."""

    id: CommandId
    site: str = Field(pattern=SITE_ID_RE.pattern)
    issued_by: str = Field(min_length=1, max_length=100)
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    kind: Literal["mode", "dispatch", "setpoint"]
    payload: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Command:
    """A command that passed every check, handed to the site's command callback."""

    id: str
    site: str
    issued_by: str
    issued_at: datetime
    expires_at: datetime
    kind: str
    payload: ModePayload | DispatchPayload | SetpointPayload
    received_at: datetime


class CommandRefused(Exception):
    """A command is not accepted.  code: malformed | wrong_site | wrong_kind | expired | not_yet_valid |
    too_long_lived | replayed | unavailable | rejected; message names the problem."""

    def __init__(self, code: str, message: str, command_id: str | None = None, kind: str | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.command_id = command_id
        self.kind = kind
        self.original_ack: str | None = None  # for "replayed": the JSON of the ack sent the first time


class CommandRejected(Exception):
    """Raised by a command callback to refuse a valid command (e.g. not allowed in the current mode)."""


def _problems(exc: ValidationError, prefix: str = "") -> str:
    parts = []
    for err in exc.errors():
        loc = field_path(tuple(err.get("loc", ())))
        msg = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        parts.append(f"{prefix}{loc}: {msg}")
    return "; ".join(parts)


def _too_deep(raw: bytes) -> bool:
    """True if ``raw`` nests ``[``/``{`` (outside JSON strings) deeper than MAX_NESTING.  Linear, and
    free for ordinary commands: only a document with more brackets than the limit is scanned."""
    if raw.count(b"[") + raw.count(b"{") <= MAX_NESTING:
        return False
    depth = 0
    in_string = escaped = False
    for byte in raw:
        if in_string:
            if escaped:
                escaped = False
            elif byte == 0x5C:  # backslash
                escaped = True
            elif byte == 0x22:  # quote
                in_string = False
        elif byte == 0x22:
            in_string = True
        elif byte in (0x5B, 0x7B):  # [ {
            depth += 1
            if depth > MAX_NESTING:
                return True
        elif byte in (0x5D, 0x7D):  # ] }
            depth -= 1
    return False


def parse_command(raw: bytes | str, site: str, topic_kind: str | None, now: datetime,
                  max_lifetime: timedelta = MAX_LIFETIME, max_skew: timedelta = MAX_CLOCK_SKEW) -> Command:
    """Validate one command for ``site`` received on the topic of ``topic_kind`` at ``now`` (UTC).

    Raises CommandRefused naming the problem (with the command id and kind
    when they could be read).  Size and nesting are bounded before the JSON
    is parsed (:data:`MAX_COMMAND_BYTES`, :data:`MAX_NESTING`).
    """
    if len(raw) > MAX_COMMAND_BYTES:
        raise CommandRefused("malformed", f"too large: {len(raw)} bytes (at most {MAX_COMMAND_BYTES})",
                             kind=topic_kind)
    if _too_deep(raw.encode("utf-8", "replace") if isinstance(raw, str) else bytes(raw)):
        raise CommandRefused("malformed", f"not JSON of a command: nested deeper than {MAX_NESTING} levels",
                             kind=topic_kind)
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CommandRefused("malformed", f"not JSON: {exc}", kind=topic_kind) from None
    except RecursionError:  # cannot happen within MAX_NESTING; kept so that no input ends without an answer
        raise CommandRefused("malformed", "not JSON of a command: nested too deeply", kind=topic_kind) from None
    if not isinstance(data, dict):
        raise CommandRefused("malformed", "not a JSON object", kind=topic_kind)
    raw_id = data.get("id") if isinstance(data.get("id"), str) and len(data.get("id")) <= 64 else None
    if topic_kind not in COMMAND_KINDS:
        where = "not on one of this site's command topics" if topic_kind is None else \
            f"unknown command topic kind {topic_kind!r}"
        raise CommandRefused("wrong_kind", where, raw_id, topic_kind)
    try:
        env = CommandEnvelope.model_validate(data)
    except ValidationError as exc:
        raise CommandRefused("malformed", _problems(exc), raw_id, topic_kind) from None
    if env.site != site:
        raise CommandRefused("wrong_site", f"site: command is for {env.site!r}, this is {site!r}", env.id, env.kind)
    if env.kind != topic_kind:
        raise CommandRefused("wrong_kind", f"kind: {env.kind!r} sent on the topic for {topic_kind!r}",
                             env.id, topic_kind)
    try:
        payload = PAYLOADS[env.kind].model_validate(env.payload)
    except ValidationError as exc:
        raise CommandRefused("malformed", _problems(exc, "payload."), env.id, env.kind) from None
    if env.expires_at <= env.issued_at:
        raise CommandRefused("malformed", "expires_at must be after issued_at", env.id, env.kind)
    if env.expires_at - env.issued_at > max_lifetime:
        raise CommandRefused("too_long_lived", f"expires_at - issued_at exceeds {max_lifetime}", env.id, env.kind)
    if now >= env.expires_at:
        raise CommandRefused("expired", f"expired at {env.expires_at.isoformat()} (now {now.isoformat()})",
                             env.id, env.kind)
    if env.issued_at - now > max_skew:
        raise CommandRefused("not_yet_valid", f"issued_at {env.issued_at.isoformat()} is in the future "
                             f"(now {now.isoformat()}; check clocks)", env.id, env.kind)
    return Command(env.id, env.site, env.issued_by, env.issued_at, env.expires_at, env.kind, payload, now)


class Ack(_Strict):
    """The site's answer: status ok (accepted, ``outcome`` from the handler), refused (with ``code``
    and ``error``) or failed (``error``: the handler raised, or the site could not take the command,
    e.g. code ``storage_failed`` when it could not be recorded; it was not executed)."""

    command_id: str | None
    site: str
    kind: str | None
    status: Literal["ok", "refused", "failed"]
    code: str | None = None
    error: str | None = None
    outcome: Any = None
    received_at: AwareDatetime
    acked_at: AwareDatetime


def new_command(site: str, kind: str, payload: dict[str, Any] | _Strict, issued_by: str,
                ttl: timedelta = timedelta(minutes=5), now: datetime | None = None,
                command_id: str | None = None) -> dict[str, Any]:
    """A fresh command envelope as a JSON-ready dict (used by the central service and tests)."""
    now = now or datetime.now(timezone.utc)
    if isinstance(payload, BaseModel):
        payload = payload.model_dump(mode="json")
    env = CommandEnvelope(id=command_id or f"c-{now:%Y%m%dT%H%M%S}-{secrets.token_hex(6)}", site=site,
                          issued_by=issued_by, issued_at=now, expires_at=now + ttl, kind=kind, payload=payload)
    PAYLOADS[kind].model_validate(env.payload)  # refuse to send what the site would refuse
    return env.model_dump(mode="json")
