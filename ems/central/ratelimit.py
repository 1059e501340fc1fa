"""Login rate limiting, in memory: lock the ACCOUNT with backoff, slow an address, never lock an address.

Behind the reverse proxy the deployment recommends, every user may reach us
from one address; a lock on an address would let anybody who types 20
wrong passwords lock out all staff.  So:

* account: ``max_failures`` failed logins in a row for a user name (from any
  address) lock that name for ``lockout_s`` [s]; every further failure (it
  can only come after the lock ended) locks it again for twice as long as the
  last time, up to ``max_lockout_s`` [s].  A correct login clears the count,
  and so does quiet: no failure for ``max_lockout_s`` after the last lock
  ended (or after the last failure).  Unknown names are counted the same
  way, so a lock does not tell which names exist.  Other accounts are not
  touched: a municipal user logs in while an attacker hammers another name
  from the same address.
* address: ``address_max_failures`` failures over any names within
  ``window_s`` [s] from one address make it *throttled*: its failed logins
  are answered only after ``throttle_delay_s`` [s] (the API awaits that
  without holding a worker thread).  A guesser from that address is slowed;
  a correct login from it, of any account that is not locked, goes through
  at once.  An address is never locked.

Which address a request comes from is :class:`TrustedProxies`' business:
``X-Forwarded-For`` counts only when the peer is a configured proxy.

The tables are pruned and capped so that a flood of made-up names cannot
fill memory, and the pruning drops locked accounts last.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Callable, Iterable, Sequence

_IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

#: Longest key kept for a name or an address (longer input is cut; names are limited to 64 by the API).
_KEY_CHARS = 64


@dataclass
class _Account:
    failures: int = 0        # failed logins in a row
    last: float = 0.0        # time of the last failure [s, clock]
    locked_until: float = 0.0
    refused: int = 0         # attempts refused during the current lock


@dataclass
class _Address:
    times: deque = field(default_factory=deque)  # recent failure times [s, clock], at most the limit
    throttled: bool = False


@dataclass(frozen=True)
class FailureOutcome:
    """What one failed login did: the account's count, a lock it started, the address's throttle."""

    failures: int                 # failed logins in a row of the account
    locked_s: float | None        # the account is locked from now on for this long [s]; None: not locked
    throttled: bool               # the address is over its failure rate
    throttle_started: bool        # this failure put the address over (audit it once)
    delay_s: float                # answer this failure this late [s] (0 unless throttled)


class LoginLimiter:
    """Counts failed logins; tells how long an account must wait [s] and how late to answer an address. Thread-safe."""

    def __init__(self, max_failures: int = 5, window_s: float = 300, lockout_s: float = 300,
                 clock: Callable[[], float] = time.monotonic, spread_factor: int = 4,
                 max_keys: int = 100_000, max_lockout_s: float | None = None,
                 address_max_failures: int | None = None, throttle_delay_s: float = 2.0,
                 trusted_proxies: Iterable[str] = ()) -> None:
        max_lockout_s = max(3600.0, lockout_s) if max_lockout_s is None else max_lockout_s
        address_max_failures = max_failures * spread_factor if address_max_failures is None else address_max_failures
        if (max_failures < 1 or window_s <= 0 or lockout_s <= 0 or spread_factor < 1 or max_lockout_s < lockout_s
                or address_max_failures < 1 or throttle_delay_s < 0 or max_keys < 1):
            raise ValueError("max_failures >= 1, window_s > 0, lockout_s > 0, max_lockout_s >= lockout_s [s], "
                             "spread_factor >= 1, address_max_failures >= 1, throttle_delay_s >= 0 [s], "
                             "max_keys >= 1 required")
        self.max_failures = max_failures
        self.window_s = window_s
        self.lockout_s = lockout_s
        self.max_lockout_s = max_lockout_s
        self.address_limit = address_max_failures
        self.throttle_delay_s = throttle_delay_s
        #: Peers whose X-Forwarded-For names the client (the address this limiter counts must be the client's).
        self.proxies = TrustedProxies(trusted_proxies)
        self._clock = clock
        self._max_keys = max_keys
        self._lock = threading.Lock()
        self._accounts: OrderedDict[str, _Account] = OrderedDict()
        self._addresses: OrderedDict[str, _Address] = OrderedDict()

    @staticmethod
    def _name(username: str) -> str:
        return (username or "").strip().lower()[:_KEY_CHARS]

    @staticmethod
    def _addr(ip: str | None) -> str:
        return (ip or "?")[:_KEY_CHARS]

    def lock_s(self, failures: int) -> float:
        """Length of the lock [s] that the ``failures``-th failure in a row starts (0: none)."""
        extra = failures - self.max_failures
        if extra < 0:
            return 0.0
        return min(self.lockout_s * 2.0 ** min(extra, 64), self.max_lockout_s)

    def check(self, username: str, ip: str | None = None) -> float | None:
        """Seconds [s] the account must still wait, or None when its password may be checked.

        Only the account decides: an address (``ip``) is never locked.
        """
        now = self._clock()
        with self._lock:
            acct = self._accounts.get(self._name(username))
            if acct is None or acct.locked_until <= now:
                return None
            acct.refused += 1
            return acct.locked_until - now

    def refused_before(self, username: str) -> int:
        """Attempts refused so far during the account's current lock (1 after the first refusal)."""
        with self._lock:
            acct = self._accounts.get(self._name(username))
            return acct.refused if acct is not None else 0

    def failure(self, username: str, ip: str | None = None) -> FailureOutcome:
        """Record a failed login (wrong password, unknown or disabled user) of ``username`` from ``ip``."""
        now = self._clock()
        name, addr = self._name(username), self._addr(ip)
        with self._lock:
            acct = self._accounts.pop(name, None) or _Account()
            self._accounts[name] = acct  # most recently used last
            if acct.failures and now - max(acct.last, acct.locked_until) >= self.max_lockout_s:
                acct.failures = 0  # quiet long enough: start afresh
            acct.failures += 1
            acct.last = now
            lock = self.lock_s(acct.failures)
            if lock > 0:
                acct.locked_until = max(acct.locked_until, now + lock)
                acct.refused = 0

            place = self._addresses.pop(addr, None) or _Address(deque(maxlen=self.address_limit))
            self._addresses[addr] = place
            times = place.times
            while times and times[0] <= now - self.window_s:
                times.popleft()
            times.append(now)
            throttled = len(times) >= self.address_limit
            started = throttled and not place.throttled
            place.throttled = throttled
            self._prune(now)
        return FailureOutcome(acct.failures, lock if lock > 0 else None, throttled, started,
                              self.throttle_delay_s if throttled else 0.0)

    def success(self, username: str, ip: str | None = None) -> None:
        """Record a good login: the account's failures are forgotten (the address's are not)."""
        with self._lock:
            self._accounts.pop(self._name(username), None)

    def _prune(self, now: float) -> None:
        """Keep each table under ``max_keys``: down to 90 % at once, so the scan is rare; locked accounts last."""
        if len(self._accounts) > self._max_keys:
            excess = len(self._accounts) - int(self._max_keys * 0.9)
            for name in list(self._accounts):  # oldest first
                if excess <= 0:
                    break
                if self._accounts[name].locked_until <= now:
                    del self._accounts[name]
                    excess -= 1
            while excess > 0:
                self._accounts.popitem(last=False)
                excess -= 1
        while len(self._addresses) > self._max_keys:
            self._addresses.popitem(last=False)


def parse_address(text: str) -> _IpAddress | None:
    """An IP address from ``text`` (``1.2.3.4``, ``1.2.3.4:5678``, ``::1``, ``[::1]:80``), IPv4-mapped
    IPv6 as IPv4; None when it is not an address (e.g. ``unknown``, a name, garbage)."""
    text = (text or "").strip()
    if text.startswith("["):
        host, sep, _ = text[1:].partition("]")
        text = host if sep else ""
    elif text.count(":") == 1:  # IPv4 with a port
        text = text.partition(":")[0]
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class TrustedProxies:
    """The peers (addresses or networks) whose ``X-Forwarded-For`` header names the client.

    The client is the right-most address in ``X-Forwarded-For`` that is not
    a trusted proxy: everything left of it was written by whoever sent the
    request and may be forged.  From any other peer the header is ignored.
    """

    def __init__(self, entries: Iterable[str] = ()) -> None:
        nets = []
        for entry in entries:
            try:
                nets.append(ipaddress.ip_network(str(entry).strip(), strict=False))
            except ValueError:
                raise ValueError(f"{entry!r} is not an IP address or network (e.g. 127.0.0.1, 10.0.0.0/8)") from None
        self.networks = tuple(nets)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def trusts(self, address: _IpAddress | str | None) -> bool:
        """Whether ``address`` is one of the trusted proxies."""
        if isinstance(address, str) or address is None:
            address = parse_address(address or "")
        if address is None:
            return False
        return any(address.version == net.version and address in net for net in self.networks)

    def client_address(self, peer: str, forwarded_for: Sequence[str] = ()) -> str:
        """The client's address: ``peer`` itself unless it is a trusted proxy; then the right-most untrusted
        address of the ``X-Forwarded-For`` values (all headers in order).  When an entry there is not an
        address, the proxy that passed it on is the best we know; when every entry is trusted, the left-most."""
        peer_addr = parse_address(peer)
        if peer_addr is None or not self.trusts(peer_addr):
            return str(peer_addr) if peer_addr is not None else peer
        hops = [part for value in forwarded_for for part in value.split(",") if part.strip()]
        nearest = peer_addr
        for hop in reversed(hops):
            addr = parse_address(hop)
            if addr is None:
                return str(nearest)
            if not self.trusts(addr):
                return str(addr)
            nearest = addr
        return str(nearest)
