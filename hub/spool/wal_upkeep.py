"""Keeping a SQLite spool's write-ahead log from growing without end while it is read all the time.

SQLite starts its WAL again from the beginning only when a writer finds every frame copied into
the database and no reader still using the WAL. While a backlog drains, some connection (the
delivery process claiming and recording, the receiver looking up duplicates) is nearly always
reading, so the PASSIVE checkpoints copied every frame and the WAL still grew: it had reached
48,617 frames (190 MB) by the end of bench/peak.py's 10 s steady phase: disk space, old page
images (docs/privacy.md) and longer WAL lookups for every reader. Every commit also appended to a
growing file, and on ext4 an fsync that grows a file waits for a journal commit (suspected, not
measured apart, to lengthen the receiver's commits; README, Peak load).

So past RESTART_FRAMES a RESTART checkpoint follows: it waits (RESTART_WAIT_MS at most) for the
readers of old frames to finish and makes the next writer start the WAL from its beginning,
writing over blocks the file already has. While it waits it holds the write lock: the
receiver's groups go to the intake meanwhile (hub/spool/intake.py), and the delivery process
waits its turn. JOURNAL_SIZE_LIMIT then returns what a long transaction made the WAL take.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from hub.store import Connection

RESTART_FRAMES = 1000
"""SQLite's own automatic checkpoint threshold (4 MB of 4 KB pages)."""
RESTART_WAIT_MS = 1000
JOURNAL_SIZE_LIMIT = 64 * 1024 * 1024


def checkpoint(conn: Connection, schema: str = "main") -> bool:
    """Copy the WAL into the database (PASSIVE: never waits), and make the WAL start again
    when it holds more than RESTART_FRAMES (RESTART: waits up to RESTART_WAIT_MS for readers).
    Whether a RESTART finished: then the next commit writes from the WAL's start."""
    _busy, frames, _copied = conn.execute(f"PRAGMA {schema}.wal_checkpoint(PASSIVE)").fetchone()
    if frames <= RESTART_FRAMES:
        return False
    waited = conn.execute("PRAGMA busy_timeout").fetchone()[0]
    conn.execute(f"PRAGMA busy_timeout={RESTART_WAIT_MS}")
    try:
        busy, _frames, _copied = conn.execute(f"PRAGMA {schema}.wal_checkpoint(RESTART)").fetchone()
    finally:
        conn.execute(f"PRAGMA busy_timeout={waited}")
    return not busy
