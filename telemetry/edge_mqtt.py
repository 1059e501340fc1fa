"""The gateway's MQTT side: publish state, telemetry, plan and alarms; take commands; ack them.

Usage in the edge daemon (inside its asyncio loop)::

    mqtt = EdgeMqtt("hall-01", MqttSettings(host=..., username="edge-hall-01", password=...),
                    state_dir=Path("var/state/hall-01"))
    mqtt.on_command(handle)          # handle(cmd: Command) -> outcome | awaitable; may raise CommandRejected
    mqtt.on_audit(record)            # record(cmd | None, ack): every ack, e.g. into the Influx outbox
    mqtt.subscribe(inputs.topics(), inputs.on_message)   # other topics, e.g. prices (paho's thread)
    mqtt.start()
    ...every cycle: mqtt.publish_state({...}); mqtt.publish_telemetry({...})
    await mqtt.aclose()

Threads: paho's network thread receives commands, validates them and
records their ids (replay protection, before the broker gets its PUBACK);
the callback then runs **in the asyncio loop** that called :meth:`start`, so
the daemon needs no locks.  Every publish method is safe from any thread
and never blocks on the network.  Handlers of other topics
(:meth:`EdgeMqtt.subscribe`) run in paho's thread: they must be quick and
thread-safe.

While the broker is away the daemon keeps running: state and plan are
remembered and published again (retained) when the connection returns;
alarms and acks (QoS 1) wait in paho's queue; telemetry is skipped (the
Influx outbox holds the durable copy).
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import threading
from collections import Counter
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Mapping

import paho.mqtt.client as mqtt

from telemetry.commands import (MAX_CLOCK_SKEW, MAX_LIFETIME, Ack, Command, CommandRefused, CommandRejected,
                                parse_command)
from telemetry.mqtt_client import MqttSettings, make_client, to_json
from telemetry.mqtt_topics import (QOS_ACK, QOS_ALARM, QOS_COMMAND, QOS_ONLINE, QOS_PLAN, QOS_STATE,
                                   QOS_TELEMETRY, SiteTopics, parse_topic)
from telemetry.replay import ReplayGuard, ReplayStoreError
from telemetry.sqlite_recovery import StoreCondition

log = logging.getLogger(__name__)

CommandHandler = Callable[[Command], Any | Awaitable[Any]]
AuditHandler = Callable[[Command | None, Ack], None]
MessageHandler = Callable[[str, bytes], None]  # (topic, payload) of a subscribed topic, in paho's thread

#: Alarm code: the command replay database was damaged at start, moved aside and replaced by a fresh one.
COMMAND_STORE_RECOVERED = "command_store_recovered"
#: Alarm code: the latest command could not be recorded in the replay database (full disk, I/O error).
COMMAND_STORE_FAILED = "command_store_failed"


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class EdgeMqtt:
    """MQTT endpoint of one site's gateway (see the module docstring).

    state_dir: folder for the replay database (``commands-<site>.sqlite``; a
    damaged one is moved aside and replaced, see :meth:`alarm_conditions`);
    handler_timeout_s [s]: an async command handler slower than this is
    acked as failed; clock: current UTC time (tests move it).
    """

    def __init__(self, site: str, settings: MqttSettings, state_dir: str | Path, *, client_id: str | None = None,
                 handler_timeout_s: float = 10.0, max_lifetime: timedelta = MAX_LIFETIME,
                 max_skew: timedelta = MAX_CLOCK_SKEW, clock: Callable[[], datetime] = _utcnow):
        self.site = site
        self.topics = SiteTopics(site)
        self.settings = settings
        self.handler_timeout_s = handler_timeout_s
        self.max_lifetime, self.max_skew = max_lifetime, max_skew
        self._clock = clock
        self.replay = ReplayGuard(Path(state_dir) / f"commands-{site}.sqlite", now=clock)
        self._recovery_alarm = self.replay.recovery is not None
        self._store_failure: str | None = None  # why the latest command could not be recorded
        self.counts: Counter[str] = Counter()  # accepted, refused, failed, ok, telemetry_skipped, connects
        self._handler: CommandHandler | None = None
        self._audit: AuditHandler | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()
        self._last_state: bytes | None = None
        self._last_plan: bytes | None = None
        self._connected = threading.Event()  # the link is up: publish directly
        self._ready = threading.Event()  # ... and the broker confirmed the command subscription
        self._last_connect_error: str | None = None
        self.subscribe_refused = False
        # Other subscriptions: (filter, qos, handler); SUBACK mids -> filters still waiting for an answer.
        self._subscriptions: list[tuple[str, int, MessageHandler]] = []
        self._pending_subacks: dict[int, list[str]] = {}
        #: Filters of :meth:`subscribe` the broker refused, as of the latest SUBACK (Mosquitto 2 grants
        #: a subscription its ACL does not allow and then delivers nothing: it stays empty there).
        self.refused_filters: set[str] = set()
        self._stopping = False
        self._client = make_client(settings, client_id or f"ems-edge-{site}")
        self._client.will_set(self.topics.online, to_json({"online": False}), qos=QOS_ONLINE, retain=True)
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message

    # -- wiring --------------------------------------------------------------------------
    def on_command(self, handler: CommandHandler) -> None:
        """Set the handler for valid commands: returns the outcome (JSON-able) or an awaitable of it;
        raises CommandRejected to refuse; any other exception is acked as failed."""
        self._handler = handler

    def on_audit(self, handler: AuditHandler) -> None:
        """Set a function called with (command or None, ack) for every ack sent, refusals included."""
        self._audit = handler

    def subscribe(self, topics: Iterable[str], handler: MessageHandler, qos: int = 1) -> None:
        """Receive ``topics`` (filters; wildcards allowed) and call ``handler(topic, payload)`` for each message.

        The handler runs in paho's network thread (keep it quick and
        thread-safe); an exception in it is logged and the message dropped.
        Subscriptions are made again after every reconnect, so retained
        messages (e.g. the central service's prices) arrive again each time.
        Safe before or after :meth:`start`.  Topics of the site's own command
        tree never reach the handler: they stay on the command path."""
        filters = [t for t in dict.fromkeys(topics)]
        for f in filters:
            if not f or not isinstance(f, str):
                raise ValueError(f"{self.site}: cannot subscribe to {f!r}")
        if not filters:
            return
        with self._lock:
            self._subscriptions.extend((f, qos, handler) for f in filters)
            if self._connected.is_set():
                # under the lock: the SUBACK (network thread) looks the mid up under it too
                rc, mid = self._client.subscribe([(f, qos) for f in filters])
                if rc == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                    self._pending_subacks[mid] = filters

    def start(self) -> None:
        """Connect in the background (retrying until the broker answers) and start the network thread."""
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None  # no asyncio: handlers run in paho's thread
        self._client.connect_async(self.settings.host, self.settings.port, keepalive=self.settings.keepalive_s)
        self._client.loop_start()

    @property
    def connected(self) -> bool:
        return self._connected.is_set()

    async def wait_connected(self, timeout_s: float = 30.0) -> bool:
        """Wait until connected and subscribed to the site's commands; False after ``timeout_s`` [s]."""
        return await asyncio.to_thread(self._ready.wait, timeout_s)

    def stop(self, timeout_s: float = 5.0) -> None:
        """Say offline (retained), disconnect and stop the network thread (blocks up to ``timeout_s`` [s])."""
        self._stopping = True
        if self._connected.is_set():
            info = self._client.publish(self.topics.online, to_json({"online": False}), qos=QOS_ONLINE, retain=True)
            try:
                info.wait_for_publish(timeout_s)
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()
        self.replay.close()

    async def aclose(self, timeout_s: float = 5.0) -> None:
        """:meth:`stop` without blocking the event loop."""
        await asyncio.to_thread(self.stop, timeout_s)

    # -- alarms ----------------------------------------------------------------------------
    def alarm_conditions(self) -> list[StoreCondition]:
        """The command path's conditions for the site's alarms, as telemetry-level tuples
        (code, active, severity 'warning'|'critical', message); inactive ones clear the alarm.

        ``command_store_recovered`` (warning): the replay database was damaged at
        start and replaced (ids that could not be salvaged could be replayed until
        their command expires); active until :meth:`clear_recovery_alarm` or the
        next start.  ``command_store_failed`` (critical): the latest command could
        not be recorded (full disk, I/O error), so it was refused with an ack of
        code ``storage_failed``; clears when a command is recorded again.
        """
        r = self.replay.recovery
        recovered = (r.describe("command replay store") + "; commands received before could be replayed "
                     "until they expire") if r else ""
        failure = self._store_failure
        failed = (f"command replay store {self.replay.path} cannot record commands ({failure}); "
                  "commands are refused until it can") if failure else ""
        return [StoreCondition(COMMAND_STORE_RECOVERED, self._recovery_alarm, "warning", recovered),
                StoreCondition(COMMAND_STORE_FAILED, failure is not None, "critical", failed)]

    def clear_recovery_alarm(self) -> None:
        """The operator saw the recovery alarm (the damaged copy stays on disk)."""
        self._recovery_alarm = False

    # -- publishing ----------------------------------------------------------------------
    def publish_state(self, state: Mapping[str, Any]) -> None:
        """Retained JSON snapshot of the site on ``.../state`` (QoS 1); re-sent on every reconnect."""
        payload = to_json(state)
        with self._lock:
            self._last_state = payload
        if self.connected:
            self._client.publish(self.topics.state, payload, qos=QOS_STATE, retain=True)

    def publish_plan(self, plan: Mapping[str, Any]) -> None:
        """Retained current plan on ``.../plan`` (QoS 1); re-sent on every reconnect."""
        payload = to_json(plan)
        with self._lock:
            self._last_plan = payload
        if self.connected:
            self._client.publish(self.topics.plan, payload, qos=QOS_PLAN, retain=True)

    def publish_telemetry(self, data: Mapping[str, Any]) -> bool:
        """Raw values on ``.../telemetry`` (QoS 0); skipped (False) while disconnected."""
        if not self.connected:
            self.counts["telemetry_skipped"] += 1
            return False
        self._client.publish(self.topics.telemetry, to_json(data), qos=QOS_TELEMETRY)
        return True

    def publish_alarm(self, alarm: Mapping[str, Any]) -> None:
        """An alarm event on ``.../alarm`` (QoS 1); queued in memory while the broker is away."""
        self._client.publish(self.topics.alarm, to_json(alarm), qos=QOS_ALARM)

    def ack(self, ack: Ack, command: Command | None = None) -> None:
        """Publish ``ack`` on ``.../ack`` (QoS 1, queued while away) and pass it to the audit handler.
        Commands are acked automatically; this is for acks the daemon sends on its own."""
        self._deliver_ack(ack, command)

    # -- paho callbacks (network thread) -------------------------------------------------
    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            text = str(reason_code)
            if text != self._last_connect_error:
                log.error("%s: broker %s:%d refused the connection: %s", self.site, self.settings.host,
                          self.settings.port, text)
            self._last_connect_error = text
            return
        if self._last_connect_error or self.counts["connects"]:
            log.info("%s: connected to the broker again", self.site)
        self._last_connect_error = None
        self.counts["connects"] += 1
        self._ready.clear()
        client.subscribe(self.topics.commands, qos=QOS_COMMAND)
        with self._lock:
            extra = [(f, q) for f, q, _ in self._subscriptions]
            self._pending_subacks.clear()
            if extra:
                rc, mid = client.subscribe(extra)
                if rc == mqtt.MQTT_ERR_SUCCESS and mid is not None:
                    self._pending_subacks[mid] = [f for f, _ in extra]
        client.publish(self.topics.online, to_json({"online": True, "since": self._clock()}), qos=QOS_ONLINE,
                       retain=True)
        with self._lock:
            state, plan = self._last_state, self._last_plan
        if state is not None:
            client.publish(self.topics.state, state, qos=QOS_STATE, retain=True)
        if plan is not None:
            client.publish(self.topics.plan, plan, qos=QOS_PLAN, retain=True)
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        if self._connected.is_set() and not self._stopping:
            log.warning("%s: lost the broker (%s); reconnecting with backoff", self.site, reason_code)
        self._connected.clear()
        self._ready.clear()

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        with self._lock:
            filters = self._pending_subacks.pop(mid, None)
        if filters is not None:
            for f, rc in zip(filters, reason_codes):
                if rc.is_failure:
                    if f not in self.refused_filters:
                        log.error("%s: broker refused the subscription to %s (check the ACL)", self.site, f)
                    self.refused_filters.add(f)
                else:
                    self.refused_filters.discard(f)
            return
        # Any other SUBACK answers the command subscription.
        if any(rc.is_failure for rc in reason_codes):
            self.subscribe_refused = True
            log.error("%s: broker refused the subscription to %s (check the ACL)", self.site, self.topics.commands)
        self._ready.set()

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        try:
            if mqtt.topic_matches_sub(self.topics.commands, msg.topic):
                self._receive(msg.topic, msg.payload, redelivery=bool(msg.dup))
            else:
                self._dispatch(msg.topic, msg.payload)
        except Exception:  # never let one message kill the network thread
            log.exception("%s: error handling message on %s", self.site, msg.topic)

    def _dispatch(self, topic: str, payload: bytes) -> None:
        """A message of another subscription: to every handler whose filter matches (each once)."""
        with self._lock:
            handlers = list(dict.fromkeys(h for f, _, h in self._subscriptions if mqtt.topic_matches_sub(f, topic)))
        if not handlers:
            self.counts["unexpected_topic"] += 1
            return
        for handler in handlers:
            try:
                handler(topic, bytes(payload))
            except Exception:
                log.exception("%s: handler for %s failed", self.site, topic)

    # -- command path --------------------------------------------------------------------
    def _receive(self, topic: str, payload: bytes, redelivery: bool = False) -> None:
        """One message on the site's command tree: validate, record, hand on.  Every path ends in an ack:
        an unexpected exception (a bug, an input nobody foresaw) is acked as failed, code internal_error."""
        now, kind, cmd = None, None, None
        try:
            now = self._clock()
            parsed = parse_topic(topic)
            kind = parsed.kind if parsed and parsed.leaf == "cmd" and parsed.site == self.site else None
            try:
                cmd = parse_command(payload, self.site, kind, now, self.max_lifetime, self.max_skew)
                self.replay.record(cmd)
            except ReplayStoreError as exc:
                # Not recorded, so not executed (replay protection cannot be promised); the issuer may retry.
                self.counts["storage_failed"] += 1
                if self._store_failure is None:
                    log.error("%s: %s; refusing commands until it can", self.site, exc)
                self._store_failure = str(exc)
                self._deliver_ack(self._outcome_ack(cmd, "failed", code="storage_failed", error=str(exc)), cmd)
                return
            except CommandRefused as refusal:
                if refusal.code == "replayed" and redelivery and refusal.original_ack:
                    # QoS 1 redelivery of a command already handled: repeat its ack, do not execute it again.
                    self.counts["redelivered"] += 1
                    self._client.publish(self.topics.ack, refusal.original_ack.encode(), qos=QOS_ACK)
                    return
                self.counts["refused_" + refusal.code] += 1
                log.warning("%s: refused command on %s: %s", self.site, topic, str(refusal)[:500])
                self._deliver_ack(self._refusal(refusal, now), None)
                return
            if self._store_failure is not None:
                log.info("%s: the command replay store records commands again", self.site)
                self._store_failure = None
            self._hand_on(cmd, now)
        except Exception as exc:
            self._internal_error(exc, topic, kind, cmd, now)

    def _hand_on(self, cmd: Command, now: datetime) -> None:
        self.counts["accepted"] += 1
        if self._handler is None:
            self._deliver_ack(self._refusal(CommandRefused("unavailable", "the site has no command handler yet",
                                                           cmd.id, cmd.kind), now), cmd)
            return
        if self._loop is not None and not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(self._execute(cmd), self._loop)
        else:
            self._execute_sync(cmd)

    def _internal_error(self, exc: Exception, topic: str, kind: str | None, cmd: Command | None,
                        now: datetime | None) -> None:
        log.error("%s: could not handle the command on %s", self.site, topic, exc_info=exc)
        self.counts["internal_error"] += 1
        error = f"the site could not handle the command: {type(exc).__name__}: {exc}"[:500]
        try:
            try:
                at = self._clock()
            except Exception:  # the clock itself may be what failed
                at = _utcnow()
            received = now if isinstance(now, datetime) and now.tzinfo is not None else at
            ack = Ack(command_id=cmd.id if cmd else None, site=self.site, kind=cmd.kind if cmd else kind,
                      status="failed", code="internal_error", error=error, received_at=received, acked_at=at)
            self._deliver_ack(ack, cmd)
        except Exception:
            log.exception("%s: could not even send an error ack for the command on %s", self.site, topic)

    def _refusal(self, r: CommandRefused, received_at: datetime) -> Ack:
        return Ack(command_id=r.command_id, site=self.site, kind=r.kind, status="refused", code=r.code,
                   error=r.message, received_at=received_at, acked_at=self._clock())

    def _deliver_ack(self, ack: Ack, cmd: Command | None) -> None:
        # Acks go out from the network thread at once; the audit handler runs in the event loop.
        self.counts[ack.status] += 1
        text = ack.model_dump_json()
        self._client.publish(self.topics.ack, text.encode(), qos=QOS_ACK)
        if cmd is not None:
            try:
                self.replay.store_ack(cmd.id, text)
            except Exception as exc:  # only the answer to a later redelivery depends on it
                log.warning("%s: could not store the ack of %s: %s", self.site, cmd.id, exc)
        if self._audit is None:
            return
        if self._loop is not None and not self._loop.is_closed():
            try:
                self._loop.call_soon_threadsafe(self._safe_audit, cmd, ack)
                return
            except RuntimeError:  # the loop closed meanwhile (shutting down): audit here
                pass
        self._safe_audit(cmd, ack)

    def _safe_audit(self, cmd: Command | None, ack: Ack) -> None:
        try:
            self._audit(cmd, ack)
        except Exception:
            log.exception("audit handler failed for ack of %s", ack.command_id)

    def _outcome_ack(self, cmd: Command, status: str, outcome: Any = None, code: str | None = None,
                     error: str | None = None) -> Ack:
        try:
            outcome = json.loads(to_json(outcome))
        except (TypeError, ValueError):
            outcome = repr(outcome)
        return Ack(command_id=cmd.id, site=self.site, kind=cmd.kind, status=status, code=code, error=error,
                   outcome=outcome, received_at=cmd.received_at, acked_at=self._clock())

    async def _execute(self, cmd: Command) -> None:
        try:
            outcome = self._handler(cmd)
            if inspect.isawaitable(outcome):
                outcome = await asyncio.wait_for(outcome, self.handler_timeout_s)
            ack = self._outcome_ack(cmd, "ok", outcome)
        except CommandRejected as exc:
            ack = self._outcome_ack(cmd, "refused", code="rejected", error=str(exc))
        except asyncio.TimeoutError:
            ack = self._outcome_ack(cmd, "failed", error=f"handler did not finish within {self.handler_timeout_s} s")
        except Exception as exc:
            log.exception("%s: command handler failed for %s", self.site, cmd.id)
            ack = self._outcome_ack(cmd, "failed", error=f"{type(exc).__name__}: {exc}")
        self._deliver_ack(ack, cmd)

    def _execute_sync(self, cmd: Command) -> None:
        try:
            outcome = self._handler(cmd)
            if inspect.isawaitable(outcome):
                if hasattr(outcome, "close"):
                    outcome.close()
                raise RuntimeError("async command handler but EdgeMqtt was started outside an event loop")
            ack = self._outcome_ack(cmd, "ok", outcome)
        except CommandRejected as exc:
            ack = self._outcome_ack(cmd, "refused", code="rejected", error=str(exc))
        except Exception as exc:
            log.exception("%s: command handler failed for %s", self.site, cmd.id)
            ack = self._outcome_ack(cmd, "failed", error=f"{type(exc).__name__}: {exc}")
        self._deliver_ack(ack, cmd)
