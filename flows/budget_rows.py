"""The statements on `rate_budgets` (PostgreSQL): one row per budget key, a GCRA schedule.

`tat` is the earliest time the next send on the key may start, `paused_until` the end of the
longest pause a target asked for; both are unix seconds from the callers' clocks. Every change
is one statement on the key's row, whose lock orders concurrent callers.
"""

from __future__ import annotations

from hub.store.connection import Connection

Row = tuple[float, float]
"""(tat, paused_until) as the statement left them."""

# start = greatest(tat - tolerance, now, paused_until); tat' = greatest(tat, start) + interval. The
# tolerance is 0 for a spaced turn and infinite for a turn that only honours pauses (interval 0),
# so that one never waits for, nor moves, the key's schedule. A start beyond the horizon takes
# nothing: the WHERE leaves the row alone and returns no row.
_TAKE = """
INSERT INTO rate_budgets AS b (key, tat, paused_until) VALUES (?, ?, ?)
ON CONFLICT (key) DO UPDATE SET
    tat = greatest(b.tat, greatest(b.tat - ?, ?, b.paused_until, ?)) + ?,
    paused_until = greatest(b.paused_until, ?)
WHERE greatest(b.tat - ?, ?, b.paused_until, ?) <= ?
RETURNING tat, paused_until
"""

_READ = "SELECT tat, paused_until FROM rate_budgets WHERE key = ?"

_PAUSE = """
INSERT INTO rate_budgets AS b (key, tat, paused_until) VALUES (?, ?, ?)
ON CONFLICT (key) DO UPDATE SET paused_until = greatest(b.paused_until, excluded.paused_until)
RETURNING tat, paused_until
"""

# Sends the target counts but this cluster cannot have made move the schedule on, as if made now.
# The cluster's own sends in the last window are at most the slots from there to its last start
# (tat - interval), never more than the limit: only usage beyond that is someone else's.
_USAGE = """
INSERT INTO rate_budgets AS b (key, tat, paused_until) VALUES (?, ?, 0)
ON CONFLICT (key) DO UPDATE SET tat = greatest(b.tat, ?) + ? * greatest(0, ? - ? - least(?,
    greatest(0, floor((b.tat - ? - ?) / ?) + 1)))
RETURNING tat, paused_until
"""

_ACTIVE_PAUSES = "SELECT key, paused_until FROM rate_budgets WHERE paused_until > ?"


def take(
    conn: Connection, key: str, interval: float, tolerance: float, now: float, paused: float, horizon: float
) -> tuple[float, Row] | None:
    """Take the next slot on `key` (and carry this caller's known pause `paused` into the row):
    its start and the row after, or None, with nothing taken, when it would start after `horizon`."""
    new_row = (key, max(now, paused) + interval, paused)
    start = (tolerance, now, paused)
    found = conn.execute(_TAKE, (*new_row, *start, interval, paused, *start, horizon)).fetchone()
    if found is None:
        return None
    tat, paused_until = float(found[0]), float(found[1])
    # The start the statement used, from the row it left (exact for tolerance 0 and infinity).
    return max(now, paused_until, tat - interval - tolerance), (tat, paused_until)


def read(conn: Connection, key: str) -> Row | None:
    found = conn.execute(_READ, (key,)).fetchone()
    return None if found is None else (float(found[0]), float(found[1]))


def record_pause(conn: Connection, key: str, now: float, until: float) -> Row:
    """Nobody sends on `key` before `until`; a longer pause already there stays."""
    found = conn.execute(_PAUSE, (key, now, until)).fetchone()
    return float(found[0]), float(found[1])


def record_usage(conn: Connection, key: str, now: float, limit: int, window: float, remaining: int) -> Row:
    """The target says `remaining` of `limit` sends are left in its `window` for `key`."""
    interval = window / limit
    left = float(max(0, remaining))
    unseen_if_new = max(0.0, limit - left)
    parameters = (key, now + interval * unseen_if_new, now, interval, float(limit), left, float(limit))
    found = conn.execute(_USAGE, (*parameters, interval, now - window, interval)).fetchone()
    return float(found[0]), float(found[1])


def active_pauses(conn: Connection, now: float) -> list[tuple[str, float]]:
    """Every key paused past `now`, with the pause's end."""
    return [(str(key), float(until)) for key, until in conn.execute(_ACTIVE_PAUSES, (now,)).fetchall()]
