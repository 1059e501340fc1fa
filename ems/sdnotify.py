"""systemd's service notification protocol (``sd_notify``), without libsystemd.

A service with ``Type=notify`` tells systemd it is ready (``READY=1``),
that it is stopping (``STOPPING=1``), a status line (``STATUS=…``) and,
with ``WatchdogSec=``, that it is still alive (``WATCHDOG=1``).  The
protocol is one datagram of ``KEY=VALUE`` lines to the AF_UNIX socket named
in ``$NOTIFY_SOCKET``; a name starting with ``@`` is in the abstract
namespace (the ``@`` stands for a leading NUL byte).  See sd_notify(3).

``$WATCHDOG_USEC`` is the watchdog period [µs]; ``$WATCHDOG_PID``, when
set, names the process it is meant for.  Pinging at half the period is
what sd_watchdog_enabled(3) recommends.

Outside systemd (no ``$NOTIFY_SOCKET``) every method does nothing, so the
gateway and the central service call it unconditionally::

    notifier = Notifier()
    ... start up ...
    notifier.ready()
    while running:                     # every notifier.watchdog_interval_s [s] when not None
        notifier.watchdog()
    notifier.stopping()

A send error is logged once and never raised: a service must not fail
because its supervisor cannot be told something.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Mapping

log = logging.getLogger(__name__)

#: Longest STATUS= text sent [characters]; systemd shows one line.
MAX_STATUS_CHARS = 1000


class Notifier:
    """Sends notifications to systemd; a no-op when ``$NOTIFY_SOCKET`` is unset.

    environ: the environment to read (default ``os.environ``, read once
    here); pid: this process's id (default ``os.getpid()``), compared with
    ``$WATCHDOG_PID``.
    """

    def __init__(self, environ: Mapping[str, str] | None = None, pid: int | None = None):
        env = os.environ if environ is None else environ
        self._address = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = _watchdog_usec(env, os.getpid() if pid is None else pid)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._failed_once = False

    @property
    def enabled(self) -> bool:
        """True when running under systemd with a notify socket."""
        return self._address is not None

    @property
    def watchdog_interval_s(self) -> float | None:
        """How often to call :meth:`watchdog` [s]: half of ``$WATCHDOG_USEC``; None when no watchdog is
        asked for this process (unset, zero, not a number, or ``$WATCHDOG_PID`` names another process)."""
        if self._address is None or self._watchdog_usec is None:
            return None
        return self._watchdog_usec / 2e6

    # -- the messages ------------------------------------------------------------------
    def ready(self, status: str | None = None) -> bool:
        """Start-up is complete (``READY=1``), optionally with a status line."""
        return self.notify("READY=1", *(() if status is None else (_status(status),)))

    def stopping(self, status: str | None = None) -> bool:
        """The service is shutting down (``STOPPING=1``)."""
        return self.notify("STOPPING=1", *(() if status is None else (_status(status),)))

    def status(self, text: str) -> bool:
        """A one-line status shown by ``systemctl status`` (``STATUS=…``)."""
        return self.notify(_status(text))

    def watchdog(self) -> bool:
        """Still alive (``WATCHDOG=1``); sent only when a watchdog is asked for this process."""
        if self.watchdog_interval_s is None:
            return False
        return self.notify("WATCHDOG=1")

    def extend_timeout(self, seconds: float) -> bool:
        """Ask for ``seconds`` [s] more to start or stop (``EXTEND_TIMEOUT_USEC=``)."""
        return self.notify(f"EXTEND_TIMEOUT_USEC={max(0, int(seconds * 1e6))}")

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=VALUE`` fields in one datagram; True when sent, False when disabled or failed."""
        if self._address is None or not fields:
            return False
        data = "\n".join(fields).encode("utf-8")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(data, self._address)
                return True
            except OSError as exc:
                self._close_locked()
                if not self._failed_once:
                    self._failed_once = True
                    log.warning("cannot notify systemd at %s: %s (further failures are not logged)",
                                _printable(self._address), exc)
                return False

    def close(self) -> None:
        """Close the socket (a later notification opens it again)."""
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock = None


def _socket_address(name: str) -> str | bytes | None:
    """The AF_UNIX address for ``$NOTIFY_SOCKET``: a path, abstract (``@`` → NUL) or None."""
    if not name:
        return None
    if name.startswith("@"):
        return b"\0" + name[1:].encode("utf-8")
    if name.startswith("/"):
        return name
    log.warning("NOTIFY_SOCKET=%r is not a socket path or abstract name (vsock is not supported): "
                "systemd is not notified", name)
    return None


def _watchdog_usec(env: Mapping[str, str], pid: int) -> int | None:
    """``$WATCHDOG_USEC`` when it is meant for ``pid``, else None."""
    owner = env.get("WATCHDOG_PID")
    if owner:
        try:
            if int(owner) != pid:
                return None
        except ValueError:
            return None
    try:
        usec = int(env.get("WATCHDOG_USEC", ""))
    except ValueError:
        return None
    return usec if usec > 0 else None


def _status(text: str) -> str:
    one_line = " ".join(str(text).split())
    return f"STATUS={one_line[:MAX_STATUS_CHARS]}"


def _printable(address: str | bytes) -> str:
    return "@" + address[1:].decode("utf-8", "replace") if isinstance(address, bytes) else address
