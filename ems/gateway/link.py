"""The daemon's link to the outside: MQTT state and commands, and the durable telemetry outbox.

:class:`EdgeLink` is a listener and an alarm source of
:class:`ems.gateway.daemon.EdgeDaemon` (``add_listener``,
``add_alarm_source``) and the command handler of
:class:`telemetry.edge_mqtt.EdgeMqtt` (``on_command``).  The daemon never waits for the network: points go into the
SQLite outbox (committed locally, shipped by the InfluxShipper task), MQTT
publishes are queued by paho, and commands arrive in the daemon's own event
loop.

Commands (validated, de-duplicated and expiry-checked by EdgeMqtt first):

* ``mode``: vpp / disaster_reserve / manual become a persisted mode request
  (issued_by, reason and command id kept); ``safe`` is refused — it is
  entered by the site itself on bad data, an operator idles a battery with a
  manual setpoint of 0 W.
* ``setpoint``: a manual setpoint; with ``hold_s`` it reverts to the mode
  that was requested before once the hold ends (simulated time).
* ``dispatch``: an aggregator lease: a commitment for the optimizer's plan
  over [start, end).  Refused unless the site is in vpp: halls in
  disaster_reserve or islanded take no part.  The lease lapses by itself.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from ems.gateway.alarms import Severity
from ems.gateway.authority import CommandAction, refusal
from ems.gateway.daemon import AlarmCondition, DaemonStatus, EdgeDaemon
from ems.gateway.guard import PowerRange
from ems.gateway.modes import Mode, ModeChange, ModeRequest, ModeRequestError
from telemetry.commands import Command, CommandRejected
from telemetry.schema import (PlanSlot, ack_point, alarm_point, command_point, guard_clip_point, mode_point,
                              outbox_point, plan_points, reading_point, setpoint_point, site_point)

log = logging.getLogger(__name__)

#: Alarm code raised while the outbox has dropped telemetry to stay within its disk limit.
TELEMETRY_DROPPED = "telemetry_dropped"
#: The drop alarm clears once the outbox holds no more than this share of its disk limit.
DROP_ALARM_CLEAR_SHARE = 0.5


class EdgeLink:
    """Connects one daemon to its EdgeMqtt (may be None) and Outbox (may be None).

    telemetry_every: write device readings and site values every N cycles
    (1 = every cycle, the raw rate); state_every: publish the retained state
    every N cycles; inputs: the gateway's market inputs (``last_central_at``,
    shown in the state message) or None.
    """

    def __init__(self, daemon: EdgeDaemon, *, mqtt: Any = None, outbox: Any = None,
                 telemetry_every: int = 1, state_every: int = 1, inputs: Any = None):
        self.daemon = daemon
        self.mqtt = mqtt
        self.outbox = outbox
        self.area = daemon.site.area_code
        self.telemetry_every = max(1, telemetry_every)
        self.state_every = max(1, state_every)
        self._cycle = 0
        self._active_alarms: dict[str, Any] = {}
        self._hold_until: datetime | None = None
        self._hold_previous: ModeRequest | None = None
        self.outbox_errors = 0
        self._written: dict[str, datetime] = {}
        self._published_plan: Any = None
        self._drop_alarm: AlarmCondition | None = None
        self.inputs = inputs
        daemon.add_listener(self)
        daemon.add_alarm_source(self)
        if mqtt is not None:
            mqtt.on_command(self.handle_command)
            mqtt.on_audit(self.record_command)

    # -- daemon → outside ------------------------------------------------------------
    def _put(self, points: list) -> None:
        if self.outbox is None or not points:
            return
        try:
            self.outbox.put(points)
        except Exception as exc:  # the control cycle must not die of a telemetry problem
            self.outbox_errors += 1
            if self.outbox_errors == 1:
                log.error("%s: telemetry outbox write failed: %s", self.daemon.site.id, exc)

    def alarm_conditions(self) -> list[AlarmCondition]:
        """The outbox dropping telemetry to stay within its disk limit (an AlarmSource of the daemon)."""
        return [self._drop_alarm] if self._drop_alarm is not None else []

    def on_status(self, s: DaemonStatus) -> None:
        """After each cycle: telemetry into the outbox, the retained state and any new plan out."""
        self._cycle += 1
        site = s.site_id
        self._check_hold(s.time)
        points: list = []
        if self._cycle % self.telemetry_every == 0:
            points += self._new_readings()
            load_w = None
            if s.grid_w is not None and s.battery_w is not None:
                load_w = s.grid_w + s.battery_w + (s.pv_w or 0.0)  # meter + battery + PV = what the hall draws
            points.append(site_point(site, s.time, self.area, load_w=load_w, reserve_wh=s.reserve_floor_wh,
                                     hours_left_h=s.hours_left, allowed_min_w=s.allowed_min_w,
                                     allowed_max_w=s.allowed_max_w, cycle_ms=s.stats.last_cycle_ms))
            points.append(setpoint_point(site, "battery", s.time, s.requested_w, s.setpoint_w, s.plan_reason[:200],
                                         self.area))
        for c in s.clips:
            if isinstance(c.after, PowerRange):  # range narrowings; the final clip of the request is the setpoint point
                points.append(guard_clip_point(site, s.time, c.stage.value, s.requested_w, c.after.min_w,
                                               c.after.max_w, s.setpoint_w, c.reason[:300], self.area))
        points += self._alarm_changes(s)
        points += self._new_plan()
        publish = self.mqtt is not None and self._cycle % self.state_every == 0
        st = self.outbox.stats() if self.outbox is not None and (publish or self._cycle % 60 == 0) else None
        if st is not None:
            if st.drop_alarm and st.bytes <= self.outbox.max_bytes * DROP_ALARM_CLEAR_SHARE:
                # The shipper caught up: nothing is being dropped any more.  The count of what was lost
                # stays in the outbox's statistics and telemetry.
                self.outbox.clear_drop_alarm()
                st = self.outbox.stats()
            # Dropped telemetry is an alarm at the site (the daemon raises it from the next cycle on).
            self._drop_alarm = AlarmCondition(TELEMETRY_DROPPED, st.drop_alarm, Severity.WARNING,
                                              f"telemetry outbox full: {st.dropped_points} points dropped")
            if self._cycle % 60 == 0:
                points.append(outbox_point(site, s.time, st.points, st.bytes, st.oldest_age_s, st.dropped_points,
                                           self.area))
        self._put(points)
        if publish:
            state = s.to_dict()
            state["area_code"] = self.area
            state["name"] = self.daemon.site.name
            state["inputs"] = self._inputs_state()
            if st is not None:
                state["outbox"] = {"points": st.points, "bytes": st.bytes, "oldest_age_s": st.oldest_age_s,
                                   "dropped_points": st.dropped_points}
            self.mqtt.publish_state(state)

    def _inputs_state(self) -> dict[str, Any]:
        """Which prices and weather the latest plan used, and when the central service was last heard."""
        source = self.daemon.plan_source
        info = source.plan_info if source is not None else {}
        if self.inputs is None:
            return {"price_source": info.get("price_source"), "weather_source": info.get("weather_source"),
                    "last_central_at": None}
        return self.inputs.state_fields(info.get("price_source"), info.get("weather_source"))

    def _new_plan(self) -> list:
        """When the optimizer made a new plan: publish it (retained) and return its points."""
        source = self.daemon.plan_source
        plan = source.plan if source is not None else None
        if plan is None or plan is self._published_plan:
            return []
        self._published_plan = plan
        if self.mqtt is not None:
            info = source.plan_info
            self.mqtt.publish_plan({**plan.summary(), "reason": info.get("reason", ""),
                                    "price_source": info.get("price_source"),
                                    "weather_source": info.get("weather_source"),
                                    "created_at": plan.created_at.isoformat(), "slots": plan.rows()})
        plan_id = f"{plan.created_at:%Y%m%dT%H%M%S}-{plan.mode}"
        prices = plan.price_buy_jpy_per_kwh  # the prices the plan used, for the history's price chart
        slots = [PlanSlot(t, float(plan.battery_w[i]), float(plan.soc_pct[i]),
                          float(plan.grid_import_w[i] - plan.grid_export_w[i]),
                          float(prices[i]) if prices is not None else None, float(plan.reserve_wh[i]))
                 for i, t in enumerate(plan.times)]
        return plan_points(self.daemon.site.id, plan_id, plan.created_at, slots,
                           "fallback" if plan.fallback else "optimizer", self.area)

    def _new_readings(self) -> list:
        """Points for every device reading not written yet (each poll once, at its own time)."""
        points = []
        for dev_id, poller in self.daemon.pollers.items():
            r = poller.latest
            if r is None or self._written.get(dev_id) == r.time:
                continue
            self._written[dev_id] = r.time
            try:
                points.append(reading_point(self.daemon.site.id, r, self.area))
            except ValueError as exc:
                log.debug("%s: reading of %s not written: %s", self.daemon.site.id, dev_id, exc)
        return points

    def _alarm_changes(self, s: DaemonStatus) -> list:
        """Points (and MQTT alarm events) for alarms raised or cleared since the last cycle."""
        now_active = {a.code: a for a in s.alarms}
        points = []
        for code, a in now_active.items():
            if code not in self._active_alarms:
                points.append(alarm_point(s.site_id, s.time, code, a.severity.value, a.message[:500], True, self.area))
                if self.mqtt is not None:
                    self.mqtt.publish_alarm({**a.to_dict(), "active": True})
        for code, a in self._active_alarms.items():
            if code not in now_active:
                points.append(alarm_point(s.site_id, s.time, code, a.severity.value, a.message[:500], False,
                                          self.area))
                if self.mqtt is not None:
                    self.mqtt.publish_alarm({**a.to_dict(), "active": False, "cleared_at": s.time})
        self._active_alarms = now_active
        return points

    def on_mode_change(self, ch: ModeChange) -> None:
        """An effective mode change becomes a telemetry point."""
        if ch.layer != "effective":
            return
        self._put([mode_point(self.daemon.site.id, ch.time, ch.to_mode.value, ch.reason[:500],
                              ch.from_mode.value if ch.from_mode else None, self.area)])

    def record_command(self, cmd: Command | None, ack: Any) -> None:
        """Every command received and its ack, as the top-priority telemetry (the hall's audit trail).

        Called for every ack, refusals included; ``cmd`` is None when the
        command could not be read at all (the ack says why).
        """
        site = self.daemon.site.id
        points = []
        if cmd is not None:
            points.append(command_point(site, cmd.received_at, cmd.id, cmd.kind, cmd.issued_by, cmd.expires_at,
                                        cmd.payload.model_dump(mode="json"), self.area))
        error = ack.error if ack.code is None else f"{ack.code}: {ack.error}"
        points.append(ack_point(site, ack.acked_at, ack.command_id or "unknown", ack.kind or "unknown", ack.status,
                                error[:500] if error else None, ack.outcome, self.area))
        self._put(points)

    # -- outside → daemon --------------------------------------------------------------
    def handle_command(self, cmd: Command) -> dict[str, Any]:
        """Carry out a validated command; returns the outcome for the ack, or raises CommandRejected.

        First the authority table (:mod:`ems.gateway.authority`): nothing an
        operator sends ends or weakens disaster mode.
        """
        action = self._action(cmd)
        if action is not None:
            why = refusal(self.daemon.machine.requested.mode, action)
            if why is not None:
                raise CommandRejected(why)
        if cmd.kind == "mode":
            return self._mode_command(cmd)
        if cmd.kind == "setpoint":
            return self._setpoint_command(cmd)
        if cmd.kind == "dispatch":
            return self._dispatch_command(cmd)
        raise CommandRejected(f"unknown command kind {cmd.kind!r}")

    @staticmethod
    def _action(cmd: Command) -> CommandAction | None:
        """The table's name for ``cmd`` (None for a mode the hall refuses anyway: safe, manual)."""
        if cmd.kind == "mode":
            return {"vpp": CommandAction.RETURN_TO_VPP,
                    "disaster_reserve": CommandAction.DISASTER}.get(cmd.payload.mode)
        return {"setpoint": CommandAction.SETPOINT, "dispatch": CommandAction.DISPATCH}.get(cmd.kind)

    def _request(self, req: ModeRequest) -> dict[str, Any]:
        try:
            self.daemon.request_mode(req)
        except OSError as exc:
            raise CommandRejected(f"the mode could not be persisted ({exc}); not applied") from None
        state = self.daemon.machine.state
        return {"requested": req.mode.value, "effective": state.effective.value, "reason": state.reason}

    def _mode_command(self, cmd: Command) -> dict[str, Any]:
        p = cmd.payload
        if p.mode == "safe":
            raise CommandRejected("mode 'safe' is entered by the site itself on bad data; "
                                  "to idle the battery send a manual setpoint of 0 W")
        if p.mode == "manual":
            raise CommandRejected("mode 'manual' needs a power: send a 'setpoint' command")
        self._hold_until = self._hold_previous = None
        try:
            req = ModeRequest(Mode(p.mode), p.reason, cmd.issued_by, cmd.issued_at, command_id=cmd.id)
        except ModeRequestError as exc:
            raise CommandRejected(str(exc)) from None
        return self._request(req)

    def _setpoint_command(self, cmd: Command) -> dict[str, Any]:
        p = cmd.payload
        machine = self.daemon.machine
        previous = machine.requested
        if p.device != "battery":
            raise CommandRejected(f"device {p.device!r}: only the battery takes setpoints")
        try:
            req = ModeRequest(Mode.MANUAL, f"manual setpoint {p.power_w:.0f} W", cmd.issued_by, cmd.issued_at,
                              setpoint_w=p.power_w, command_id=cmd.id)
        except ModeRequestError as exc:
            raise CommandRejected(str(exc)) from None
        outcome = self._request(req)
        if p.hold_s:
            self._hold_until = self.daemon.clock.now() + timedelta(seconds=p.hold_s)
            self._hold_previous = previous if previous.mode is not Mode.MANUAL else self._hold_previous
            outcome["hold_until"] = self._hold_until.isoformat()
        return outcome

    def _check_hold(self, now: datetime) -> None:
        if self._hold_until is None or now < self._hold_until:
            return
        previous = self._hold_previous
        self._hold_until = self._hold_previous = None
        if previous is None:
            return
        req = ModeRequest(previous.mode, f"manual hold ended; back to: {previous.reason}", "system", now,
                          setpoint_w=previous.setpoint_w)
        try:
            self.daemon.request_mode(req)
        except OSError as exc:
            log.error("%s: could not return from manual hold: %s", self.daemon.site.id, exc)

    def _dispatch_command(self, cmd: Command) -> dict[str, Any]:
        from optimizer.settings import Commitment

        p = cmd.payload
        state = self.daemon.machine.state
        if state.effective is not Mode.VPP:
            raise CommandRejected(f"site is in {state.effective.value}, not vpp: it takes no dispatch")
        source = self.daemon.plan_source
        if source is None:
            raise CommandRejected("this site runs without the optimizer and cannot take dispatch leases")
        lease = Commitment(p.start, p.end, p.power_w, id=cmd.id)
        # A newer lease over the same time replaces the older one (the aggregator re-dispatched).
        kept = [c for c in source.commitments if not (c.start < lease.end and lease.start < c.end)]
        replaced = len(source.commitments) - len(kept)
        source.set_commitments([*kept, lease])
        return {"lease": {"start": p.start.isoformat(), "end": p.end.isoformat(), "power_w": p.power_w},
                "replaced_overlapping": replaced}
