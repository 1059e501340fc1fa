"""The largest MQTT messages of the fleet, built by the code that really publishes them.

The broker's ``max_packet_size`` must fit every message with margin: a
gateway that sends a bigger packet is disconnected by Mosquitto, and the
retained plan would never arrive.  Rather than guess, the messages are
built here as the gateway and the central service build them:

* the retained **plan** of a gateway with the longest horizon the gateway
  file allows (``planner.horizon_slots``' upper bound), published by the
  real :class:`ems.gateway.link.EdgeLink` from a real
  :class:`optimizer.plan.Plan` (``summary()`` + ``rows()``);
* the retained **state** of a gateway (the same ``EdgeLink`` call), with
  every alarm code active, a clip at every guard stage and eight devices
  reporting errors;
* the **prices** message of :mod:`telemetry.market` with the most slots it
  accepts (7 days of 15-minute slots).

Numbers are given their longest JSON form (17 significant digits) and texts
the length the telemetry points keep, so real messages are smaller.  Sizes
are whole MQTT PUBLISH packets (fixed header, topic, packet id, MQTT 5
property length, payload), which is what ``max_packet_size`` limits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import numpy as np
from annotated_types import Le, MaxLen

#: Site id of the greatest allowed length (32 characters).
_SITE = "hall-" + "x" * 27
#: Text lengths [characters]: what telemetry points keep of reasons and messages.
_REASON_CHARS = 300
_MESSAGE_CHARS = 500
#: The multiple of the largest message the broker accepts.
MARGIN = 4
#: Granularity of the limit [bytes].
ROUND_TO = 64 * 1024


@dataclass(frozen=True)
class MessageSize:
    """One message: what it is, its topic and the size of its PUBLISH packet [bytes]."""

    name: str
    topic: str
    packet_bytes: int
    note: str


def publish_packet_bytes(topic: str, payload: bytes) -> int:
    """Size of an MQTT 5 QoS 1 PUBLISH packet [bytes] (v3.1.1 is one byte smaller)."""
    remaining = 2 + len(topic.encode("utf-8")) + 2 + 1 + len(payload)  # topic, packet id, properties, payload
    length_bytes = 1 if remaining < 128 else 2 if remaining < 16384 else 3 if remaining < 2_097_152 else 4
    return 1 + length_bytes + remaining


def _long(values: np.ndarray) -> np.ndarray:
    """``values`` nudged so each float needs all 17 significant digits in JSON."""
    return values + 1.0 / 7.0


def _text(prefix: str, chars: int) -> str:
    return (prefix + " " + "測定値" * chars)[:chars]


class _Capture:
    """Stands in for telemetry.edge_mqtt.EdgeMqtt: keeps what EdgeLink publishes."""

    def __init__(self) -> None:
        self.state: Any = None
        self.plan: Any = None
        self.alarms: list[Any] = []

    def on_command(self, handler: Any) -> None:
        pass

    def on_audit(self, handler: Any) -> None:
        pass

    def publish_state(self, state: Any) -> None:
        self.state = state

    def publish_plan(self, plan: Any) -> None:
        self.plan = plan

    def publish_alarm(self, alarm: Any) -> None:
        self.alarms.append(alarm)


def _max_horizon_slots() -> int:
    from ems.gateway.config import PlannerSection

    return next(m.le for m in PlannerSection.model_fields["horizon_slots"].metadata if isinstance(m, Le))


def _max_price_slots() -> int:
    from telemetry.market import PricesMessage

    return next(m.max_length for m in PricesMessage.model_fields["slots"].metadata if isinstance(m, MaxLen))


def _plan(n: int, now: datetime) -> Any:
    from optimizer.plan import Plan, PlanStatus

    slot = timedelta(minutes=15)
    k = np.arange(n, dtype=float)
    big = _long(10_000.0 + 17.0 * k)  # 5 integer digits: the largest powers and energies of a hall
    return Plan(site_id=_SITE, mode="disaster_reserve", times=tuple(now + i * slot for i in range(n)), slot=slot,
                charge_w=big, discharge_w=big, soc_pct=_long(k % 90), soc_wh=big, grid_import_w=big,
                grid_export_w=big, pv_curtail_w=big, shed_w=big, shed_critical_w=big, reserve_wh=big,
                status=PlanStatus.OPTIMAL_MILP, created_at=now, expires_at=now + n * slot,
                objective_jpy=-12345.678901234567, energy_cost_jpy=-12345.678901234567, build_ms=123.45678901234567,
                solve_ms=1234.5678901234567, reserve_shortfall_wh=12345.678901234567,
                commitment_shortfall_wh=12345.678901234567, hours_of_power=123.45678901234567,
                message=_text("solver", _MESSAGE_CHARS))


def _status(now: datetime) -> Any:
    from ems.gateway import alarms as al
    from ems.gateway.daemon import DaemonStatus
    from ems.gateway.guard import Clip, PowerRange, Stage
    from ems.gateway.modes import Mode, ModeRequest, ModeState
    from ems.gateway.snapshot import CycleStats

    codes = sorted(v for k, v in vars(al).items() if k.isupper() and isinstance(v, str)) + ["telemetry_dropped"]
    alarms = tuple(al.Alarm(id="0123456789abcdef0123456789abcdef", site=_SITE, severity=al.Severity.CRITICAL,
                            code=c, message=_text(c, _MESSAGE_CHARS), raised_at=now) for c in codes)
    r = PowerRange(-12345.678901234567, 12345.678901234567)
    clips = tuple(Clip(stage=s, reason=_text(s.value, _REASON_CHARS), before=r, after=r, unmet=True) for s in Stage)
    health = {f"device-{i:02d}-{'x' * 20}": SimpleNamespace(
        ok=False, last_ok_at=now, last_latency_ms=1234.5678901234567, consecutive_failures=123456,
        total_failures=12345678, total_polls=123456789, last_error=_text("modbus", _REASON_CHARS)) for i in range(8)}
    request = ModeRequest(mode=Mode.DISASTER_RESERVE, reason=_text("jma", _REASON_CHARS), issued_by="x" * 64,
                          issued_at=now, command_id="0123456789abcdef0123456789abcdef")
    mode = ModeState(effective=Mode.DISASTER_RESERVE, requested=request, reason=_text("mode", _REASON_CHARS),
                     since=now, grid_lost=True)
    f = 12345.678901234567
    return DaemonStatus(site_id=_SITE, time=now, mode=mode, soc_pct=12.345678901234567, battery_w=f, grid_w=f,
                        pv_w=f, grid_ok=False, requested_w=f, setpoint_w=f, allowed_min_w=-f, allowed_max_w=f,
                        plan_reason=_text("plan", _REASON_CHARS), written=True, stored_wh=f, reserve_floor_wh=f,
                        hours_left=f, clips=clips, alarms=alarms,
                        stats=CycleStats(last_cycle_ms=f, cycle_count=123456789, overruns=123456),
                        device_health=health)


def gateway_messages(now: datetime | None = None) -> tuple[bytes, bytes]:
    """(plan, state) payloads as the gateway's EdgeLink publishes them after a cycle with a new plan."""
    from ems.gateway.link import EdgeLink
    from telemetry.mqtt_client import to_json

    now = now or datetime(2026, 12, 7, tzinfo=timezone.utc)
    plan = _plan(_max_horizon_slots(), now)
    source = SimpleNamespace(plan=plan, plan_info={"reason": _text("replan", _REASON_CHARS),
                                                   "price_source": "central:" + "x" * 40,
                                                   "weather_source": "central:" + "x" * 40})
    site = SimpleNamespace(id=_SITE, area_code="3120100", name="公" * 60)
    daemon = SimpleNamespace(site=site, plan_source=source, pollers={}, add_listener=lambda _: None,
                             add_alarm_source=lambda _: None)
    capture = _Capture()
    EdgeLink(daemon, mqtt=capture).on_status(_status(now))  # type: ignore[arg-type]
    if capture.plan is None or capture.state is None:
        raise RuntimeError("EdgeLink published no plan or no state: the message size check is out of date")
    return to_json(capture.plan), to_json(capture.state)


def prices_message(now: datetime | None = None) -> tuple[str, bytes]:
    """(topic, payload) of the largest prices message the gateways accept."""
    from telemetry.market import PriceSlot, PricesMessage, prices_topic, to_payload

    now = now or datetime(2026, 12, 7, tzinfo=timezone.utc)
    n = _max_price_slots()
    msg = PricesMessage(area="hokuriku", source="x" * 200, published_at=now, slot_minutes=15,
                        slots=[PriceSlot(start=now + timedelta(minutes=15 * i), spot_jpy_per_kwh=-999.1234567890123)
                               for i in range(n)])
    return prices_topic(msg.area), to_payload(msg)


def largest_messages() -> list[MessageSize]:
    """The largest messages of the fleet, largest first."""
    from telemetry.market import MAX_PAYLOAD_BYTES
    from telemetry.mqtt_topics import SiteTopics

    plan, state = gateway_messages()
    topics = SiteTopics(_SITE)
    horizon = _max_horizon_slots()
    price_topic, prices = prices_message()
    price_slots = _max_price_slots()
    out = [
        MessageSize("plan", topics.plan, publish_packet_bytes(topics.plan, plan),
                    f"retained plan of {horizon} slots (planner.horizon_slots at most {horizon})"),
        MessageSize("state", topics.state, publish_packet_bytes(topics.state, state),
                    "retained state with every alarm, a clip per guard stage and 8 failing devices"),
        MessageSize("prices", price_topic, publish_packet_bytes(price_topic, prices),
                    f"prices of {price_slots} 15-minute slots (7 days); gateways refuse payloads over "
                    f"{MAX_PAYLOAD_BYTES} bytes"),
    ]
    return sorted(out, key=lambda m: -m.packet_bytes)


def max_packet_size(messages: list[MessageSize] | None = None) -> int:
    """The broker limit [bytes]: MARGIN × the largest message, rounded up to ROUND_TO, and never below
    what a gateway accepts from the central service (telemetry.market.MAX_PAYLOAD_BYTES plus headers)."""
    from telemetry.market import MAX_PAYLOAD_BYTES

    messages = messages if messages is not None else largest_messages()
    largest = max(m.packet_bytes for m in messages)
    floor = MAX_PAYLOAD_BYTES + 1024
    return max(int(math.ceil(MARGIN * largest / ROUND_TO)) * ROUND_TO, floor)
