"""Stored-request ids are ULIDs: the spec's bit layout and alphabet, time-ordered, unique."""

from __future__ import annotations

import os
import random
import threading

from hub.spool import ids
from hub.spool.ids import encode_ulid, new_id

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
        millis = int(now * 1000)
        assert encode_ulid(millis, int.from_bytes(randomness, "big")) == reference_ulid(millis, randomness)


def test_time_ordered_and_unique() -> None:
    made = [new_id(1_764_000_000 + i / 1000) for i in range(2000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(len(i) == 26 and set(i) <= set(CROCKFORD) for i in made)
    assert len({new_id() for _ in range(1000)}) == 1000


def test_random_part_comes_from_urandom_pool_in_order(monkeypatch) -> None:
    """Every id takes the next 10 bytes of its thread's pool; a spent pool is refilled."""
    draws: list[bytes] = []

    def urandom(n: int) -> bytes:
        draws.append(random.Random(len(draws)).randbytes(n))
        return draws[-1]

    monkeypatch.setattr(os, "urandom", urandom)
    ids._reset_pools_after_fork()  # start from an empty pool in this thread
    per_pool = ids._POOL_BYTES // 10
    made = [new_id(1_764_000_000.5) for _ in range(per_pool + 3)]
    assert len(draws) == 2
    expected = [draws[0][i:i + 10] for i in range(0, ids._POOL_BYTES, 10)] + [draws[1][i:i + 10] for i in (0, 10, 20)]
    assert made == [reference_ulid(1_764_000_000_500, r) for r in expected]


def test_threads_never_share_random_bytes() -> None:
    made: list[list[str]] = [[] for _ in range(4)]

    def work(out: list[str]) -> None:
        out.extend(new_id(1_764_000_000.0) for _ in range(3000))

    threads = [threading.Thread(target=work, args=(out,)) for out in made]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    every = [i for out in made for i in out]
    assert len(set(every)) == len(every) == 12_000


def test_forked_child_draws_its_own_bytes() -> None:
    new_id()  # this thread now holds a partly used pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child reports through the pipe
        os.close(read)
        os.write(write, new_id(1_764_000_000.0).encode())
        os._exit(0)
    os.close(write)
    child = os.read(read, 64).decode()
    os.close(read)
    os.waitpid(pid, 0)
    assert child != new_id(1_764_000_000.0)
