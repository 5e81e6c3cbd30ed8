"""Time-ordered ids for stored requests.

ULIDs rather than integer row ids: they stay unique across spool files (a restored or
re-created spool never reuses one), which matters because destinations dedupe on ids we
derive from them; and being time-ordered they append to the primary-key b-tree.
"""

from __future__ import annotations

import os
import time

_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"


def new_id(now: float | None = None) -> str:
    millis = int((time.time() if now is None else now) * 1000)
    value = (millis << 80) | int.from_bytes(os.urandom(10), "big")
    chars = []
    for _ in range(26):
        chars.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(chars))
