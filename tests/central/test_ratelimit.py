"""LoginLimiter: lockout per (name, address), per address and per name; window; success; memory cap."""

import pytest

from ems.central.ratelimit import LoginLimiter


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
    return LoginLimiter(max_failures=5, window_s=300, lockout_s=300, clock=clock)


def test_fifth_failure_locks_the_pair(lim, clock):
    for _ in range(4):
        assert lim.check("alice", "10.0.0.1") is None
        lim.failure("alice", "10.0.0.1")
    assert lim.check("alice", "10.0.0.1") is None
    lim.failure("alice", "10.0.0.1")
    assert lim.check("alice", "10.0.0.1") == pytest.approx(300)
    clock.t += 120
    assert lim.check("alice", "10.0.0.1") == pytest.approx(180)
    assert lim.check("alice", "10.0.0.2") is None  # same name elsewhere: not locked
    assert lim.check("bob", "10.0.0.1") is None  # other name from the same address: not locked
    clock.t += 180
    assert lim.check("alice", "10.0.0.1") is None


def test_names_are_compared_case_insensitively(lim):
    for name in ("Alice", "ALICE", "alice ", "alice", "aLiCe"):
        lim.failure(name, "ip")
    assert lim.check("alice", "ip") is not None


def test_failures_outside_the_window_do_not_add_up(lim, clock):
    for _ in range(20):
        lim.failure("alice", "ip")
        clock.t += 76  # the oldest of five leaves the 300 s window just as the fifth arrives
        assert lim.check("alice", "ip") is None
    # But five inside the window do.
    for _ in range(5):
        lim.failure("alice", "ip")
        clock.t += 1
    assert lim.check("alice", "ip") is not None


def test_success_clears_the_pair(lim):
    for _ in range(4):
        lim.failure("alice", "ip")
    lim.success("alice", "ip")
    for _ in range(4):
        lim.failure("alice", "ip")
    assert lim.check("alice", "ip") is None


def test_spraying_from_one_address_locks_the_address(lim):
    for i in range(20):
        lim.failure(f"user{i}", "6.6.6.6")
    assert lim.check("fresh-name", "6.6.6.6") is not None
    assert lim.check("fresh-name", "7.7.7.7") is None


def test_guessing_one_name_from_many_addresses_locks_the_name(lim):
    for i in range(20):
        lim.failure("alice", f"10.0.{i}.1")
    assert lim.check("alice", "192.168.1.1") is not None
    assert lim.check("bob", "192.168.1.1") is None


def test_memory_stays_bounded(clock):
    lim = LoginLimiter(max_failures=5, clock=clock, max_keys=50)
    for i in range(2000):
        lim.failure(f"name{i}", f"ip{i}")
    assert len(lim._failures) <= 50


@pytest.mark.parametrize("kw", [{"max_failures": 0}, {"window_s": 0}, {"lockout_s": -1}, {"spread_factor": 0}])
def test_bad_settings(kw):
    with pytest.raises(ValueError):
        LoginLimiter(**kw)
