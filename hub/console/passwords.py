"""Admin password hashes: scrypt from the standard library.

scrypt rather than argon2: argon2 needs a package (argon2-cffi) that hookhub does not otherwise
depend on, and scrypt is a memory-hard KDF of the same class that every Python has. The stored
form names its parameters, so they can be raised later without breaking existing hashes.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass

PREFIX = "scrypt"
# n=2**15, r=8: ~32 MiB and ~50-100 ms per check on this class of machine (OWASP's minimum is 2**17
# for r=8 with 1 thread; a login is throttled anyway, and the hub shares its CPU with webhooks).
DEFAULT_N = 2**15
DEFAULT_R = 8
DEFAULT_P = 1
_MAXMEM = 256 * 1024 * 1024


class BadPasswordHash(ValueError):
    """The configured admin.password_hash is not one `hookhub admin hash-password` writes."""


@dataclass(frozen=True)
class PasswordHash:
    n: int
    r: int
    p: int
    salt: bytes
    digest: bytes

    def encode(self) -> str:
        return "$".join([PREFIX, str(self.n), str(self.r), str(self.p), _b64(self.salt), _b64(self.digest)])

    def matches(self, password: str) -> bool:
        candidate = _derive(password, self.salt, self.n, self.r, self.p, len(self.digest))
        return hmac.compare_digest(candidate, self.digest)


def hash_password(password: str, n: int = DEFAULT_N, r: int = DEFAULT_R, p: int = DEFAULT_P) -> str:
    salt = secrets.token_bytes(16)
    return PasswordHash(n, r, p, salt, _derive(password, salt, n, r, p, 32)).encode()


def parse(encoded: str) -> PasswordHash:
    parts = encoded.split("$")
    if len(parts) != 6 or parts[0] != PREFIX:
        raise BadPasswordHash(
            "not a hookhub password hash (scrypt$N$r$p$salt$hash):"
            " make one with `hookhub admin hash-password`"
        )
    try:
        n, r, p = int(parts[1]), int(parts[2]), int(parts[3])
        salt, digest = _unb64(parts[4]), _unb64(parts[5])
    except ValueError as exc:
        raise BadPasswordHash(
            f"a damaged password hash ({exc}): make a new one with `hookhub admin hash-password`"
        ) from None
    if n < 2**14 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16 or len(salt) < 16 or len(digest) < 16:
        raise BadPasswordHash(
            "password hash parameters out of range: make a new one with `hookhub admin hash-password`"
        )
    return PasswordHash(n, r, p, salt, digest)


def verify(encoded: str, password: str) -> bool:
    return parse(encoded).matches(password)


def _derive(password: str, salt: bytes, n: int, r: int, p: int, length: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=_MAXMEM, dklen=length)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
