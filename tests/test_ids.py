"""Stored-request ids are ULIDs: the spec's bit layout and alphabet, time-ordered, unique."""

from __future__ import annotations

import random
from unittest import mock

from hub.spool.ids import new_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def reference_ulid(millis: int, randomness: bytes) -> str:
    """The ULID spec, character by character: 48-bit time then 80 random bits, base32 big-endian."""
    value = (millis << 80) | int.from_bytes(randomness, "big")
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def test_matches_the_spec_layout_bit_for_bit() -> None:
    rng = random.Random(7)
    cases = [(0.0, bytes(10)), (281474976710.655, b"\xff" * 10), (1_764_000_000.123, bytes(range(10)))]
    cases += [(rng.uniform(0, 2e9), rng.randbytes(10)) for _ in range(500)]
    for now, randomness in cases:
        with mock.patch("os.urandom", return_value=randomness):
            assert new_id(now) == reference_ulid(int(now * 1000), randomness)


def test_time_ordered_and_unique() -> None:
    ids = [new_id(1_764_000_000 + i / 1000) for i in range(2000)]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(len(i) == 26 and set(i) <= set(CROCKFORD) for i in ids)
    assert len({new_id() for _ in range(1000)}) == 1000
