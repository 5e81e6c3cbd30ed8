"""Time-ordered ids for stored requests.

ULIDs rather than integer row ids: they stay unique across spool files (a restored or
re-created spool never reuses one), which matters because destinations dedupe on ids we
derive from them; and being time-ordered they append to the primary-key b-tree.

An id is made on every request, on the receiver's event loop, so both halves are cheap:
the time part is encoded once per millisecond, and the random part is a slice of a pool of
Crockford characters drawn from os.urandom in bulk (~0.5 us an id against ~4 us encoding
80 bits per id in Python).
"""

from __future__ import annotations

import os
import threading
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_TIME_CHARS = 10  # 48 bits of milliseconds (+2 leading zero bits)
_RANDOM_CHARS = 16  # 80 random bits, 5 per character
_BYTE_TO_CHAR = bytes.maketrans(bytes(range(256)), (_CROCKFORD.encode("ascii") * 8))
"""Each byte to the character of its low 5 bits: 256 = 8 x 32, so a uniform random byte
gives a uniform character, i.e. 5 random bits."""
_POOL_CHARS = _RANDOM_CHARS * 256

_pools = threading.local()
_last_time: tuple[int, str] = (-1, "")


def _reset_pools_after_fork() -> None:
    # A forked child must not hand out the random characters its parent still holds.
    global _pools
    _pools = threading.local()


os.register_at_fork(after_in_child=_reset_pools_after_fork)


def _random_part() -> str:
    """16 random Crockford characters, drawn 256 ids at a time per thread.

    os.urandom is a system call that gives up the GIL; one per request made the receiver's
    event loop hand the GIL to the spool writer and wait for it back on every webhook.
    Per-thread pools need no lock and never give two callers the same characters.
    """
    state = _pools.__dict__
    pos = state.get("pos", _POOL_CHARS)
    if pos >= _POOL_CHARS:
        state["pool"] = os.urandom(_POOL_CHARS).translate(_BYTE_TO_CHAR).decode("ascii")
        pos = 0
    state["pos"] = pos + _RANDOM_CHARS
    pool: str = state["pool"]
    return pool[pos : pos + _RANDOM_CHARS]


def encode_time(millis: int) -> str:
    """The first 10 characters of a ULID: milliseconds since the epoch, base32 big-endian."""
    return "".join(_CROCKFORD[(millis >> shift) & 31] for shift in range(5 * (_TIME_CHARS - 1), -1, -5))


def new_id(now: float | None = None) -> str:
    """A ULID for a request received at `now` (default: the current time)."""
    global _last_time
    millis = int((time.time() if now is None else now) * 1000)
    last_millis, prefix = _last_time  # one tuple, so a thread never pairs one ms with another's text
    if millis != last_millis:
        prefix = encode_time(millis)
        _last_time = (millis, prefix)
    return prefix + _random_part()
