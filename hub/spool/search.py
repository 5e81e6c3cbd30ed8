"""The submission list: search by e-mail, name, form, event id, source, state and time, paged.

Newest first, keyset-paged on (received_at, id): a page costs the same at row 1,000,000 as at
row 1 (OFFSET would read and drop every row before it). Every filter reads an index: e-mail,
name and form the `submission_terms` table (hub/spool/terms.py), event id `inbox_by_event`,
source `inbox_by_source_time`, state `inbox_by_state`, none `inbox_by_time`;
tests/test_search_plan.py holds the query plans to that.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from hub.spool.terms import TermKind, normalize
from hub.store import Connection

InboxState = Literal["pending", "claimed", "routed", "done", "failed", "skipped"]
MAX_PAGE = 500


class Cursor(BaseModel):
    """Where the next page starts: strictly older than (received_at, id)."""

    model_config = ConfigDict(frozen=True)
    received_at: float
    id: str

    def encode(self) -> str:
        return f"{self.received_at!r}_{self.id}"

    @classmethod
    def decode(cls, text: str) -> Cursor:
        at, sep, inbox_id = text.partition("_")
        if not sep or not inbox_id:
            raise ValueError(f"not a page cursor: {text!r} (expected <received_at>_<id>)")
        return cls(received_at=float(at), id=inbox_id)


class SearchQuery(BaseModel):
    """What the list shows; every field narrows it (all of them at once: AND)."""

    model_config = ConfigDict(extra="forbid")
    email: str | None = None
    """The whole address, any case."""
    name: str | None = None
    """The whole name or one word of it, any case, accents optional ('chloe' finds 'Chloé Martin')."""
    form: str | None = None
    """A form id or title, any case."""
    event_id: str | None = None
    source: str | None = None
    state: InboxState | None = None
    since: float | None = None
    """received_at >= since (unix seconds)."""
    until: float | None = None
    """received_at < until."""
    after: Cursor | None = None
    limit: int = Field(default=50, ge=1, le=MAX_PAGE)


class SubmissionSummary(BaseModel):
    id: str
    received_at: float
    source: str
    provider: str
    event_id: str
    state: str
    email: str | None
    name: str | None
    form_id: str | None
    error: str | None


SUMMARY_COLUMNS = (
    "i.id, i.received_at, i.source, i.provider, i.event_id, i.state,"
    " i.submission ->> 'email' AS email, i.submission ->> 'name' AS name,"
    " i.submission ->> 'form_id' AS form_id, i.error"
)
"""A SubmissionSummary's columns, in its field order, from `inbox i` (`->>` reads the JSON text on
SQLite and the `json` column on PostgreSQL alike)."""


class SearchPage(BaseModel):
    items: list[SubmissionSummary]
    next: Cursor | None
    """The cursor of the next (older) page; None on the last page."""


def _terms(query: SearchQuery) -> list[tuple[TermKind, str]]:
    out: list[tuple[TermKind, str]] = []
    if query.email is not None:
        out.append(("email", query.email.strip().casefold()))
    if query.name is not None:
        out.append(("name", normalize(query.name)))
    if query.form is not None:
        out.append(("form", normalize(query.form)))
    return out


def build_sql(query: SearchQuery) -> tuple[str, list[object]]:
    """The page's SQL and arguments (public so the plan test and the bench run the same text)."""
    terms = _terms(query)
    where: list[str] = []
    args: list[object] = []
    if terms:
        # The first term drives: its index range is already in (received_at, id) order.
        kind, value = terms[0]
        source = "submission_terms t JOIN inbox i ON i.id = t.inbox_id"
        at, id_ = "t.received_at", "t.inbox_id"
        where.append("t.kind = ? AND t.value = ?")
        args += [kind, value]
        for kind, value in terms[1:]:
            where.append(
                "EXISTS (SELECT 1 FROM submission_terms o WHERE o.kind = ? AND o.value = ?"
                " AND o.received_at = i.received_at AND o.inbox_id = i.id)"
            )
            args += [kind, value]
    else:
        source, at, id_ = "inbox i", "i.received_at", "i.id"
    # With a term driving, the source is read from the term's own row: a common name in a
    # rare source walks the terms range without a lookup of each inbox row.
    source_column = "t.source" if terms else "i.source"
    equal = {"i.event_id": query.event_id, source_column: query.source, "i.state": query.state}
    for column, wanted in equal.items():
        if wanted is not None:
            where.append(f"{column} = ?")
            args.append(wanted)
    if query.since is not None:
        where.append(f"{at} >= ?")
        args.append(query.since)
    if query.until is not None:
        where.append(f"{at} < ?")
        args.append(query.until)
    if query.after is not None:
        where.append(f"({at}, {id_}) < (?, ?)")
        args += [query.after.received_at, query.after.id]
    sql = (
        f"SELECT {SUMMARY_COLUMNS} FROM {source}"
        + (" WHERE " + " AND ".join(where) if where else "")
        + f" ORDER BY {at} DESC, {id_} DESC LIMIT ?"
    )
    return sql, [*args, query.limit + 1]


def search(conn: Connection, query: SearchQuery) -> SearchPage:
    sql, args = build_sql(query)
    rows = conn.execute(sql, args).fetchall()
    items = [_summary(row) for row in rows[: query.limit]]
    more = len(rows) > query.limit
    return SearchPage(
        items=items, next=Cursor(received_at=items[-1].received_at, id=items[-1].id) if more else None
    )


def _summary(row: tuple[Any, ...]) -> SubmissionSummary:
    # SUMMARY_COLUMNS are in field order; e-mail, name and form id come from a Submission,
    # where they are text or null.
    return SubmissionSummary.model_validate(dict(zip(SubmissionSummary.model_fields, row, strict=True)))
