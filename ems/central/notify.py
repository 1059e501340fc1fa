"""Notifications to operators: critical alarms and halls going offline (and back online), by webhook
(HTTP POST of JSON) and by e-mail (SMTP), rate-limited.  Configured in central.yaml::

    notify:
      webhook:
        url: https://chat.example.jp/hooks/ems     # POST, JSON body (see Event.to_dict)
        token_env: EMS_WEBHOOK_TOKEN               # optional: sent as "Authorization: Bearer <token>"
      email:
        host: smtp.example.jp
        port: 587
        security: starttls                         # starttls | ssl | none (none: loopback relays only)
        username: ems@example.jp                   # optional; the password from password_file / password_env
        password_file: /etc/ems/smtp-password
        from_addr: ems@example.jp
        to: [duty@example.jp]
      min_interval_s: 600     # the same kind of message about the same hall at most this often
      max_per_hour: 30        # all messages together; the rest are counted and mentioned in the next one
      offline_after_s: 120    # a hall is offline when its broker says so or it has been silent this long

:class:`Notifier` watches the service every ``check_s`` seconds (the alarm book and the fleet rows;
so it sees what the dashboard sees) and sends each new event to every configured channel in a worker
thread.  Alarms already active when the service starts are taken as known (a restart does not resend
them).  A channel that fails is logged and reported in :attr:`Notifier.status`; the event is not retried
(the next event goes out as usual).  Texts are Japanese first, with English below.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import smtplib
import ssl
import time
import urllib.error
import urllib.request
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage
from pathlib import Path
from typing import Any, Callable, Literal

from pydantic import Field, field_validator, model_validator

from devices.configfile import StrictModel
from telemetry.mqtt_client import read_secret

log = logging.getLogger(__name__)

JST = timezone(timedelta(hours=9))
EVENT_KINDS = ("critical_alarm", "hall_offline", "hall_online")
_EMAIL_RE = re.compile(r"^[^@\s<>\"',;]+@[^@\s<>\"',;]+\.[^@\s<>\"',;]+$")
_LOOPBACK = ("127.0.0.1", "::1", "localhost")


def _secret(base: Path, file: str | None, env: str | None) -> str | None:
    if file is not None:
        p = Path(file).expanduser()
        return read_secret(file=p if p.is_absolute() else base / p)
    if env is not None:
        return read_secret(env=env)
    return None


class WebhookSpec(StrictModel):
    """POST JSON to ``url``; optional bearer token from token_file / token_env (never inline)."""

    url: str = Field(pattern=r"^https?://[^\s/]+", max_length=2000)
    token_file: str | None = None
    token_env: str | None = None
    timeout_s: float = Field(default=5.0, gt=0, le=60)

    @model_validator(mode="after")
    def _one(self) -> "WebhookSpec":
        if self.token_file is not None and self.token_env is not None:
            raise ValueError("give token_file or token_env, not both")
        return self


class EmailSpec(StrictModel):
    """An SMTP relay and the addresses; the password from password_file / password_env (never inline)."""

    host: str = Field(min_length=1, max_length=255)
    port: int = Field(default=587, ge=1, le=65535)
    security: Literal["starttls", "ssl", "none"] = "starttls"
    username: str | None = Field(default=None, min_length=1, max_length=255)
    password_file: str | None = None
    password_env: str | None = None
    from_addr: str = Field(max_length=255)
    to: list[str] = Field(min_length=1, max_length=50)
    timeout_s: float = Field(default=10.0, gt=0, le=120)

    @field_validator("from_addr")
    @classmethod
    def _from(cls, v: str) -> str:
        if not _EMAIL_RE.match(v):
            raise ValueError(f"{v!r} is not an e-mail address")
        return v

    @field_validator("to")
    @classmethod
    def _to(cls, v: list[str]) -> list[str]:
        for i, addr in enumerate(v):
            if not _EMAIL_RE.match(addr):
                raise ValueError(f"[{i}]: {addr!r} is not an e-mail address")
        return v

    @model_validator(mode="after")
    def _auth(self) -> "EmailSpec":
        has_password = self.password_file is not None or self.password_env is not None
        if self.password_file is not None and self.password_env is not None:
            raise ValueError("give password_file or password_env, not both")
        if has_password != (self.username is not None):
            raise ValueError("username and a password (password_file or password_env) go together")
        if self.username is not None and self.security == "none" and self.host not in _LOOPBACK:
            raise ValueError(f"security: none would send the password in clear text to {self.host}; "
                             "use starttls or ssl (none is for a relay on this machine)")
        return self


class NotifySpec(StrictModel):
    """Where notifications go and how often (see the module docstring)."""

    webhook: WebhookSpec | None = None
    email: EmailSpec | None = None
    events: list[Literal["critical_alarm", "hall_offline", "hall_online"]] = Field(
        default_factory=lambda: list(EVENT_KINDS))
    min_interval_s: float = Field(default=600, ge=0, le=86400)
    max_per_hour: int = Field(default=30, ge=1, le=10000)
    offline_after_s: float = Field(default=120, gt=0, le=86400)
    check_s: float = Field(default=5, gt=0, le=300)

    @property
    def enabled(self) -> bool:
        return self.webhook is not None or self.email is not None


def check_notify_secrets(spec: NotifySpec, base: Path, source: str) -> list[str]:
    """Problems reading the configured secrets, as ``file: field: message`` lines."""
    problems = []
    for name, sub, f, e in (("webhook", spec.webhook, "token_file", "token_env"),
                            ("email", spec.email, "password_file", "password_env")):
        if sub is None:
            continue
        try:
            _secret(base, getattr(sub, f), getattr(sub, e))
        except ValueError as exc:
            problems.append(f"{source}: notify.{name}.{f if getattr(sub, f) else e}: {exc}")
    return problems


@dataclass
class Event:
    """Something operators must hear of.  time: UTC."""

    kind: str
    site: str
    name: str
    time: datetime
    text_ja: str
    text_en: str
    details: dict[str, Any] = field(default_factory=dict)
    suppressed: int = 0  # events left out by the rate limit since the last message that went out

    @property
    def subject(self) -> str:
        label = {"critical_alarm": "重大警報", "hall_offline": "通信断", "hall_online": "通信復旧"}[self.kind]
        return f"[Shelter EMS] {label} {self.name}"

    def body(self) -> str:
        when = self.time.astimezone(JST).strftime("%Y/%m/%d %H:%M")
        lines = [f"{when} JST", self.text_ja, "", self.text_en]
        if self.suppressed:
            lines += ["", f"（このほか {self.suppressed} 件の通知を送信間隔の制限により省略しました）",
                      f"({self.suppressed} more notifications were left out by the rate limit)"]
        return "\n".join(lines) + "\n"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "site": self.site, "name": self.name, "time": self.time.isoformat(),
                "subject": self.subject, "text_ja": self.text_ja, "text_en": self.text_en,
                "details": self.details, "suppressed": self.suppressed}


class RateLimit:
    """At most one event per (kind, site) every ``min_interval_s`` and ``max_per_hour`` in all.
    ``now`` is monotonic seconds (tests pass their own)."""

    def __init__(self, min_interval_s: float, max_per_hour: int):
        self.min_interval_s = min_interval_s
        self.max_per_hour = max_per_hour
        self._last: dict[tuple[str, str], float] = {}
        self._sent: deque[float] = deque()
        self.suppressed = 0

    def allow(self, kind: str, site: str, now: float) -> bool:
        while self._sent and now - self._sent[0] >= 3600:
            self._sent.popleft()
        last = self._last.get((kind, site))
        if (last is not None and now - last < self.min_interval_s) or len(self._sent) >= self.max_per_hour:
            self.suppressed += 1
            return False
        self._last[(kind, site)] = now
        self._sent.append(now)
        return True


class WebhookChannel:
    name = "webhook"

    def __init__(self, spec: WebhookSpec, base: Path):
        self.spec = spec
        self._token = _secret(base, spec.token_file, spec.token_env)

    def send(self, event: Event) -> None:
        req = urllib.request.Request(self.spec.url, data=json.dumps(event.to_dict(), ensure_ascii=False).encode(),
                                     method="POST", headers={"Content-Type": "application/json; charset=utf-8"})
        if self._token:
            req.add_header("Authorization", f"Bearer {self._token}")
        try:
            with urllib.request.urlopen(req, timeout=self.spec.timeout_s) as resp:  # noqa: S310 - configured URL
                resp.read(1000)
        except urllib.error.HTTPError as exc:
            raise OSError(f"webhook {self.spec.url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            raise OSError(f"webhook {self.spec.url}: {getattr(exc, 'reason', exc)}") from None


class EmailChannel:
    name = "email"

    def __init__(self, spec: EmailSpec, base: Path):
        self.spec = spec
        self._password = _secret(base, spec.password_file, spec.password_env)

    def send(self, event: Event) -> None:
        s = self.spec
        msg = EmailMessage()
        msg["Subject"], msg["From"], msg["To"] = event.subject, s.from_addr, ", ".join(s.to)
        msg.set_content(event.body())
        try:
            if s.security == "ssl":
                smtp: smtplib.SMTP = smtplib.SMTP_SSL(s.host, s.port, timeout=s.timeout_s,
                                                      context=ssl.create_default_context())
            else:
                smtp = smtplib.SMTP(s.host, s.port, timeout=s.timeout_s)
            with smtp:
                if s.security == "starttls":
                    smtp.starttls(context=ssl.create_default_context())
                if s.username:
                    smtp.login(s.username, self._password or "")
                smtp.send_message(msg)
        except (smtplib.SMTPException, OSError) as exc:
            raise OSError(f"e-mail via {s.host}:{s.port}: {exc}") from None


class Notifier:
    """Watches a CentralService and sends events (see the module docstring).

    ``monotonic`` gives seconds for the rate limit (tests pass their own)."""

    def __init__(self, spec: NotifySpec, base: Path, monotonic: Callable[[], float] = time.monotonic):
        self.spec = spec
        self.channels = ([WebhookChannel(spec.webhook, base)] if spec.webhook else []) + \
                        ([EmailChannel(spec.email, base)] if spec.email else [])
        self.limit = RateLimit(spec.min_interval_s, spec.max_per_hour)
        self.monotonic = monotonic
        self._alarms_seen: set[str] | None = None
        self._offline: dict[str, bool] = {}
        self.status: dict[str, Any] = {"sent": 0, "suppressed": 0, "failed": 0, "last_error": None}

    # -- what to say ---------------------------------------------------------------------------
    def events(self, service) -> list[Event]:
        """New events since the last call (the first call only learns what is already there)."""
        now = service.clock()
        names = {s.id: s.name for s in service.fleet.sites}
        out: list[Event] = []
        critical = [a for a in service.alarms.list("active", limit=1000) if a.severity == "critical"]
        first = self._alarms_seen is None
        seen = self._alarms_seen or set()
        for a in critical:
            if a.id in seen:
                continue
            seen.add(a.id)
            if not first and "critical_alarm" in self.spec.events:
                name = names.get(a.site, a.site)
                out.append(Event("critical_alarm", a.site, name, now,
                                 f"重大警報: {name}（{a.site}）{a.code} — {a.message}",
                                 f"Critical alarm at {name} ({a.site}): {a.code} — {a.message}",
                                 {"alarm_id": a.id, "code": a.code, "raised_at": a.raised_at}))
        self._alarms_seen = seen & {a.id for a in critical}  # a cleared alarm raised again is news again
        for row in service.fleet_rows():
            age = row.get("state_age_s")
            offline = row.get("online") is False or (row.get("online") is not None and age is not None
                                                      and age > self.spec.offline_after_s)
            before = self._offline.get(row["site"])
            self._offline[row["site"]] = offline
            if before is None or before == offline:
                continue
            kind = "hall_offline" if offline else "hall_online"
            if kind not in self.spec.events:
                continue
            name = row["name"]
            if offline:
                ja = f"通信断: {name}（{row['site']}）から応答がありません（最終受信 {age if age is not None else '—'} 秒前）。"
                en = f"{name} ({row['site']}) went offline (last heard {age if age is not None else '—'} s ago)."
            else:
                ja, en = f"通信復旧: {name}（{row['site']}）と再び通信しています。", f"{name} ({row['site']}) is back online."
            out.append(Event(kind, row["site"], name, now, ja, en, {"state_age_s": age, "mode": row.get("mode")}))
        return out

    # -- sending -------------------------------------------------------------------------------
    def deliver(self, event: Event) -> bool:
        """Send one event to every channel if the rate limit allows (blocking); True if it went out."""
        if not self.limit.allow(event.kind, event.site, self.monotonic()):
            self.status["suppressed"] += 1
            log.info("notification %s %s left out by the rate limit", event.kind, event.site)
            return False
        event.suppressed, self.limit.suppressed = self.limit.suppressed, 0
        ok = True
        for ch in self.channels:
            try:
                ch.send(event)
            except OSError as exc:
                ok = False
                self.status["failed"] += 1
                self.status["last_error"] = str(exc)
                log.warning("notification %s %s: %s", event.kind, event.site, exc)
        if ok:
            self.status["sent"] += 1
            self.status["last_error"] = None  # every channel works again
        return ok

    async def check_once(self, service) -> int:
        """One look at the service; returns how many events went out.  The look (SQLite, every hall's row)
        runs in a worker thread like the API's, so the event loop keeps serving meanwhile."""
        sent = 0
        for event in await asyncio.to_thread(self.events, service):
            if await asyncio.to_thread(self.deliver, event):
                sent += 1
        return sent

    async def run(self, service) -> None:
        """Check every ``check_s`` seconds until cancelled; a failure in one check is logged, not fatal."""
        while True:
            try:
                await self.check_once(service)
            except asyncio.CancelledError:
                raise
            except Exception:  # noqa: BLE001 - the watcher must outlive one bad check
                log.exception("notifications: check failed")
            await asyncio.sleep(self.spec.check_s)
