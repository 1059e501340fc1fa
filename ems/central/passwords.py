"""Password hashing with scrypt (stdlib ``hashlib.scrypt``) and a small password policy.

Stored form: ``scrypt$n=32768,r=8,p=1$<salt base64>$<hash base64>`` — the
parameters travel with the hash so they can be raised later
(:func:`needs_rehash`) without locking anybody out.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re

#: Current cost parameters: n=2^15, r=8 needs 32 MiB and about 0.1 s per hash on one core.
SCRYPT_N = 2**15
SCRYPT_R = 8
SCRYPT_P = 1
SALT_BYTES = 16
HASH_BYTES = 32
MIN_LENGTH = 12
MAX_LENGTH = 1024  # beyond this it is not a password but a denial-of-service attempt

# Upper bounds accepted when *reading* a stored hash, so that a doctored
# database cannot make one login cost gigabytes or minutes.
_MAX_N = 2**20
_MAX_R = 32
_MAX_P = 16

#: Common passwords of the allowed length (compared lower-case, spaces removed).
#: Short ones are already refused by the length rule.
COMMON_PASSWORDS = frozenset({
    "123456789012", "1234567890123", "12345678901234", "123456123456", "1q2w3e4r5t6y",
    "password1234", "password12345", "password123456", "passwordpassword", "password1!",
    "p@ssw0rd1234", "p@ssword1234", "qwertyuiop12", "qwertyuiop123", "qwerty123456",
    "qwertyqwerty", "1qaz2wsx3edc", "asdfghjkl123", "zxcvbnm12345", "iloveyou1234",
    "administrator", "administrator1", "admin1234567", "adminadmin12", "adminpassword",
    "welcome12345", "welcome123456", "letmein12345", "changeme1234", "changeme12345",
    "secret123456", "trustno11234", "football1234", "baseball1234", "sunshine1234",
    "princess1234", "dragon123456", "monkey123456", "abc123abc123", "abcdefghijkl",
    "abcdefg12345", "aaaaaaaaaaaa", "111111111111", "000000000000", "987654321098",
    "shelterpower", "shelter12345", "energy123456", "ems-admin-123", "emsadmin1234",
    "disaster1234", "tottori12345", "kouminkan123", "passw0rd1234", "default12345",
})


class PasswordPolicyError(ValueError):
    """The password is refused by the policy; the message says why (never the password itself)."""


def check_policy(pw: str) -> None:
    """Raise :class:`PasswordPolicyError` when ``pw`` is too short, too long, one repeated character or common."""
    if not isinstance(pw, str):
        raise PasswordPolicyError("password must be text")
    if len(pw) < MIN_LENGTH:
        raise PasswordPolicyError(f"password too short: at least {MIN_LENGTH} characters are required")
    if len(pw) > MAX_LENGTH:
        raise PasswordPolicyError(f"password too long: at most {MAX_LENGTH} characters")
    if len(set(pw)) == 1:
        raise PasswordPolicyError("password is one character repeated")
    if re.sub(r"\s+", "", pw.lower()) in COMMON_PASSWORDS:
        raise PasswordPolicyError("password is in the list of common passwords")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def _scrypt(pw: str, salt: bytes, n: int, r: int, p: int, dklen: int) -> bytes:
    # maxmem must cover 128 * r * n bytes plus slack, else OpenSSL refuses.
    return hashlib.scrypt(pw.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=dklen,
                          maxmem=256 * r * n + 1024 * 1024)


def hash_password(pw: str, *, enforce_policy: bool = True) -> str:
    """Hash ``pw`` with a fresh random salt; raises PasswordPolicyError (a ValueError) for weak passwords.

    ``enforce_policy=False`` is only for re-hashing a password that was accepted before.
    """
    if enforce_policy:
        check_policy(pw)
    salt = os.urandom(SALT_BYTES)
    digest = _scrypt(pw, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES)
    return f"scrypt$n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def _parse(stored: str) -> tuple[int, int, int, bytes, bytes] | None:
    """(n, r, p, salt, hash) of a stored string, or None when it is malformed or its cost is out of bounds."""
    if not isinstance(stored, str):
        return None
    parts = stored.split("$")
    if len(parts) != 4 or parts[0] != "scrypt":
        return None
    try:
        params = dict(item.split("=", 1) for item in parts[1].split(","))
        if set(params) != {"n", "r", "p"}:
            return None
        n, r, p = int(params["n"]), int(params["r"]), int(params["p"])
        salt, digest = _unb64(parts[2]), _unb64(parts[3])
    except (ValueError, binascii.Error):
        return None
    if not (2 <= n <= _MAX_N and n & (n - 1) == 0 and 1 <= r <= _MAX_R and 1 <= p <= _MAX_P):
        return None
    if len(salt) < 8 or not 16 <= len(digest) <= 64:
        return None
    return n, r, p, salt, digest


def verify_password(pw: str, stored: str) -> bool:
    """True when ``pw`` matches ``stored``; False for a wrong password or a malformed stored string.

    The final comparison is constant-time.  Passwords longer than MAX_LENGTH never match.
    """
    parsed = _parse(stored)
    if parsed is None or not isinstance(pw, str) or len(pw) > MAX_LENGTH:
        return False
    n, r, p, salt, digest = parsed
    candidate = _scrypt(pw, salt, n, r, p, len(digest))
    return hmac.compare_digest(candidate, digest)


def needs_rehash(stored: str) -> bool:
    """True when ``stored`` uses other parameters than the current ones (or is malformed)."""
    parsed = _parse(stored)
    if parsed is None:
        return True
    n, r, p, salt, digest = parsed
    return (n, r, p) != (SCRYPT_N, SCRYPT_R, SCRYPT_P) or len(salt) != SALT_BYTES or len(digest) != HASH_BYTES


_dummy_hash: str | None = None


def dummy_verify(pw: str) -> bool:
    """Spend the same time as a real verification and return False (used for unknown user names)."""
    global _dummy_hash
    if _dummy_hash is None:
        salt = os.urandom(SALT_BYTES)
        _dummy_hash = (f"scrypt$n={SCRYPT_N},r={SCRYPT_R},p={SCRYPT_P}${_b64(salt)}$"
                       f"{_b64(_scrypt(os.urandom(16).hex(), salt, SCRYPT_N, SCRYPT_R, SCRYPT_P, HASH_BYTES))}")
    verify_password(pw if isinstance(pw, str) else "", _dummy_hash)
    return False
