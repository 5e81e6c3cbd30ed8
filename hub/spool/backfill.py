"""Apply one route to submissions stored in a time range (`hookhub backfill`).

The route is judged on each stored Submission as the router would judge it now (its `from`,
its `when`); each of its destinations the submission has no delivery row for gets one, pending,
recorded with the route's name. A pair that exists in any state is left as it is: a backfill
never sends a pair again (that is `hookhub resend`), so running it twice adds nothing.
Submissions not routed yet (pending, claimed) are left to the dispatcher, which routes them by
the routes in force anyway; skipped events and unnormalized ones have no Submission to judge.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hub.config.models import RouteConfig
from hub.routing.plan import compiled_condition
from hub.routing.when import WhenError, WhenSyntaxError
from hub.spool.transactions import transaction
from hub.store import Connection
from hub.submission import Submission

BATCH = 500
"""Submissions per read and per write transaction: short locks beside a serving hub."""

Progress = Callable[["BackfillCounts"], None]


@dataclass
class BackfillCounts:
    examined: int = 0
    matched: int = 0
    planned: dict[str, int] = field(default_factory=dict)
    """Destination -> new delivery rows (would be, on a dry run)."""
    existing: int = 0
    """Pairs that already had a row (delivered or under way): left alone."""
    errors: int = 0
    """Submissions whose `when` could not be evaluated or whose JSON could not be read."""


def backfill(
    conn: Connection,
    route: RouteConfig,
    since: float,
    until: float | None,
    now: float,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> BackfillCounts:
    counts = BackfillCounts()
    destinations = route.destination_ids()
    cursor: tuple[float, str] = (since, "")
    while True:
        rows = conn.execute(
            "SELECT id, received_at, source, submission FROM inbox WHERE (received_at, id) > (?, ?)"
            " AND received_at < ? AND submission IS NOT NULL AND state NOT IN ('pending', 'claimed')"
            " ORDER BY received_at, id LIMIT ?",
            (*cursor, until if until is not None else float("inf"), BATCH),
        ).fetchall()
        if not rows:
            return counts
        cursor = (rows[-1][1], rows[-1][0])
        new = [(r[0], d) for r in rows if _matches(route, r[2], r[3], counts) for d in destinations]
        counts.examined += len(rows)
        _plan(conn, route.name, new, now, dry_run, counts)
        if progress is not None:
            progress(counts)


def _matches(route: RouteConfig, source: str, stored: str, counts: BackfillCounts) -> bool:
    if not route.matches_source(source):
        return False
    if route.when:
        try:
            if not compiled_condition(route.when)(Submission.model_validate_json(stored)):
                return False
        except (WhenError, WhenSyntaxError, ValueError):
            counts.errors += 1
            return False
    counts.matched += 1
    return True


def _plan(
    conn: Connection,
    route: str,
    pairs: list[tuple[str, str]],
    now: float,
    dry_run: bool,
    counts: BackfillCounts,
) -> None:
    with transaction(conn):
        for inbox_id, destination in pairs:
            if dry_run:
                exists = conn.execute(
                    "SELECT 1 FROM deliveries WHERE inbox_id=? AND destination=?", (inbox_id, destination)
                ).fetchone()
                added = exists is None
            else:
                added = bool(
                    conn.execute(
                        "INSERT INTO deliveries (inbox_id, destination, route, status, attempts,"
                        " next_attempt_at, created_at, updated_at) VALUES (?,?,?,'pending',0,?,?,?)"
                        " ON CONFLICT(inbox_id, destination) DO NOTHING",
                        (inbox_id, destination, route, now, now, now),
                    ).rowcount
                )
                if added:
                    # Settled again (done, or failed if this delivery dies) once it is delivered.
                    conn.execute(
                        "UPDATE inbox SET state='routed', updated_at=? WHERE id=? AND state='done'",
                        (now, inbox_id),
                    )
            if added:
                counts.planned[destination] = counts.planned.get(destination, 0) + 1
            else:
                counts.existing += 1
