"""Login rate limiting, in memory.

Three counters, each with a sliding window of ``window_s`` [s]:

* the (user name, address) pair: ``max_failures`` wrong passwords lock that
  pair for ``lockout_s`` [s] — the everyday case of someone guessing;
* the address alone: ``max_failures × 4`` failures over any names lock the
  address (password spraying from one host);
* the user name alone: ``max_failures × 4`` failures from any addresses lock
  the name (guessing from many hosts).  This lets an attacker lock a user
  out for ``lockout_s``, a price worth paying against distributed guessing.

A success clears the pair's count only.  The tables are pruned and capped so
that a flood of made-up names cannot fill memory.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Callable

_Key = tuple[str, str]


class LoginLimiter:
    """Counts failed logins and tells how long a (user name, address) must wait [s]. Thread-safe."""

    def __init__(self, max_failures: int = 5, window_s: float = 300, lockout_s: float = 300,
                 clock: Callable[[], float] = time.monotonic, spread_factor: int = 4,
                 max_keys: int = 100_000) -> None:
        if max_failures < 1 or window_s <= 0 or lockout_s <= 0 or spread_factor < 1:
            raise ValueError("max_failures >= 1, window_s > 0, lockout_s > 0 [s], spread_factor >= 1 required")
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.spread_limit = max_failures * spread_factor
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._failures: OrderedDict[_Key, deque[float]] = OrderedDict()
        self._locked_until: dict[_Key, float] = {}

    @staticmethod
    def _keys(username: str, ip: str) -> list[tuple[_Key, str]]:
        name = (username or "").strip().lower()[:64]
        addr = (ip or "?")[:64]
        return [(("pair", f"{name}\x00{addr}"), "pair"), (("ip", addr), "spread"), (("user", name), "spread")]

    def check(self, username: str, ip: str) -> float | None:
        """Seconds [s] to wait before another attempt is allowed, or None when it may go ahead."""
        now = self._clock()
        wait = 0.0
        with self._lock:
            for key, _ in self._keys(username, ip):
                until = self._locked_until.get(key)
                if until is None:
                    continue
                if until <= now:
                    del self._locked_until[key]
                else:
                    wait = max(wait, until - now)
        return wait if wait > 0 else None

    def failure(self, username: str, ip: str) -> None:
        """Record a failed login (wrong password, unknown or disabled user)."""
        now = self._clock()
        with self._lock:
            for key, kind in self._keys(username, ip):
                times = self._failures.pop(key, None) or deque()
                self._failures[key] = times  # move to the end: most recently used
                while times and times[0] <= now - self.window_s:
                    times.popleft()
                times.append(now)
                limit = self.max_failures if kind == "pair" else self.spread_limit
                if len(times) >= limit:
                    self._locked_until[key] = now + self.lockout_s
                    times.clear()
            self._prune(now)

    def success(self, username: str, ip: str) -> None:
        """Record a good login: forget the pair's failures."""
        with self._lock:
            key = self._keys(username, ip)[0][0]
            self._failures.pop(key, None)
            self._locked_until.pop(key, None)

    def _prune(self, now: float) -> None:
        while len(self._failures) > self._max_keys:
            self._failures.popitem(last=False)
        if len(self._locked_until) > self._max_keys:
            for key in [k for k, t in self._locked_until.items() if t <= now]:
                del self._locked_until[key]
