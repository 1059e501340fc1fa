"""Central-side store of the fleet's latest state, fed by MQTT messages.

For every site: the latest retained state snapshot, the online flag, the
current plan, the last ack and the last alarm, each with the time it was
received, plus a count of payloads that could not be read.  The dashboard
reads :meth:`FleetStateStore.snapshot`; listeners get every change.

Pure data: it does not talk to the broker itself (``CentralMqtt`` feeds
it), so it is easy to test and to feed from a replay.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any, Callable, Iterable

from telemetry.mqtt_topics import check_site_id, parse_topic

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class SiteView:
    """What the center knows about one site.  Times are receive times (UTC).

    online: True / False (from the retained flag and the broker's last will),
    None when never heard of; state / plan / last_ack / last_alarm: decoded
    JSON as the site sent it; bad_payloads: messages that were not JSON
    objects, last_error: the latest such problem.
    """

    site: str
    online: bool | None = None
    online_at: datetime | None = None
    state: dict[str, Any] | None = None
    state_at: datetime | None = None
    plan: dict[str, Any] | None = None
    plan_at: datetime | None = None
    last_ack: dict[str, Any] | None = None
    last_ack_at: datetime | None = None
    last_alarm: dict[str, Any] | None = None
    last_alarm_at: datetime | None = None
    bad_payloads: int = 0
    last_error: str | None = None


Listener = Callable[[SiteView, str], None]  # (new view, which leaf changed)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


class FleetStateStore:
    """Latest view of every site (thread-safe; views are immutable and replaced on change)."""

    def __init__(self, sites: Iterable[str] = (), clock: Callable[[], datetime] = _utcnow):
        self._clock = clock
        self._lock = threading.Lock()
        self._views: dict[str, SiteView] = {check_site_id(s): SiteView(s) for s in sites}
        self._listeners: list[Listener] = []

    def add_listener(self, listener: Listener) -> None:
        """Call ``listener(view, leaf)`` after every change (in the thread that fed the message)."""
        self._listeners.append(listener)

    def handle(self, topic: str, payload: bytes) -> str | None:
        """Feed one MQTT message; returns the site it updated, None if the topic is not ours."""
        parsed = parse_topic(topic)
        if parsed is None or parsed.leaf not in ("state", "online", "plan", "ack", "alarm"):
            return None
        now = self._clock()
        site, leaf = parsed.site, parsed.leaf
        data: Any = None
        error = None
        if payload:  # an empty retained message clears the topic
            try:
                data = json.loads(payload)
                if not isinstance(data, dict):
                    error = f"{topic}: payload is not a JSON object"
            except (ValueError, UnicodeDecodeError) as exc:
                error = f"{topic}: payload is not JSON: {exc}"
        with self._lock:
            view = self._views.get(site) or SiteView(site)
            if error is not None:
                view = replace(view, bad_payloads=view.bad_payloads + 1, last_error=error)
            elif leaf == "online":
                online = bool(data.get("online")) if isinstance(data, dict) else False
                view = replace(view, online=online, online_at=now)
            else:
                view = replace(view, **{_FIELD[leaf]: data, f"{_FIELD[leaf]}_at": now})
            self._views[site] = view
            listeners = list(self._listeners)
        if error is not None:
            log.warning("fleet state: %s", error)
        for listener in listeners:
            try:
                listener(view, leaf)
            except Exception:
                log.exception("fleet state listener failed")
        return site

    def get(self, site: str) -> SiteView:
        """The view of ``site``; KeyError if the site is unknown and never heard from."""
        with self._lock:
            return self._views[site]

    def snapshot(self) -> dict[str, SiteView]:
        """All sites, sorted by id."""
        with self._lock:
            return dict(sorted(self._views.items()))

    def online_sites(self) -> list[str]:
        """Ids of the sites whose online flag is True."""
        with self._lock:
            return sorted(s for s, v in self._views.items() if v.online)


_FIELD = {"state": "state", "plan": "plan", "ack": "last_ack", "alarm": "last_alarm"}
