"""The central service's wiring: fleet state, commands with audit, acks, alarms, history, JMA warnings,
day-ahead prices and weather for the gateways.

:class:`CentralService` holds everything the HTTP API needs and runs the
background tasks (ack timeouts, JMA polling, the market publisher).  It talks to the sites through
a :class:`CommandLink` (``telemetry.central_mqtt.CentralMqtt`` in
production) and learns their state from a ``FleetStateStore`` the link
feeds.  Every mode switch, dispatch and received ack is written to the
audit log with who, when, why and what.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Callable, Iterable, Protocol

from ems.central.alarmbook import AlarmBook, AlarmRecord
from ems.central.dispatch import DispatchPreview, preview
from ems.central.history import HistoryBackend, LocalHistory, mode_of
from ems.central.outlook import reserve_outlook
from ems.central.operations import Operation, OperationLog, SiteCommand
from ems.config import FleetConfig, SiteConfig
from ems.central.jma import JMA_ACTOR
from telemetry.commands import new_command
from telemetry.fleet_state import FleetStateStore, SiteView
from telemetry.mqtt_client import to_json
from telemetry.mqtt_topics import SiteTopics

if TYPE_CHECKING:
    from ems.central.market import MarketPublisher
    from ems.central.notify import Notifier

log = logging.getLogger(__name__)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class CommandLink(Protocol):
    """What the service needs from the MQTT side (``CentralMqtt`` has it)."""

    @property
    def connected(self) -> bool: ...

    def publish_raw(self, topic: str, payload: bytes | str, qos: int = 1) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class ScopeError(ValueError):
    """A mode-switch scope that names nothing valid; ``field`` is the request field."""

    def __init__(self, field_name: str, message: str):
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


@dataclass
class Suggestion:
    """A JMA suggestion shown to staff: ``kind`` "return" (warnings lifted, the hall may return to VPP) or
    "disaster" (a trigger set to suggest, or a 津波注意報: the hall may need disaster mode). Never acted on
    automatically."""

    id: int
    site: str
    reason: str
    created_at: datetime
    dismissed_by: str | None = None
    kind: str = "return"

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "site": self.site, "reason": self.reason, "created_at": self.created_at.isoformat(),
                "dismissed_by": self.dismissed_by, "kind": self.kind}


@dataclass
class JmaStatus:
    """What the JMA poller did last: times (UTC), reports read, the last problem."""

    enabled: bool = False
    source: str | None = None
    last_poll_at: datetime | None = None
    reports_seen: int = 0
    switches: int = 0
    last_error: str | None = None

    def to_dict(self, trigger: Any = None) -> dict[str, Any]:
        """With ``trigger`` (ems.central.jma.trigger.WarningTrigger): the last telegram of each kind and what
        it did, and the typhoon arrival forecast per hall."""
        return {"enabled": self.enabled, "source": self.source,
                "last_poll_at": self.last_poll_at.isoformat() if self.last_poll_at else None,
                "reports_seen": self.reports_seen, "switches": self.switches, "last_error": self.last_error,
                "last_reports": trigger.last_reports() if trigger is not None else {},
                "typhoon_arrivals": trigger.typhoon_arrivals() if trigger is not None else {}}


@dataclass
class Security:
    """The security pieces the API uses (from ems.central: users, sessions, audit, login limiter)."""

    users: Any
    sessions: Any
    audit: Any
    limiter: Any
    secure_cookies: bool = False


@dataclass
class JmaParts:
    """The JMA feed reader and trigger (ems.central.jma) and the poll period [s]."""

    reader: Any
    trigger: Any
    poll_s: float = 60.0
    source: str | None = None


#: Longest text taken from a site's ``inputs`` field (a gateway must not fill the dashboard).
MAX_INPUT_CHARS = 300


def inputs_of(state: dict[str, Any]) -> dict[str, str | None]:
    """The ``inputs`` a site's state message reports (which prices and weather its plan used, when it last
    heard from the central service), text only; missing or malformed values are None."""
    raw = state.get("inputs") if isinstance(state, dict) else None
    raw = raw if isinstance(raw, dict) else {}
    out: dict[str, str | None] = {}
    for key in ("price_source", "weather_source", "last_central_at"):
        value = raw.get(key)
        out[key] = value[:MAX_INPUT_CHARS] if isinstance(value, str) and value else None
    at = out["last_central_at"]
    if at is not None:
        try:
            t = datetime.fromisoformat(at.replace("Z", "+00:00"))
            out["last_central_at"] = t.astimezone(timezone.utc).isoformat() if t.tzinfo else None
        except ValueError:
            out["last_central_at"] = None
    return out


class CentralService:
    """See the module docstring.  ``clock`` returns UTC now (tests move it)."""

    def __init__(self, fleet: FleetConfig, store: FleetStateStore, link: CommandLink, security: Security,
                 alarms: AlarmBook, history: HistoryBackend, *, jma: JmaParts | None = None,
                 command_ttl: timedelta = timedelta(minutes=5), ack_timeout: timedelta = timedelta(seconds=30),
                 stale_after: timedelta = timedelta(seconds=60), public_page: bool = True,
                 clock: Callable[[], datetime] = _utcnow, market: "MarketPublisher | None" = None,
                 notifier: "Notifier | None" = None, operations: OperationLog | None = None):
        self.fleet = fleet
        self.sites: dict[str, SiteConfig] = {s.id: s for s in fleet.sites}
        self.store = store
        self.link = link
        self.security = security
        self.audit = security.audit
        self.alarms = alarms
        self.history = history
        self.jma = jma
        self.jma_status = JmaStatus(enabled=jma is not None, source=jma.source if jma else None)
        #: Prices and weather for the gateways (ems.central.market.MarketPublisher), or None.
        self.market = market
        #: Critical alarms and offline halls to operators by webhook / e-mail (ems.central.notify), or None.
        self.notifier = notifier
        self.command_ttl = command_ttl
        self.stale_after = stale_after
        self.public_page = public_page
        self.clock = clock
        #: Operations and their commands; given a stored log (build_service), those of the previous run too.
        self.operations = operations if operations is not None else OperationLog(ack_timeout)
        self._send_lock = threading.Lock()  # logging and publishing an operation's commands, or a resend
        self.suggestions: list[Suggestion] = []
        self._tasks: list[asyncio.Task] = []
        store.add_listener(self._on_view)

    # -- lifecycle -------------------------------------------------------------------------
    async def start(self) -> None:
        """Connect the link and start the background tasks (call inside the server's event loop)."""
        self.link.start()
        self._tasks.append(asyncio.create_task(self._expire_loop(), name="ack-timeouts"))
        unanswered = self.operations.undelivered(self.clock())
        if unanswered:
            self._tasks.append(asyncio.create_task(self._send_again(unanswered), name="resend-unanswered"))
        if self.jma is not None:
            self._tasks.append(asyncio.create_task(self._jma_loop(), name="jma-poller"))
        if self.market is not None:
            self._tasks.append(asyncio.create_task(self.market.run(), name="market-publisher"))
        if self.notifier is not None:
            self._tasks.append(asyncio.create_task(self.notifier.run(self), name="notifications"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass
        self._tasks.clear()
        await asyncio.to_thread(self.link.stop)

    # -- what the sites tell us (runs in the MQTT thread) ---------------------------------------
    def _on_view(self, view: SiteView, leaf: str) -> None:
        now = self.clock()
        if leaf == "state" and isinstance(view.state, dict):
            if isinstance(self.history, LocalHistory):
                self.history.record_state(view.site, view.state, now)
            alarms = view.state.get("alarms")
            if isinstance(alarms, list):
                self.alarms.sync_active(view.site, alarms, now)
        elif leaf == "plan" and isinstance(view.plan, dict) and isinstance(self.history, LocalHistory):
            self.history.record_plan(view.site, view.plan)
        elif leaf == "alarm" and isinstance(view.last_alarm, dict):
            self.alarms.event(view.site, view.last_alarm, now)
        elif leaf == "ack" and isinstance(view.last_ack, dict):
            self._on_ack(view.site, view.last_ack, now)

    def _on_ack(self, site: str, ack: dict[str, Any], now: datetime) -> None:
        matched = self.operations.on_ack(ack, now)
        details = {k: ack.get(k) for k in ("command_id", "kind", "status", "code", "error")}
        if matched is not None:
            details["operation"] = matched[0].id
        self.audit.append(f"site:{site}", "ack", site, reason=str(ack.get("error") or ""), details=details)

    async def _expire_loop(self) -> None:
        """Every second: time out unanswered commands; every ``SESSION_PURGE_S`` [s]: delete expired
        and idle login sessions (a lookup deletes only the session it finds expired, so sessions never
        used again would stay in the database for ever)."""
        loop = asyncio.get_running_loop()
        next_purge = loop.time()
        while True:
            await asyncio.sleep(1.0)
            try:
                self.expire_commands()
                if loop.time() >= next_purge:
                    next_purge = loop.time() + self.SESSION_PURGE_S
                    await asyncio.to_thread(self.purge_sessions)
            except Exception:  # keep expiring; a database hiccup must not stop ack timeouts for good
                log.exception("periodic expiry failed")

    #: How often expired login sessions are deleted [s].
    SESSION_PURGE_S = 300.0

    #: Wall seconds between the link coming up and sending again: the acks the broker kept for this
    #: client's session arrive first, so commands that were answered are not sent twice.
    RESEND_SETTLE_S = 0.5

    async def _send_again(self, unanswered: list[tuple[Operation, SiteCommand]]) -> None:
        """Publish again, once the link is up, the commands the previous run sent but never heard back about.

        The previous process may have held them in its MQTT client's memory while the broker was away; the
        site refuses a second copy of a command it already took (replay protection), and that refusal is
        not counted as the outcome (:meth:`OperationLog.on_ack`).  A command that a later one replaces at
        its hall is not sent: arriving after the later one it would undo it."""
        while not self.link.connected:
            await asyncio.sleep(0.1)
        await asyncio.sleep(self.RESEND_SETTLE_S)
        sent = 0
        for op, cmd in unanswered:
            try:
                if self._send_one_again(op, cmd):
                    sent += 1
            except Exception:  # one command that cannot be sent must not keep the others back
                log.exception("%s: command %s could not be sent again", cmd.site, cmd.command_id)
        log.info("sent %d of %d unanswered command(s) of the previous run again", sent, len(unanswered))

    def _send_one_again(self, op: Operation, cmd: SiteCommand) -> bool:
        with self._send_lock:
            if not cmd.unanswered(self.clock()):
                return False  # answered (the ack was waiting in the broker) or expired meanwhile
            newer = self.operations.superseded_by(cmd)
            if newer is not None:
                log.info("%s: command %s not sent again: %s replaces it", cmd.site, cmd.command_id, newer.command_id)
                return False
            self.operations.mark_resent(op, cmd)
            self._publish(cmd)
        self.audit.append("central", "command_resent", cmd.site, reason="unanswered before a restart",
                          details={"command_id": cmd.command_id, "operation": op.id, "kind": cmd.kind})
        return True

    def expire_commands(self) -> None:
        """Mark commands without an ack in time as timed out, and audit each."""
        for op, cmd in self.operations.expire(self.clock()):
            self.audit.append("central", "ack_timeout", cmd.site, reason="no ack in time",
                              details={"command_id": cmd.command_id, "operation": op.id})

    def purge_sessions(self) -> int:
        """Delete expired and idle login sessions; returns how many."""
        n = self.security.sessions.purge_expired()
        if n:
            log.info("deleted %d expired login session(s)", n)
        return n

    # -- prices and weather for the gateways ---------------------------------------------------
    def set_weather(self, area_codes: Iterable[str], factor: float, source: str) -> list[str]:
        """Publish the PV weather factor [0..1] (1 = clear sky) of ``area_codes`` from today (JST) on
        (drills change the simulated weather this way); returns the topics published.  ValueError naming
        the argument for bad input; RuntimeError when the service has no market publisher."""
        if self.market is None:
            raise RuntimeError("the central service has no market publisher (see market: in central.yaml)")
        return self.market.set_weather(list(area_codes), factor, source)

    def market_status(self) -> dict[str, Any] | None:
        """What the market publisher published last, or None without one."""
        return self.market.status() if self.market is not None else None

    # -- fleet views ----------------------------------------------------------------------------
    def _view(self, site_id: str) -> SiteView:
        try:
            return self.store.get(site_id)
        except KeyError:
            return SiteView(site_id)

    def hall_row(self, site: SiteConfig, view: SiteView | None = None, alarm_counts: dict[str, int] | None = None,
                 now: datetime | None = None, typhoon_at: dict[str, datetime] | None = None) -> dict[str, Any]:
        """One hall for the overview: config names, mode and reason, live values [W, %, h], freshness.
        ``alarm_counts`` and ``typhoon_at`` (:meth:`_typhoon_arrivals`) are taken once for a whole fleet."""
        view = view or self._view(site.id)
        now = now or self.clock()
        state = view.state if isinstance(view.state, dict) else {}
        mode, reason = mode_of(state) if state else (None, "")
        mode_info = state.get("mode") if isinstance(state.get("mode"), dict) else {}
        hours = state.get("hours_left")
        h_disaster = site.reserve.h_disaster
        age = (now - view.state_at).total_seconds() if view.state_at else None
        ack = view.last_ack or {}
        counts = alarm_counts if alarm_counts is not None else self.alarms.active_counts()
        row = {
            "site": site.id, "name": site.name, "area_code": site.area_code, "area_name": site.area_name,
            "online": view.online, "stale": age is None or age > self.stale_after.total_seconds(),
            "state_age_s": round(age, 1) if age is not None else None,
            "mode": mode, "mode_reason": reason, "mode_since": mode_info.get("since"),
            "mode_by": (mode_info.get("requested") or {}).get("issued_by") if isinstance(mode_info.get("requested"), dict) else None,
            "soc_pct": state.get("soc_pct"), "battery_w": state.get("battery_w"), "pv_w": state.get("pv_w"),
            "grid_w": state.get("grid_w"), "grid_ok": state.get("grid_ok"), "hours_left": hours,
            "stored_wh": state.get("stored_wh"), "reserve_floor_wh": state.get("reserve_floor_wh"),
            "capacity_wh": site.battery.capacity_wh, "critical_w": site.loads.critical_w,
            "h_disaster": h_disaster,
            "reserve_progress": (min(1.0, max(0.0, hours / h_disaster)) if isinstance(hours, (int, float))
                                 and h_disaster > 0 else None),
            "last_ack": ({"command_id": ack.get("command_id"), "kind": ack.get("kind"), "status": ack.get("status"),
                          "error": ack.get("error"), "at": view.last_ack_at.isoformat() if view.last_ack_at else None}
                         if ack else None),
            "open_alarms": counts.get(site.id, 0),
            "inputs": inputs_of(state),
            "lat": site.lat, "lon": site.lon,
        }
        arrivals = typhoon_at if typhoon_at is not None else self._typhoon_arrivals()
        row["outlook"] = reserve_outlook(row, site.battery.charge_efficiency, now, typhoon_at=arrivals.get(site.id))
        return row

    def _typhoon_arrivals(self) -> dict[str, datetime]:
        """When the JMA forecasts a typhoon's storm-force wind at each hall it reaches (UTC)."""
        return self.jma.trigger.arrival_times() if self.jma is not None else {}

    def jma_status_dict(self) -> dict[str, Any]:
        """The JMA poller's status with what its trigger did last and the typhoon arrivals."""
        return self.jma_status.to_dict(self.jma.trigger if self.jma is not None else None)

    def fleet_rows(self, area: str | None = None) -> list[dict[str, Any]]:
        """Every hall (optionally of one area code), in fleet file order."""
        now = self.clock()
        snap = self.store.snapshot()
        counts = self.alarms.active_counts()
        arrivals = self._typhoon_arrivals()
        return [self.hall_row(s, snap.get(s.id) or SiteView(s.id), counts, now, arrivals)
                for s in self.fleet.sites if area is None or s.area_code == area]

    def areas(self) -> list[dict[str, Any]]:
        """Area codes with their names and hall counts."""
        out: dict[str, dict[str, Any]] = {}
        for s in self.fleet.sites:
            a = out.setdefault(s.area_code, {"area_code": s.area_code, "area_name": s.area_name, "halls": 0})
            a["halls"] += 1
        return list(out.values())

    def site_detail(self, site_id: str) -> dict[str, Any]:
        """The overview row plus the full last state, plan, alarms and devices; KeyError if unknown."""
        site = self.sites[site_id]
        view = self._view(site_id)
        row = self.hall_row(site, view)
        row.update({"state": view.state, "plan": view.plan, "last_alarm": view.last_alarm,
                    "alarms": [a.to_dict() for a in self.alarms.list("open", site=site_id, limit=50)],
                    "battery": site.battery.model_dump(), "pv_capacity_w": site.pv.capacity_w,
                    "grid": site.grid.model_dump(), "reserve": site.reserve.model_dump()})
        return row

    def public_shelters(self) -> list[dict[str, Any]]:
        """What residents may see: shelter name, area, whether it has power, hours left [h].  Nothing else."""
        out = []
        for row in self.fleet_rows():
            hours = row["hours_left"]
            if not row["online"] or row["stale"] or row["mode"] is None:
                power = "unknown"
            elif row["grid_ok"]:
                power = "grid"
            elif isinstance(hours, (int, float)) and hours > 0:
                power = "battery"
            else:
                power = "none"
            out.append({"name": row["name"], "area_name": row["area_name"], "power": power,
                        "hours_left": round(hours, 1) if isinstance(hours, (int, float)) and power != "unknown"
                        else None})
        return out

    # -- commands -------------------------------------------------------------------------------
    def resolve_scope(self, scope: str, area_code: str | None = None, sites: Iterable[str] | None = None) -> list[str]:
        """Site ids for a scope: ``all``, ``area`` (area_code) or ``sites`` (ids); ScopeError naming the field."""
        if scope == "all":
            return list(self.sites)
        if scope == "area":
            if not area_code:
                raise ScopeError("area_code", "required when scope is area")
            found = [s.id for s in self.fleet.sites if s.area_code == area_code]
            if not found:
                raise ScopeError("area_code", f"no hall in area {area_code!r}")
            return found
        if scope == "sites":
            chosen = list(dict.fromkeys(sites or []))
            if not chosen:
                raise ScopeError("sites", "choose at least one hall")
            unknown = [s for s in chosen if s not in self.sites]
            if unknown:
                raise ScopeError("sites", f"unknown hall(s): {', '.join(unknown)}")
            return chosen
        raise ScopeError("scope", "must be all, area or sites")

    def _command(self, site: str, kind: str, payload: dict[str, Any], actor: str, now: datetime) -> SiteCommand:
        """A new command to ``site`` (envelope built and checked, not sent)."""
        env = new_command(site, kind, payload, issued_by=actor if actor == JMA_ACTOR else f"user:{actor}",
                          ttl=self.command_ttl, now=now)
        text = to_json(env)
        return SiteCommand(site, env["id"], kind, env["payload"], now, envelope=text.decode(),
                           expires_at=datetime.fromisoformat(env["expires_at"]))

    def _publish(self, cmd: SiteCommand) -> None:
        self.link.publish_raw(SiteTopics(cmd.site).command(cmd.kind), cmd.envelope)

    def _send_operation(self, op: Operation) -> None:
        """Log ``op``, then publish its commands.  Logged first so that an ack, however fast, finds its
        command; under the send lock so that a command sent again after a restart is either published
        before this one or sees it and stands back (see :meth:`_send_again`)."""
        with self._send_lock:
            self.operations.add(op)
            for cmd in op.commands:
                self._publish(cmd)

    def switch_mode(self, site_ids: list[str], mode: str, reason: str, actor: str, kind: str,
                    scope: dict[str, Any] | None = None) -> Operation:
        """Send a mode command to every hall of ``site_ids`` and audit each; returns the operation
        (kind: disaster | return_to_vpp | jma_warning)."""
        now = self.clock()
        op = Operation(OperationLog.new_id(now), kind, actor, reason, now, scope or {"sites": site_ids})
        op.commands = [self._command(site, "mode", {"mode": mode, "reason": reason}, actor, now) for site in site_ids]
        self._send_operation(op)
        for cmd in op.commands:
            self.audit.append(actor, "mode_switch", cmd.site, reason=reason,
                              details={"mode": mode, "command_id": cmd.command_id, "operation": op.id,
                                       "scope": op.scope})
        return op

    def preview_dispatch(self, power_w: float, start: datetime, end: datetime) -> DispatchPreview:
        """The allocation of a fleet request of ``power_w`` [W] over [start, end) (see ems.central.dispatch)."""
        slot = timedelta(minutes=self.fleet.fleet.slot_minutes)
        return preview(self.fleet.sites, self.store.snapshot(), power_w, start, end, slot, self.clock())

    def dispatch(self, power_w: float, start: datetime, end: datetime, reason: str, actor: str,
                 preview: DispatchPreview | None = None) -> Operation:
        """Allocate and send dispatch leases to the halls; audited per command.

        ``preview`` is an allocation the caller already computed for this same request (the API checks it
        before sending): passing it means the commands sent are exactly the ones that were checked, and the
        LP is solved once.  Without it the request is allocated here."""
        pre = preview if preview is not None else self.preview_dispatch(power_w, start, end)
        now = self.clock()
        op = Operation(OperationLog.new_id(now), "dispatch", actor, reason, now,
                       {"power_w": power_w, "start": start.isoformat(), "end": end.isoformat()},
                       details={"preview": pre.to_dict()})
        for site, leases in pre.leases().items():
            for lease_start, lease_end, target in leases:
                payload = {"power_w": target, "start": lease_start.isoformat(), "end": lease_end.isoformat(),
                           "reason": reason}
                op.commands.append(self._command(site, "dispatch", payload, actor, now))
        self._send_operation(op)
        for cmd in op.commands:
            self.audit.append(actor, "dispatch", cmd.site, reason=reason,
                              details={**cmd.payload, "command_id": cmd.command_id, "operation": op.id})
        if not op.commands:
            self.audit.append(actor, "dispatch", "fleet", reason=reason,
                              details={"operation": op.id, "sent": 0, "status": pre.status})
        return op

    def ack_alarm(self, alarm_id: str, actor: str, note: str) -> AlarmRecord:
        """Acknowledge an alarm (KeyError unknown, AlarmAlreadyAcked) and audit it."""
        rec = self.alarms.ack(alarm_id, actor, note, self.clock())
        self.audit.append(actor, "alarm_ack", alarm_id, reason=note, details={"site": rec.site, "code": rec.code})
        return rec

    # -- JMA warnings ---------------------------------------------------------------------------
    async def _jma_loop(self) -> None:
        assert self.jma is not None
        while True:
            try:
                await self.poll_jma_once()
            except Exception as exc:  # keep polling; the status shows the problem
                log.exception("JMA poll failed")
                self.jma_status.last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.sleep(self.jma.poll_s)

    async def poll_jma_once(self) -> int:
        """Read new JMA reports and act on them; returns the number of halls switched.

        Each report is handled on its own (ems.central.jma.service.poll_once): one that fails is logged with
        its entry id and shown in the status, and the reports after it are still handled."""
        assert self.jma is not None
        from ems.central.jma.service import poll_once

        switched = [0]
        failed: list[str] = []

        def handle(report: Any, actions: list[Any]) -> None:
            self._act_on_jma_report(report, actions, switched)

        def on_error(report: Any, exc: Exception) -> None:
            failed.append(f"handling {getattr(report, 'entry_id', '?')}: {type(exc).__name__}: {exc}")

        count = await poll_once(self.jma.reader, self.jma.trigger, handle, on_error)
        self.jma_status.last_poll_at = self.clock()
        self.jma_status.reports_seen += count
        self.jma_status.switches += switched[0]
        problems = [p for p in [getattr(self.jma.reader, "last_error", None), *failed] if p]
        self.jma_status.last_error = "; ".join(problems) or None
        return switched[0]

    def _act_on_jma_report(self, report: Any, actions: list[Any], switched: list[int]) -> None:
        """Switch the warned halls (grouped by reason) and suggest returns; ``switched[0]`` counts halls
        as they are switched, so a failure half way still counts the ones sent."""
        from ems.central.jma.trigger import SuggestDisaster, SuggestReturn, SwitchToDisaster

        entry = getattr(report, "entry_id", "")
        to_switch: dict[str, str] = {}
        triggers: dict[str, str] = {}
        for action in actions:
            if isinstance(action, SwitchToDisaster):
                to_switch.setdefault(action.site_id, action.reason)
                triggers.setdefault(action.site_id, getattr(action, "trigger", "warning"))
            elif isinstance(action, SuggestReturn):
                self._suggest(action.site_id, action.reason, entry)
            elif isinstance(action, SuggestDisaster):
                self._suggest(action.site_id, action.reason, entry, kind="disaster")
        for site, reason in to_switch.items():
            self.audit.append(JMA_ACTOR, "jma_warning", site, reason=reason,
                              details={"entry_id": entry, "title": getattr(report, "title", ""),
                                       "trigger": triggers[site],
                                       "control_status": getattr(report, "control_status", "")})
        by_reason: dict[str, list[str]] = {}
        for site, reason in to_switch.items():
            by_reason.setdefault(reason, []).append(site)
        for reason, sites in by_reason.items():
            self.switch_mode(sites, "disaster_reserve", reason, JMA_ACTOR, "jma_warning",
                             scope={"sites": sites, "jma_entry": entry})
            switched[0] += len(sites)

    def _suggest(self, site: str, reason: str, entry: str, kind: str = "return") -> None:
        now = self.clock()
        self.suggestions = [s for s in self.suggestions if not (s.site == site and s.dismissed_by is None)]
        sug = Suggestion(len(self.suggestions) + 1 + max((s.id for s in self.suggestions), default=0), site, reason,
                         now, kind=kind)
        self.suggestions.append(sug)
        self.audit.append(JMA_ACTOR, "jma_cancelled" if kind == "return" else "jma_suggest_disaster", site,
                          reason=reason, details={"entry_id": entry, "suggestion": sug.id})

    def open_suggestions(self) -> list[Suggestion]:
        return [s for s in self.suggestions if s.dismissed_by is None]

    def dismiss_suggestion(self, suggestion_id: int, actor: str) -> Suggestion:
        """Mark a suggestion as seen (KeyError if unknown or already dismissed)."""
        for s in self.suggestions:
            if s.id == suggestion_id and s.dismissed_by is None:
                s.dismissed_by = actor
                self.audit.append(actor, "jma_suggestion_dismissed", s.site, reason=s.reason,
                                  details={"suggestion": s.id})
                return s
        raise KeyError(suggestion_id)
