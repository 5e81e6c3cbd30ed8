"""The submission list (filters, keyset pages) and one submission with its ledger and attempts."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

PAGE = 50


class Filters(BaseModel):
    """The list's query string (every field optional; empty strings mean 'any')."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)

    email: str = ""
    name: str = ""
    event_id: str = ""
    source: str = ""
    form: str = ""
    status: str = ""
    since: str = Field(default="", description="YYYY-MM-DD[THH:MM] UTC, inclusive")
    until: str = Field(default="", description="YYYY-MM-DD[THH:MM] UTC, exclusive")
    before: str = Field(default="", description="the last id of the previous page")


@dataclass(frozen=True)
class Row:
    id: str
    received_at: float
    source: str
    state: str
    email: str | None
    name: str | None
    form: str | None
    error: str | None


@dataclass
class Detail:
    inbox: dict[str, Any]
    submission: dict[str, Any] | None
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    attempts: dict[str, list[dict[str, Any]]] = field(default_factory=dict)


def _epoch(text: str) -> float:
    from datetime import UTC, datetime

    value = datetime.fromisoformat(text)
    return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()


def search(conn: sqlite3.Connection, filters: Filters, limit: int = PAGE) -> list[Row]:
    clauses: list[str] = []
    args: list[Any] = []
    for column, value in (
        ("source", filters.source),
        ("event_id", filters.event_id),
        ("state", filters.status),
    ):
        if value:
            clauses.append(f"{column} = ?")
            args.append(value)
    for key, value in (("email", filters.email), ("name", filters.name)):
        if value:
            clauses.append(f"lower(json_extract(submission, '$.{key}')) LIKE ?")
            args.append(f"%{value.lower()}%")
    if filters.form:
        clauses.append(
            "(json_extract(submission, '$.form_id') = ? OR json_extract(submission, '$.form_title') = ?)"
        )
        args += [filters.form, filters.form]
    for op, value in ((">=", filters.since), ("<", filters.until)):
        if value:
            clauses.append(f"received_at {op} ?")
            args.append(_epoch(value))
    if filters.before:
        clauses.append("id < ?")
        args.append(filters.before)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(
        "SELECT id, received_at, source, state, json_extract(submission, '$.email'),"
        " json_extract(submission, '$.name'), coalesce(json_extract(submission, '$.form_title'),"
        f" json_extract(submission, '$.form_id')), error FROM inbox {where} ORDER BY id DESC LIMIT ?",
        [*args, limit],
    ).fetchall()
    return [Row(*row) for row in rows]


def detail(conn: sqlite3.Connection, inbox_id: str) -> Detail | None:
    conn.row_factory = sqlite3.Row
    try:
        row = conn.execute("SELECT * FROM inbox WHERE id = ?", (inbox_id,)).fetchone()
        if row is None:
            return None
        inbox = dict(row)
        deliveries = [
            dict(r)
            for r in conn.execute(
                "SELECT * FROM deliveries WHERE inbox_id = ? ORDER BY destination", (inbox_id,)
            )
        ]
        attempts: dict[str, list[dict[str, Any]]] = {}
        for r in conn.execute(
            "SELECT * FROM attempts WHERE inbox_id = ? ORDER BY destination, attempt", (inbox_id,)
        ):
            attempts.setdefault(r["destination"], []).append(dict(r))
    finally:
        conn.row_factory = None
    submission = json.loads(inbox["submission"]) if inbox.get("submission") else None
    return Detail(inbox, submission, deliveries, attempts)
