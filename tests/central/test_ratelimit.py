"""LoginLimiter: lockout per account with backoff, a slow-down (never a lock) per address, memory cap;
TrustedProxies: who the client is behind a proxy."""

import pytest

from ems.central.ratelimit import LoginLimiter, TrustedProxies


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def lim(clock):
    return LoginLimiter(max_failures=5, window_s=300, lockout_s=300, max_lockout_s=3600, clock=clock)


def test_fifth_failure_locks_the_account_from_every_address(lim, clock):
    for i in range(4):
        assert lim.check("alice", "10.0.0.1") is None
        assert lim.failure("alice", "10.0.0.1").locked_s is None
    out = lim.failure("alice", "10.0.0.1")
    assert out.locked_s == 300 and out.failures == 5
    assert lim.check("alice", "10.0.0.1") == pytest.approx(300)
    clock.t += 120
    assert lim.check("alice", "10.0.0.1") == pytest.approx(180)
    assert lim.check("alice", "10.0.0.2") == pytest.approx(180)  # the account is locked, wherever one comes from
    assert lim.check("bob", "10.0.0.1") is None  # other name from the same address: not locked
    clock.t += 180
    assert lim.check("alice", "10.0.0.1") is None


def test_each_further_failure_doubles_the_lock_up_to_the_cap(lim, clock):
    for _ in range(5):
        lim.failure("alice", "ip")
    locks = []
    for _ in range(6):
        clock.t += lim.check("alice", "ip")  # wait the lock out, then fail again
        assert lim.check("alice", "ip") is None
        locks.append(lim.failure("alice", "ip").locked_s)
    assert locks == [600, 1200, 2400, 3600, 3600, 3600]


def test_long_quiet_forgets_the_failures_and_success_clears_them(lim, clock):
    for _ in range(5):
        lim.failure("alice", "ip")
    clock.t += 300 + 3600  # the lock ended an hour ago
    assert lim.failure("alice", "ip").failures == 1
    for _ in range(3):
        lim.failure("alice", "ip")
    lim.success("alice", "ip")
    assert lim.failure("alice", "ip").failures == 1


def test_names_are_compared_case_insensitively(lim):
    for name in ("Alice", "ALICE", "alice ", "alice", "aLiCe"):
        lim.failure(name, "ip")
    assert lim.check("alice", "ip") is not None


def test_an_address_is_slowed_but_never_locked(lim):
    outs = [lim.failure(f"user{i}", "6.6.6.6") for i in range(20)]
    assert [o.throttled for o in outs] == [False] * 19 + [True]
    assert [o.throttle_started for o in outs].count(True) == 1
    assert outs[-1].delay_s == 2.0 and outs[0].delay_s == 0
    assert lim.check("fresh-name", "6.6.6.6") is None  # nobody is locked out by the address
    assert lim.failure("other", "7.7.7.7").delay_s == 0


def test_address_failures_outside_the_window_do_not_add_up(lim, clock):
    for i in range(40):
        assert not lim.failure(f"user{i}", "ip").throttled
        clock.t += 16  # 19 failures in any 300 s window
    for i in range(20):
        out = lim.failure(f"x{i}", "ip")
    assert out.throttled


def test_guessing_one_name_from_many_addresses_locks_the_name(lim):
    for i in range(5):
        lim.failure("alice", f"10.0.{i}.1")
    assert lim.check("alice", "192.168.1.1") is not None
    assert lim.check("bob", "192.168.1.1") is None


def test_memory_stays_bounded_and_locked_accounts_are_dropped_last(clock):
    lim = LoginLimiter(max_failures=2, clock=clock, max_keys=50)
    lim.failure("victim", "ip")
    lim.failure("victim", "ip")
    for i in range(2000):
        lim.failure(f"name{i}", f"ip{i}")
    assert len(lim._accounts) <= 50 and len(lim._addresses) <= 50
    assert lim.check("victim") is not None  # a flood of made-up names does not unlock an account


@pytest.mark.parametrize("kw", [{"max_failures": 0}, {"window_s": 0}, {"lockout_s": -1}, {"spread_factor": 0},
                                {"lockout_s": 600, "max_lockout_s": 300}, {"address_max_failures": 0},
                                {"throttle_delay_s": -1}, {"trusted_proxies": ["not-an-address"]}])
def test_bad_settings(kw):
    with pytest.raises(ValueError):
        LoginLimiter(**kw)


def test_forwarded_for_counts_only_from_a_trusted_proxy():
    p = TrustedProxies(["127.0.0.1", "10.1.0.0/16"])
    assert p.client_address("198.51.100.7", ["203.0.113.9"]) == "198.51.100.7"  # untrusted peer: ignored
    assert p.client_address("127.0.0.1", []) == "127.0.0.1"
    assert p.client_address("127.0.0.1", ["203.0.113.9"]) == "203.0.113.9"
    # The client forged an entry; the proxy appended the real one: the right-most untrusted wins.
    assert p.client_address("127.0.0.1", ["1.1.1.1, 203.0.113.9"]) == "203.0.113.9"
    assert p.client_address("127.0.0.1", ["1.1.1.1", "203.0.113.9, 10.1.2.3"]) == "203.0.113.9"  # two proxies
    assert p.client_address("127.0.0.1", ["10.1.2.3"]) == "10.1.2.3"  # only proxies: the left-most
    assert p.client_address("127.0.0.1", ["garbage"]) == "127.0.0.1"  # not an address: the proxy that passed it
    assert p.client_address("::ffff:127.0.0.1", ["2001:db8::1"]) == "2001:db8::1"
    assert p.client_address("127.0.0.1", ["[2001:db8::2]:4711"]) == "2001:db8::2"
    assert not TrustedProxies([])
