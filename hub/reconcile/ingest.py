"""Store the responses a listing found missing, as submissions of their own.

A stored response is a row like one an expanded notification makes (kind `fetched`: its body is
the normalized Submission, hub/routing/process.py reads it as it is), but `pending`: the
dispatcher claims and routes it like any webhook. Its event id is `<origin>:<response key>` and
its `response_key` the response's identity, so the unique index on (source, response_key) keeps
one row per response whichever came first, this or the webhook: a concurrent webhook that won
the race makes this insert a no-op (ON CONFLICT DO NOTHING), and a later one is answered
`duplicate` by the receiver.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from hub.reconcile import state
from hub.spool.ids import new_id
from hub.spool.transactions import transaction
from hub.spool.writer import NOTIFY_CHANNEL
from hub.store import Connection
from hub.submission import Submission

LOOKUP_CHUNK = 500
"""Keys per `IN (...)`: well within both engines' parameter limits."""


@dataclass(frozen=True)
class Missing:
    """A listed response the spool does not hold: its key there, and the Submission to store, or
    why the connector could not make one (it is then stored as a dead letter saying so)."""

    key: str
    submission: Submission | None
    problem: str | None = None


def known_keys(conn: Connection, source: str, keys: Sequence[str]) -> set[str]:
    """Which of `keys` the source already holds as a response key (webhook, fetched or reconciled)."""
    found: set[str] = set()
    for start in range(0, len(keys), LOOKUP_CHUNK):
        chunk = list(keys[start : start + LOOKUP_CHUNK])
        marks = ",".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT response_key FROM inbox WHERE source = ? AND response_key IN ({marks})", [source, *chunk]
        )
        found.update(row[0] for row in rows)
    return found


def store_missing(
    conn: Connection,
    now: float,
    source: str,
    provider: str,
    missing: Iterable[Missing],
    origin: str,
    note: str,
    api: str,
) -> list[str]:
    """Insert each missing response (one transaction); returns the ids of the rows actually stored.

    `origin` (`reconciled` or `imported`) goes into the Submission's `metadata.origin`, where routes
    and templates can see it, and decides which counter of `reconcile_state` counts the rows.
    """
    stored: list[str] = []
    with transaction(conn):
        for item in missing:
            inbox_id = new_id(now)
            if item.submission is not None:
                metadata = {**item.submission.metadata, "origin": origin}
                _, data = item.submission.model_copy(
                    update={"id": inbox_id, "source": source, "metadata": metadata}
                ).to_json()
                body, row_state, error = data.encode(), "pending", None
            else:
                body, row_state = b"", "failed"
                error = f"{origin} from the {api}, but not readable: {item.problem}"
            row = conn.execute(
                "INSERT INTO inbox (id, received_at, source, provider, event_id, response_key, kind, note,"
                " method, url, headers, body, state, error, redeliveries, updated_at)"
                " VALUES (?,?,?,?,?,?,'fetched',?,'GET',?,'{}',?,?,?,0,?)"
                " ON CONFLICT DO NOTHING RETURNING id",
                (
                    inbox_id,
                    now,
                    source,
                    provider,
                    f"{origin}:{item.key}",
                    item.key,
                    note,
                    api,
                    body,
                    row_state,
                    error,
                    now,
                ),
            ).fetchone()
            if row is not None:
                stored.append(inbox_id)
        if stored:
            state.add_stored(conn, source, origin, len(stored))
            if conn.dialect == "postgresql":  # workers LISTEN for new work (hub/dispatch/wake.py)
                conn.execute(f"SELECT pg_notify('{NOTIFY_CHANNEL}', '')")
    return stored
