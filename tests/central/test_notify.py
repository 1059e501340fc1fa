"""Notifications of critical alarms and offline halls to a real SMTP server (aiosmtpd) and a real
webhook receiver, both on 127.0.0.1; rate limit; failures; configuration checks."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devices.configfile import ConfigError
from ems.central.config import load_central_config
from ems.central.notify import EmailSpec, NotifySpec, Notifier, RateLimit, WebhookSpec
from tests.central.conftest import feed, feed_fleet, make_env, state_message
from tests.netutil import free_port

TOKEN = "hook-token-123"


@pytest.fixture(scope="module")
def smtp():
    from aiosmtpd.controller import Controller

    class Collect:
        def __init__(self):
            self.messages = []

        async def handle_DATA(self, server, session, envelope):
            self.messages.append(envelope)
            return "250 OK"

    handler = Collect()
    ctl = Controller(handler, hostname="127.0.0.1", port=free_port())
    ctl.start()
    yield ctl, handler.messages
    ctl.stop()


@pytest.fixture(scope="module")
def hook():
    got = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got.append((self.headers.get("Authorization"), json.loads(body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", got
    server.shutdown()
    server.server_close()


def parse(envelope):
    from email import message_from_bytes, policy

    return message_from_bytes(envelope.content, policy=policy.default)


def alarm(code, severity="critical"):
    return {"id": code, "code": code, "severity": severity, "message": f"{code} happened"}


async def test_critical_alarms_and_offline_halls_reach_mail_and_webhook(tmp_path, fleet, smtp, hook, monkeypatch):
    ctl, mails = smtp
    url, posts = hook
    mails.clear(), posts.clear()
    monkeypatch.setenv("EMS_TEST_HOOK_TOKEN", TOKEN)
    spec = NotifySpec(webhook=WebhookSpec(url=url, token_env="EMS_TEST_HOOK_TOKEN"),
                      email=EmailSpec(host="127.0.0.1", port=ctl.port, security="none", from_addr="ems@example.jp",
                                      to=["duty@example.jp"]), min_interval_s=600, max_per_hour=30)
    now = [1000.0]
    notifier = Notifier(spec, tmp_path, monotonic=lambda: now[0])
    env = make_env(tmp_path / "central", fleet)
    feed_fleet(env.store, fleet)
    feed(env.store, "hall-03", "state", state_message("hall-03", alarms=[alarm("old_problem")]))
    assert await notifier.check_once(env.service) == 0  # learns what is already there
    # A critical alarm (and a warning, which is not sent)
    feed(env.store, "hall-01", "state", state_message("hall-01", alarms=[alarm("battery_fault"),
                                                                          alarm("minor", "warning")]))
    assert await notifier.check_once(env.service) == 1
    assert len(mails) == 1 and len(posts) == 1
    mail = mails[0]
    assert mail.rcpt_tos == ["duty@example.jp"] and mail.mail_from == "ems@example.jp"
    msg = parse(mail)
    assert "battery_fault" in msg.get_content() and "Critical alarm" in msg.get_content()
    assert "重大警報: 湖山公民館" in msg.get_content()
    assert msg["Subject"] == "[Shelter EMS] 重大警報 湖山公民館 Koyama"
    auth, body = posts[0]
    assert auth == f"Bearer {TOKEN}" and body["kind"] == "critical_alarm" and body["site"] == "hall-01"
    assert body["details"]["code"] == "battery_fault" and "重大警報" in body["text_ja"]
    # A hall goes offline: one message; the same kind again for the same hall within 600 s is held back.
    feed(env.store, "hall-02", "online", {"online": False})
    assert await notifier.check_once(env.service) == 1
    assert posts[-1][1]["kind"] == "hall_offline" and "通信断" in posts[-1][1]["text_ja"]
    feed(env.store, "hall-01", "state", state_message("hall-01", alarms=[alarm("battery_fault"), alarm("second")]))
    assert await notifier.check_once(env.service) == 0 and notifier.status["suppressed"] == 1
    now[0] += 601
    feed(env.store, "hall-01", "state", state_message("hall-01", alarms=[alarm("third")]))
    assert await notifier.check_once(env.service) == 1
    assert posts[-1][1]["details"]["code"] == "third" and posts[-1][1]["suppressed"] == 1
    assert "このほか 1 件の通知" in parse(mails[-1]).get_content()
    # Back online is news too.
    feed(env.store, "hall-02", "online", {"online": True})
    feed(env.store, "hall-02", "state", state_message("hall-02"))
    assert await notifier.check_once(env.service) == 1 and posts[-1][1]["kind"] == "hall_online"
    assert len(mails) == len(posts) == 4 and notifier.status["failed"] == 0


async def test_a_failing_channel_does_not_stop_the_other(tmp_path, fleet, smtp):
    ctl, mails = smtp
    mails.clear()
    spec = NotifySpec(webhook=WebhookSpec(url=f"http://127.0.0.1:{free_port()}/nobody", timeout_s=2),
                      email=EmailSpec(host="127.0.0.1", port=ctl.port, security="none", from_addr="ems@example.jp",
                                      to=["duty@example.jp"]))
    notifier = Notifier(spec, tmp_path)
    env = make_env(tmp_path / "central", fleet)
    feed_fleet(env.store, fleet)
    await notifier.check_once(env.service)
    feed(env.store, "hall-05", "state", state_message("hall-05", alarms=[alarm("inverter_trip")]))
    assert await notifier.check_once(env.service) == 0
    assert len(mails) == 1 and notifier.status["failed"] == 1
    assert "webhook http://127.0.0.1" in notifier.status["last_error"]


def test_rate_limit_per_hour():
    r = RateLimit(min_interval_s=0, max_per_hour=3)
    assert [r.allow("hall_offline", f"h{i}", 10.0 * i) for i in range(5)] == [True, True, True, False, False]
    assert r.allow("hall_offline", "h9", 3601.0) and r.suppressed == 2


def write(tmp_path: Path, notify: str) -> Path:
    (tmp_path / "fleet.yaml").write_text((Path(__file__).resolve().parents[2] / "config" / "fleet.yaml").read_text())
    p = tmp_path / "central.yaml"
    p.write_text("fleet: fleet.yaml\nnotify:\n" + notify)
    return p


@pytest.mark.parametrize("notify, problem", [
    ("  email: {host: smtp.example.jp, from_addr: ems@example.jp, to: [nobody]}\n", "notify.email.to"),
    ("  email: {host: smtp.example.jp, security: none, username: u, password_env: X, from_addr: a@b.jp, to: [c@d.jp]}\n",
     "clear text"),
    ("  webhook: {url: 'ftp://x'}\n", "notify.webhook.url"),
    ("  webhook: {url: 'https://hooks.example.jp/x', token_env: EMS_NO_SUCH_VAR_42}\n", "notify.webhook.token_env"),
    ("  max_per_hour: 0\n", "notify.max_per_hour"),
])
def test_bad_notify_config_is_refused_naming_the_field(tmp_path, notify, problem):
    with pytest.raises(ConfigError) as exc:
        load_central_config(write(tmp_path, notify))
    assert problem in str(exc.value)


def test_the_dashboard_hears_of_failing_notifications(api, env, tmp_path):
    spec = NotifySpec(webhook=WebhookSpec(url=f"http://127.0.0.1:{free_port()}/nobody", timeout_s=2))
    env.service.notifier = Notifier(spec, tmp_path)
    c = api.login("vera")
    assert c.get("/api/fleet").json()["notify"]["last_error"] is None
    env.service.notifier.channels[0].send = lambda event: (_ for _ in ()).throw(OSError("webhook x: refused"))
    from datetime import datetime, timezone

    from ems.central.notify import Event
    env.service.notifier.deliver(Event("hall_offline", "hall-01", "n", datetime.now(timezone.utc), "ja", "en"))
    status = c.get("/api/fleet").json()["notify"]
    assert status["failed"] == 1 and status["last_error"] == "webhook x: refused"
