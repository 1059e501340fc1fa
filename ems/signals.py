"""SIGTERM and SIGINT as a clean stop, for every long-running ``ems`` process (gateway, simulator, demo)."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from typing import Iterator

#: What systemd (SIGTERM) and Ctrl-C (SIGINT) send: both stop cleanly, exit status 0.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT set ``stop`` (instead of killing the process); call on the event loop."""
    loop = asyncio.get_running_loop()
    for sig in STOP_SIGNALS:
        loop.add_signal_handler(sig, stop.set)
    try:
        yield
    finally:
        for sig in STOP_SIGNALS:
            loop.remove_signal_handler(sig)
