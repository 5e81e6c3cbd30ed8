"""Hashing on the request path without giving up the GIL.

CPython's hashlib and hmac release the GIL while they hash: the one-shot `hmac.digest`
always, an object's `update` for inputs of 2 KiB or more. On the receiver's event loop that
is a handoff point: the spool writer thread takes the GIL for its group commit and the loop
waits for it to come back (with another thread busy, one `hmac.digest` took one whole
switch interval instead of 8 us). Hashing a webhook body takes microseconds, less than the
handoff, so we feed the same hmac/hashlib objects in pieces under that size, which keeps
the GIL and gives the same digest.
"""

from __future__ import annotations

import functools
import hashlib
import hmac

_PIECE = 2047
"""One byte under CPython's HASHLIB_GIL_MINSIZE (2048), the size from which hashing lets go."""


def hmac_digest(key: bytes, msg: bytes, algo: str = "sha256") -> bytes:
    mac = _keyed(key, algo).copy()
    _feed(mac, msg)
    return mac.digest()


@functools.lru_cache(maxsize=256)
def _keyed(key: bytes, algo: str) -> hmac.HMAC:
    # An HMAC that has taken its key but no message. Setting a key up (padding it, two
    # hashes of a block) cost ~2 of the ~5 us a webhook's HMAC took; a copy of this is
    # ready at once. A source has a few secrets, so the cache holds every one in use. A key
    # rotated out of the config stays in this process's memory until 256 newer keys have
    # displaced it or the hub restarts; it is never used to accept a request, as verification
    # only asks for the configured secrets.
    return hmac.new(key, digestmod=algo)


def sha256_hex(data: bytes) -> str:
    digest = hashlib.sha256()
    _feed(digest, data)
    return digest.hexdigest()


def _feed(hasher: hmac.HMAC | hashlib._Hash, data: bytes) -> None:
    view = memoryview(data)
    for start in range(0, len(view), _PIECE):
        hasher.update(view[start : start + _PIECE])
