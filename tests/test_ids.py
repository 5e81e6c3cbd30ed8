"""Stored-request ids are ULIDs: the spec's bit layout and alphabet, time-ordered, unique."""

from __future__ import annotations

import os
import random
import threading

from hub.spool import ids
from hub.spool.ids import encode_time, new_id

CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def reference_ulid(millis: int, randomness: int) -> str:
    """The ULID spec, character by character: 48-bit time then 80 random bits, base32 big-endian."""
    value = (millis << 80) | randomness
    return "".join(CROCKFORD[(value >> (5 * i)) & 31] for i in reversed(range(26)))


def random_bits(random_chars: str) -> int:
    return int("".join(f"{CROCKFORD.index(c):05b}" for c in random_chars), 2)


def test_matches_the_spec_layout_bit_for_bit() -> None:
    rng = random.Random(7)
    cases = [0.0, 281474976710.655, 1_764_000_000.123] + [rng.uniform(0, 2e9) for _ in range(500)]
    for now in cases:
        millis = int(now * 1000)
        made = new_id(now)
        assert made[:10] == encode_time(millis)
        assert made == reference_ulid(millis, random_bits(made[10:]))
    assert new_id(281474976710.655)[:10] == "7ZZZZZZZZZ"  # the largest time a ULID holds


def test_time_ordered_and_unique() -> None:
    made = [new_id(1_764_000_000 + i / 1000) for i in range(2000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    assert all(len(i) == 26 and set(i) <= set(CROCKFORD) for i in made)
    assert len({new_id() for _ in range(1000)}) == 1000
    # The time part is remembered per millisecond: going back in time must not reuse it.
    assert new_id(1_764_000_000.002)[:10] != new_id(1_764_000_000.001)[:10]


def test_random_part_comes_from_urandom_pool_in_order(monkeypatch) -> None:
    """Each random character is one urandom byte's low 5 bits, in order; a spent pool is refilled."""
    draws: list[bytes] = []

    def urandom(n: int) -> bytes:
        draws.append(random.Random(len(draws)).randbytes(n))
        return draws[-1]

    monkeypatch.setattr(os, "urandom", urandom)
    ids._reset_pools_after_fork()  # start from an empty pool in this thread
    per_pool = ids._POOL_CHARS // 16
    made = [new_id(1_764_000_000.5) for _ in range(per_pool + 3)]
    assert len(draws) == 2
    every_byte = draws[0] + draws[1][:48]
    expected = "".join(CROCKFORD[b & 31] for b in every_byte)
    assert "".join(m[10:] for m in made) == expected
    assert all(m[:10] == encode_time(1_764_000_000_500) for m in made)


def test_random_characters_are_uniform() -> None:
    """256 byte values onto 32 characters, 8 each: no character is favoured."""
    table = ids._BYTE_TO_CHAR
    counts = {c: sum(1 for b in range(256) if table[b] == ord(c)) for c in CROCKFORD}
    assert set(counts.values()) == {8}


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
