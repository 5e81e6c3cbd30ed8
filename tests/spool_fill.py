"""Stored submissions for the console's data-layer tests, written through the real ledger."""

from __future__ import annotations

from datetime import UTC, datetime

from hub.spool import routing_store
from hub.spool.rows import PlannedDelivery
from hub.spool.search import Cursor, SearchQuery, search
from hub.store import Connection
from hub.submission import Answer, Submission


def submission_json(
    inbox_id: str, source: str, email: str | None, name: str | None, form: str | None = "f1", at: float = 0
) -> str:
    submission = Submission(
        id=inbox_id,
        source=source,
        provider="typeform",
        form_id=form,
        event_id=f"ev-{inbox_id}",
        submitted_at=datetime.fromtimestamp(at, tz=UTC),
        email=email,
        name=name,
        answers=[Answer(key="plan", label="Plan", type="text", value="pro")],
    )
    return submission.to_json()[1]


def store(
    conn: Connection,
    inbox_id: str,
    received_at: float,
    source: str = "tf",
    email: str | None = None,
    name: str | None = None,
    form: str | None = "f1",
    destinations: tuple[str, ...] = (),
    body: bytes = b"{}",
    headers: str = "{}",
    url: str = "http://hub/hooks/tf",
) -> None:
    """A received request (as the writer stores it), then routed by `save_routing`."""
    conn.execute(
        "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state, method, url,"
        " headers) VALUES (?, ?, ?, 'typeform', ?, 'submission', ?, 'claimed', 'POST', ?, ?)",
        (inbox_id, received_at, source, f"ev-{inbox_id}", body, url, headers),
    )
    text = submission_json(inbox_id, source, email, name, form, received_at)
    planned = [PlannedDelivery(d, "all") for d in destinations]
    routing_store.save_routing(conn, received_at, {inbox_id: (text, planned)}, {})


def every_page(conn: Connection, query: SearchQuery) -> list[str]:
    """The ids of every page of `query`, each page asked with the cursor the one before encoded."""
    seen: list[str] = []
    after: Cursor | None = None
    while True:
        page = search(conn, query.model_copy(update={"after": after}))
        seen += [s.id for s in page.items]
        if page.next is None:
            return seen
        after = Cursor.decode(page.next.encode())
