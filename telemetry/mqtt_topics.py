"""The MQTT topic tree of the fleet, in one place.

Every topic starts with a version prefix so a future incompatible payload
format can live beside this one::

    ems/v1/<site>/state        retained JSON snapshot of the site (QoS 1)
    ems/v1/<site>/telemetry    raw readings at the cycle rate (QoS 0, not retained)
    ems/v1/<site>/plan         retained current plan (QoS 1)
    ems/v1/<site>/alarm        alarm events (QoS 1)
    ems/v1/<site>/cmd/<kind>   commands to the site, kind = mode | dispatch | setpoint (QoS 1)
    ems/v1/<site>/ack          the site's answer to every command (QoS 1)
    ems/v1/<site>/online       retained {"online": true|false}; false is the last will

Gateways may publish only under their own ``<site>`` and read only their
own ``cmd/#`` (see :mod:`telemetry.mosquitto_acl`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

PREFIX = "ems/v1"

#: Same rule as the fleet file's site ids (ems.config.SiteId), repeated here
#: because telemetry must not import ems.  It also keeps MQTT wildcards
#: ('+', '#') and separators out of topics.
SITE_ID_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,31}$")

COMMAND_KINDS = ("mode", "dispatch", "setpoint")

QOS_STATE = 1
QOS_TELEMETRY = 0
QOS_PLAN = 1
QOS_ALARM = 1
QOS_COMMAND = 1
QOS_ACK = 1
QOS_ONLINE = 1


def check_site_id(site: str) -> str:
    """Return ``site`` if it is a valid site id, else raise ValueError naming it."""
    if not isinstance(site, str) or not SITE_ID_RE.match(site):
        raise ValueError(f"site id {site!r} is not valid (lower-case letters, digits, '-', at most 32)")
    return site


@dataclass(frozen=True, slots=True)
class SiteTopics:
    """All topics of one site."""

    site: str

    def __post_init__(self) -> None:
        check_site_id(self.site)

    @property
    def base(self) -> str:
        return f"{PREFIX}/{self.site}"

    @property
    def state(self) -> str:
        return f"{self.base}/state"

    @property
    def telemetry(self) -> str:
        return f"{self.base}/telemetry"

    @property
    def plan(self) -> str:
        return f"{self.base}/plan"

    @property
    def alarm(self) -> str:
        return f"{self.base}/alarm"

    @property
    def ack(self) -> str:
        return f"{self.base}/ack"

    @property
    def online(self) -> str:
        return f"{self.base}/online"

    @property
    def commands(self) -> str:
        """Subscription filter for every command kind of this site."""
        return f"{self.base}/cmd/#"

    def command(self, kind: str) -> str:
        """Topic for one command kind; ValueError for an unknown kind."""
        if kind not in COMMAND_KINDS:
            raise ValueError(f"unknown command kind {kind!r} (one of {', '.join(COMMAND_KINDS)})")
        return f"{self.base}/cmd/{kind}"


@dataclass(frozen=True, slots=True)
class ParsedTopic:
    """A topic of the tree split into site, leaf (state, cmd, ...) and command kind."""

    site: str
    leaf: str
    kind: str | None = None


def parse_topic(topic: str) -> ParsedTopic | None:
    """Split ``ems/v1/<site>/<leaf>[/<kind>]``; None for topics outside the tree."""
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != PREFIX or not SITE_ID_RE.match(parts[2]):
        return None
    site, leaf, rest = parts[2], parts[3], parts[4:]
    if leaf == "cmd":
        return ParsedTopic(site, leaf, rest[0]) if len(rest) == 1 else None
    if rest:
        return None
    return ParsedTopic(site, leaf)


#: Subscription filters the central service uses for the whole fleet.
FLEET_FILTERS = {
    "state": f"{PREFIX}/+/state",
    "online": f"{PREFIX}/+/online",
    "ack": f"{PREFIX}/+/ack",
    "alarm": f"{PREFIX}/+/alarm",
    "plan": f"{PREFIX}/+/plan",
}
