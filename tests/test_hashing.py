"""Request-path hashing gives the same digests as hmac/hashlib at every size around its piece boundary."""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest

from connectors._hashing import hmac_digest, sha256_hex

SIZES = [0, 1, 2046, 2047, 2048, 2049, 4094, 4095, 5600, 65_537]


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("algo", ["sha256", "sha1", "sha512"])
def test_hmac_digest_matches_the_one_shot(size: int, algo: str) -> None:
    body = random.Random(size).randbytes(size)
    assert hmac_digest(b"secret", body, algo) == hmac.digest(b"secret", body, algo)


@pytest.mark.parametrize("size", SIZES)
def test_sha256_hex_matches_hashlib(size: int) -> None:
    body = random.Random(size).randbytes(size)
    assert sha256_hex(body) == hashlib.sha256(body).hexdigest()


def test_a_kept_key_carries_nothing_from_one_message_to_the_next() -> None:
    """The keyed HMAC is copied per message: repeats, other keys and other algorithms stay exact."""
    rng = random.Random(3)
    keys = [b"secret", b"other", b"", rng.randbytes(200)]  # 200 bytes: longer than a block, hashed first
    for _ in range(300):
        key, algo = rng.choice(keys), rng.choice(["sha256", "sha1"])
        body = rng.randbytes(rng.randrange(0, 3000))
        assert hmac_digest(key, body, algo) == hmac.digest(key, body, algo)
