"""scrypt hashes: format, verification, policy, malformed and doctored stored strings, rehash."""

import base64
import os
import re
import time

import pytest

from ems.central import passwords
from ems.central.passwords import PasswordPolicyError, hash_password, needs_rehash, verify_password

GOOD = "violet-harbour-1927"


@pytest.fixture(scope="module")
def stored():
    return hash_password(GOOD)


def test_format_carries_parameters(stored):
    m = re.fullmatch(r"scrypt\$n=(\d+),r=(\d+),p=(\d+)\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)", stored)
    assert m, stored
    assert (int(m[1]), int(m[2]), int(m[3])) == (32768, 8, 1)
    assert len(base64.b64decode(m[4] + "==")) == 16
    assert GOOD not in stored


def test_verify(stored):
    assert verify_password(GOOD, stored)
    assert not verify_password(GOOD + "x", stored)
    assert not verify_password(GOOD.upper(), stored)
    assert not verify_password("", stored)


def test_salt_is_random():
    assert hash_password(GOOD) != hash_password(GOOD)


@pytest.mark.parametrize("pw, words", [
    ("short-pw-11", "too short"),
    ("", "too short"),
    ("a" * 12, "repeated"),
    ("Password1234", "common"),
    ("qwerty123456", "common"),
    ("x" * 1025 + "y", "too long"),
])
def test_policy_refuses(pw, words):
    with pytest.raises(PasswordPolicyError, match=words) as info:
        hash_password(pw)
    assert isinstance(info.value, ValueError)
    if pw:
        assert pw not in str(info.value)


def test_policy_refuses_non_text():
    with pytest.raises(ValueError):
        hash_password(None)  # type: ignore[arg-type]


def test_twelve_characters_are_enough():
    assert verify_password("twelve chars", hash_password("twelve chars"))


@pytest.mark.parametrize("bad", [
    "", "plain", "scrypt$", "scrypt$n=32768,r=8,p=1$$", "bcrypt$n=32768,r=8,p=1$AAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAA",
    "scrypt$n=32768,r=8$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "scrypt$n=30000,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",  # not a power of 2
    "scrypt$n=32768,r=8,p=1$!!!$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    "scrypt$n=abc,r=8,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    None, 42,
])
def test_malformed_stored_strings_never_match(bad):
    assert verify_password(GOOD, bad) is False
    assert needs_rehash(bad) is True


def test_doctored_cost_is_refused_without_running_it():
    salt = base64.b64encode(os.urandom(16)).decode()
    digest = base64.b64encode(os.urandom(32)).decode()
    t0 = time.monotonic()
    assert not verify_password(GOOD, f"scrypt$n={2**30},r=8,p=1${salt}${digest}")
    assert not verify_password(GOOD, f"scrypt$n=16384,r=1000,p=1${salt}${digest}")
    assert time.monotonic() - t0 < 5  # would take minutes and gigabytes if it ran


def test_needs_rehash_for_old_parameters(stored):
    assert not needs_rehash(stored)
    salt = os.urandom(16)
    old = passwords._scrypt(GOOD, salt, 1024, 8, 1, 32)
    weak = f"scrypt$n=1024,r=8,p=1${passwords._b64(salt)}${passwords._b64(old)}"
    assert verify_password(GOOD, weak)
    assert needs_rehash(weak)


def test_hash_without_policy_for_rehashing_only():
    assert verify_password("short", hash_password("short", enforce_policy=False))


def test_dummy_verify_always_false():
    assert passwords.dummy_verify(GOOD) is False
    assert passwords.dummy_verify(None) is False  # type: ignore[arg-type]
