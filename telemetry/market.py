"""Market and weather inputs the central service publishes to the gateways over MQTT.

Topics (retained, QoS 1, written only by the central service; every gateway
may read them)::

    ems/v1/_fleet/prices/<jepx_area>    day-ahead spot prices of one JEPX area
    ems/v1/_fleet/weather/<area_code>   PV weather factor per day of one JMA area

``_fleet`` cannot be a site id (site ids have no ``_``), so these topics
never collide with a site's own tree ``ems/v1/<site>/…``.

Payloads (JSON), validated here on both sides::

    prices:  {"area": "chugoku", "source": "spot_summary_2026.csv",
              "published_at": ISO-8601, "slot_minutes": 30,
              "slots": [{"start": ISO-8601, "spot_jpy_per_kwh": 12.3}, ...]}
    weather: {"area_code": "3120100", "published_at": ISO-8601, "source": "...",
              "days": [{"date": "2026-12-07", "factor": 0.8}, ...]}

``factor`` is the day's PV weather factor in [0, 1] (1 = clear sky), the
``weather_factor`` the forecaster takes.  Prices are [JPY/kWh], times are
timezone-aware (stored as UTC).
"""

from __future__ import annotations

import json
import re
from datetime import date, datetime, timezone
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from telemetry.mqtt_topics import PREFIX

FLEET_BASE = f"{PREFIX}/_fleet"
PRICES_BASE = f"{FLEET_BASE}/prices"
WEATHER_BASE = f"{FLEET_BASE}/weather"
#: Everything the central service publishes to the whole fleet (the ACL's read/write grant).
FLEET_FILTER = f"{FLEET_BASE}/#"
QOS_MARKET = 1

#: A JEPX area name as used in topics (lower case ASCII: hokkaido, tohoku, tokyo, chubu, hokuriku,
#: kansai, chugoku, shikoku, kyushu, system).
JEPX_AREA_RE = re.compile(r"^[a-z]{2,16}$")
#: A JMA area code (the fleet file's ``area_code``).
AREA_CODE_RE = re.compile(r"^\d{6,7}$")

#: Largest payload we accept [bytes]: a week of 15-minute slots is ~50 kB.
MAX_PAYLOAD_BYTES = 256 * 1024


class MarketMessageError(ValueError):
    """A prices or weather message that cannot be used; the text names the topic and the field."""


def prices_topic(jepx_area: str) -> str:
    """Topic of the day-ahead prices of ``jepx_area``."""
    if not JEPX_AREA_RE.match(jepx_area or ""):
        raise ValueError(f"JEPX area {jepx_area!r} is not valid (lower-case letters, e.g. 'chugoku')")
    return f"{PRICES_BASE}/{jepx_area}"


def weather_topic(area_code: str) -> str:
    """Topic of the PV weather factors of the JMA area ``area_code``."""
    if not AREA_CODE_RE.match(area_code or ""):
        raise ValueError(f"area code {area_code!r} is not valid (6 or 7 digits)")
    return f"{WEATHER_BASE}/{area_code}"


def _aware(t: datetime) -> datetime:
    if t.tzinfo is None:
        raise ValueError("time must carry a timezone")
    return t.astimezone(timezone.utc)


AwareTime = Annotated[datetime, AfterValidator(_aware)]


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class PriceSlot(_Message):
    """One slot: its start and the spot price [JPY/kWh]."""

    start: AwareTime
    spot_jpy_per_kwh: float = Field(ge=-1000, le=10_000)


class PricesMessage(_Message):
    """Day-ahead spot prices of one JEPX area, slots in time order without gaps or repeats, the first
    on a slot boundary (multiples of ``slot_minutes`` from midnight UTC, hence JST)."""

    area: str = Field(pattern=JEPX_AREA_RE.pattern)
    source: str = Field(default="", max_length=200)
    published_at: AwareTime
    slot_minutes: int = Field(default=30, ge=5, le=60)
    slots: list[PriceSlot] = Field(min_length=1, max_length=7 * 96)

    @model_validator(mode="after")
    def _contiguous(self) -> "PricesMessage":
        step = self.slot_minutes * 60
        if int(self.slots[0].start.timestamp()) % step or self.slots[0].start.microsecond:
            raise ValueError(f"slots[0].start: not on a {self.slot_minutes}-minute slot boundary")
        for i in range(1, len(self.slots)):
            gap = (self.slots[i].start - self.slots[i - 1].start).total_seconds()
            if gap != step:
                raise ValueError(f"slots[{i}].start: {gap:.0f} s after the previous slot, expected {step} s")
        return self


class WeatherDay(_Message):
    """The PV weather factor [0..1] (1 = clear sky) of one local day."""

    date: date
    factor: float = Field(ge=0.0, le=1.0)


class WeatherMessage(_Message):
    """PV weather factors of one JMA area, one per local (JST) day, days in increasing order."""

    area_code: str = Field(pattern=AREA_CODE_RE.pattern)
    source: str = Field(default="", max_length=200)
    published_at: AwareTime
    days: list[WeatherDay] = Field(min_length=1, max_length=14)

    @model_validator(mode="after")
    def _ordered(self) -> "WeatherMessage":
        for i in range(1, len(self.days)):
            if self.days[i].date <= self.days[i - 1].date:
                raise ValueError(f"days[{i}].date: must be later than days[{i - 1}].date")
        return self


def _parse(model: type[_Message], topic: str, payload: bytes | str) -> _Message:
    raw = payload.encode("utf-8") if isinstance(payload, str) else payload
    if len(raw) > MAX_PAYLOAD_BYTES:
        raise MarketMessageError(f"{topic}: payload of {len(raw)} bytes is larger than {MAX_PAYLOAD_BYTES}")
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise MarketMessageError(f"{topic}: not JSON: {str(exc)[:120]}") from None
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "(message)"
        raise MarketMessageError(f"{topic}: {where}: {first.get('msg', 'invalid')}") from None


def parse_prices(topic: str, payload: bytes | str) -> PricesMessage:
    """Validate a prices message; MarketMessageError naming the topic and the field."""
    msg = _parse(PricesMessage, topic, payload)
    assert isinstance(msg, PricesMessage)
    if topic != prices_topic(msg.area):
        raise MarketMessageError(f"{topic}: area {msg.area!r} does not match the topic")
    return msg


def parse_weather(topic: str, payload: bytes | str) -> WeatherMessage:
    """Validate a weather message; MarketMessageError naming the topic and the field."""
    msg = _parse(WeatherMessage, topic, payload)
    assert isinstance(msg, WeatherMessage)
    if topic != weather_topic(msg.area_code):
        raise MarketMessageError(f"{topic}: area_code {msg.area_code!r} does not match the topic")
    return msg


def to_payload(msg: _Message) -> bytes:
    """The JSON bytes of a message (times in ISO 8601 UTC)."""
    return msg.model_dump_json().encode("utf-8")
