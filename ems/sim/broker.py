"""The MQTT broker of a :class:`ems.sim.runtime.FleetRuntime`: Mosquitto when installed, else an embedded one.

Both listen on 127.0.0.1 only, know exactly the fleet's users (``central``
and ``edge-<site>``, random passwords made for this run, never defaults) and
apply the production ACL of :mod:`telemetry.mosquitto_acl`: a gateway writes
only under its own site and reads only its own commands.

* :class:`MosquittoBroker`: ``/usr/sbin/mosquitto`` as a child process with its
  own config, hashed password file (mode 0600), ACL file and persistence
  (saved every second, so even a SIGKILL keeps the gateways' subscriptions
  and queued commands, as a production broker with a short autosave would).
* :class:`EmbeddedBroker`: amqtt in its own thread and event loop, with an
  auth plugin (the same users) and a topic plugin (the same ACL rules).
  No persistence: a restart forgets sessions and retained messages.

``start()`` / ``kill()`` / ``stop()`` / ``start()`` again keep the port, so
clients reconnect to the same address.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, Sequence

from telemetry.mosquitto_acl import acl_text, gateway_username, password_file_text

log = logging.getLogger(__name__)

MOSQUITTO = "/usr/sbin/mosquitto"
CENTRAL_USER = "central"


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1", timeout_s: float = 0.2) -> bool:
    """True when something accepts TCP connections on host:port."""
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def fleet_passwords(site_ids: Sequence[str]) -> dict[str, str]:
    """A fresh random password for ``central`` and every gateway user (for one run only)."""
    users = [CENTRAL_USER, *(gateway_username(s) for s in site_ids)]
    return {u: secrets.token_urlsafe(24) for u in users}


class Broker(Protocol):
    """What the runtime needs of a broker."""

    kind: str
    port: int
    passwords: dict[str, str]

    def start(self) -> None: ...

    def stop(self) -> None: ...

    def kill(self) -> None: ...

    @property
    def running(self) -> bool: ...


class MosquittoBroker:
    """Mosquitto 2 as a child process in ``workdir`` (config, passwd, acl, persistence, log)."""

    kind = "mosquitto"

    def __init__(self, workdir: Path, site_ids: Sequence[str], passwords: dict[str, str] | None = None,
                 port: int | None = None, binary: str = MOSQUITTO, start_timeout_s: float = 30.0):
        self.workdir = Path(workdir)
        self.site_ids = list(site_ids)
        self.passwords = passwords or fleet_passwords(self.site_ids)
        self.port = port or free_port()
        self.binary = binary
        self.start_timeout_s = start_timeout_s
        self.proc: subprocess.Popen | None = None
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self._write_config()

    def _write_config(self) -> None:
        import pwd

        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "data").mkdir(exist_ok=True)
        passwd = self.workdir / "passwd"
        fd = os.open(passwd, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(password_file_text(self.passwords, iterations=101))
        acl = self.workdir / "acl"
        acl.write_text(acl_text(self.site_ids, central=(CENTRAL_USER,)), encoding="utf-8")
        lines = [
            # Started as root, Mosquitto would drop to user "mosquitto", who cannot read this folder.
            f"user {pwd.getpwuid(os.getuid()).pw_name}",
            "per_listener_settings false",
            "allow_anonymous false",
            f"password_file {passwd}",
            f"acl_file {acl}",
            "persistence true",
            f"persistence_location {self.workdir / 'data'}/",
            "autosave_interval 1",  # sessions survive a SIGKILL (broker_down in the drills)
            "log_dest stdout",
            "log_type error", "log_type warning", "log_type notice",
            "max_queued_messages 100000",
            "set_tcp_nodelay true",
            f"listener {self.port} 127.0.0.1",
        ]
        self.config_path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        """Start (or restart) Mosquitto and wait until it accepts connections; RuntimeError if it does not."""
        if self.running:
            return
        with open(self.log_path, "ab") as out:
            self.proc = subprocess.Popen([self.binary, "-c", str(self.config_path)], stdout=out,
                                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
                                         start_new_session=True)
        deadline = time.monotonic() + self.start_timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if port_open(self.port):
                return
            time.sleep(0.05)
        self._signal(signal.SIGKILL)
        tail = self.log_path.read_text(errors="replace")[-2000:] if self.log_path.exists() else ""
        raise RuntimeError(f"mosquitto did not start on 127.0.0.1:{self.port}; log:\n{tail}")

    def stop(self) -> None:
        """Clean shutdown (SIGTERM; Mosquitto saves its persistence file)."""
        self._signal(signal.SIGTERM)

    def kill(self) -> None:
        """SIGKILL: the broker dies at once, as in a crash or power cut."""
        self._signal(signal.SIGKILL)

    def _signal(self, sig: int) -> None:
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=15)


# -- embedded broker (amqtt) -------------------------------------------------------------------

@dataclass(frozen=True)
class AclRules:
    """Per user: topic filters it may write (publish) and read (subscribe / receive)."""

    write: dict[str, list[str]] = field(default_factory=dict)
    read: dict[str, list[str]] = field(default_factory=dict)

    @classmethod
    def from_acl_text(cls, text: str) -> "AclRules":
        """Parse the Mosquitto ACL text of :func:`telemetry.mosquitto_acl.acl_text` (user/topic lines)."""
        rules = cls()
        user = None
        for raw in text.splitlines():
            parts = raw.split()
            if len(parts) == 2 and parts[0] == "user":
                user = parts[1]
            elif len(parts) == 3 and parts[0] == "topic" and user is not None:
                if parts[1] in ("write", "readwrite"):
                    rules.write.setdefault(user, []).append(parts[2])
                if parts[1] in ("read", "readwrite"):
                    rules.read.setdefault(user, []).append(parts[2])
        return rules

    def allows(self, user: str | None, topic: str, write: bool) -> bool:
        """True when ``user`` may write (publish to) or read (subscribe to, receive) ``topic``."""
        patterns = (self.write if write else self.read).get(user or "", [])
        return any(filter_covers(p, topic) for p in patterns)


def filter_covers(allowed: str, topic: str) -> bool:
    """True when the ACL filter ``allowed`` covers ``topic`` (a topic or a subscription filter).

    Level by level: ``#`` covers the rest, ``+`` covers one level (but not a
    ``#`` asked for in its place), other levels must be equal.
    """
    a, t = allowed.split("/"), topic.split("/")
    for i, level in enumerate(a):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level == "+":
            if t[i] == "#":
                return False
            continue
        if level != t[i]:
            return False
    return len(a) == len(t)


def _auth_plugin_class():
    from amqtt.plugins.base import BaseAuthPlugin

    class FleetAuthPlugin(BaseAuthPlugin):
        """Only the run's users with their passwords (constant-time compare); no anonymous clients."""

        @dataclass
        class Config:
            passwords: dict = field(default_factory=dict)

        async def authenticate(self, *, session: Any) -> bool:
            expected = self.config.passwords.get(session.username or "")
            given = session.password or ""
            if isinstance(given, bytes):
                given = given.decode("utf-8", "replace")
            return expected is not None and hmac.compare_digest(expected.encode(), given.encode())

    return FleetAuthPlugin


def _topic_plugin_class():
    from amqtt.contexts import Action
    from amqtt.plugins.base import BaseTopicPlugin

    class FleetTopicPlugin(BaseTopicPlugin):
        """The fleet ACL (see :class:`AclRules`) for publish, subscribe and delivery."""

        @dataclass
        class Config:
            rules: Any = None

        async def topic_filtering(self, *, session: Any = None, topic: str | None = None,
                                  action: Any = None) -> bool:
            if topic is None or session is None:
                return False
            if topic.startswith("$SYS"):
                return False
            return self.config.rules.allows(session.username, topic, write=action == Action.PUBLISH)

    return FleetTopicPlugin


class EmbeddedBroker:
    """amqtt on 127.0.0.1:``port`` in a thread of its own (its event loop never competes with the daemons')."""

    kind = "embedded"

    def __init__(self, site_ids: Sequence[str], passwords: dict[str, str] | None = None, port: int | None = None):
        self.site_ids = list(site_ids)
        self.passwords = passwords or fleet_passwords(self.site_ids)
        self.port = port or free_port()
        self.rules = AclRules.from_acl_text(acl_text(self.site_ids, central=(CENTRAL_USER,)))
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._broker: Any = None
        self._stop: asyncio.Event | None = None

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _config(self) -> dict[str, Any]:
        auth, topic = _auth_plugin_class(), _topic_plugin_class()
        # amqtt loads plugins by dotted name; register ours under this module's name.
        globals()["FleetAuthPlugin"], globals()["FleetTopicPlugin"] = auth, topic
        return {
            "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{self.port}"}},
            "plugins": {
                f"{__name__}.FleetAuthPlugin": {"passwords": dict(self.passwords)},
                f"{__name__}.FleetTopicPlugin": {"rules": self.rules},
            },
        }

    def start(self, timeout_s: float = 30.0) -> None:
        """Start the broker thread and wait until it accepts connections; RuntimeError if it does not."""
        if self.running:
            return
        ready = threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(ready))
            except BaseException as exc:  # reported to start() below
                errors.append(exc)
                ready.set()
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="embedded-mqtt", daemon=True)
        self._thread.start()
        if not ready.wait(timeout_s) or errors:
            raise RuntimeError(f"embedded MQTT broker did not start on 127.0.0.1:{self.port}: "
                               f"{errors[0] if errors else 'timeout'}")

    async def _serve(self, ready: threading.Event) -> None:
        from amqtt.broker import Broker as AmqttBroker

        self._stop = asyncio.Event()
        broker = AmqttBroker(self._config())
        await broker.start()
        self._broker = broker
        ready.set()
        await self._stop.wait()
        await broker.shutdown()

    def stop(self) -> None:
        """Shut the broker down (clients see the connection drop) and end its thread."""
        loop, stop, thread = self._loop, self._stop, self._thread
        if thread is None or loop is None or stop is None:
            return
        try:
            loop.call_soon_threadsafe(stop.set)
        except RuntimeError:  # loop already closed
            pass
        thread.join(15)
        self._thread = None

    def kill(self) -> None:
        """Same as :meth:`stop` (an in-process broker cannot be killed harder)."""
        self.stop()


def make_broker(kind: str, workdir: Path, site_ids: Sequence[str]) -> Broker:
    """``auto``: Mosquitto when ``/usr/sbin/mosquitto`` (or ``mosquitto`` on PATH) exists, else embedded."""
    if kind not in ("auto", "mosquitto", "embedded"):
        raise ValueError(f"broker must be auto, mosquitto or embedded, got {kind!r}")
    binary = MOSQUITTO if os.path.exists(MOSQUITTO) else shutil.which("mosquitto")
    if kind == "mosquitto" and binary is None:
        raise RuntimeError("broker 'mosquitto' asked for but /usr/sbin/mosquitto is not installed")
    if kind in ("auto", "mosquitto") and binary is not None:
        return MosquittoBroker(Path(workdir) / "mqtt", site_ids, binary=binary)
    return EmbeddedBroker(site_ids)
