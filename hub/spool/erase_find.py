"""Finding a person's submissions for an erasure (hub/spool/erase.py): by id, or by e-mail
anywhere in the stored requests and Submission JSON, on either engine."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

from hub.store import Connection
from hub.store.catalog import columns


def find_ids(conn: Connection, email: str | None = None, submission_id: str | None = None) -> list[str]:
    """Inbox ids of the person's submissions: by id, or by e-mail anywhere in the stored request
    or Submission JSON (any field, any case, JSON- or form-encoded), with the notifications
    they were fetched for."""
    if submission_id is not None:
        rows = conn.execute("SELECT id FROM inbox WHERE id = ?", (submission_id,)).fetchall()
        return [row[0] for row in rows]
    if not email:
        raise ValueError("name an e-mail address or a submission id")
    patterns = sorted(_encodings(email.strip()))
    ids: set[str] = set()
    ids.update(_by_terms(conn, email.strip().lower()))
    # A full scan: an erasure is rare, and the e-mail may be in any answer, not only the
    # e-mail field an index could cover.
    ids.update(_matching_sqlite(conn, patterns) if conn.dialect == "sqlite" else _matching_pg(conn, patterns))
    parents = _parents(conn, ids)
    return sorted(ids | parents)


def _matching_sqlite(conn: Connection, patterns: list[str]) -> set[str]:
    # instr() on lower() matches without LIKE's wildcards; SQLite's lower() folds ASCII only,
    # and CAST reads the body's bytes as they are, whatever their encoding.
    where = " OR ".join(
        "instr(lower(CAST(body AS TEXT)), ?) > 0 OR instr(lower(coalesce(submission, '')), ?) > 0"
        for _ in patterns
    )
    args = [p for pattern in patterns for p in (pattern, pattern)]
    return {row[0] for row in conn.execute(f"SELECT id FROM inbox WHERE {where}", args)}


def _matching_pg(conn: Connection, patterns: list[str]) -> set[str]:
    """The body is `bytea` on PostgreSQL, and any bytes (not always UTF-8: convert_from would fail
    on the first invalid one). encode(body, 'escape') is text whatever the bytes: ASCII stays as
    it is, a backslash is doubled, a zero or high byte becomes `\\ooo`; a pattern escaped the same
    way is found in it where its bytes are in the body. lower() in the "C" collation folds ASCII
    letters only, as SQLite's does, whatever the server's locale, and fast (translate() took 50
    times as long). A match that starts inside an escape (`\\3` + `51...`) is not one in the
    bytes, so each candidate is checked again in Python."""
    body_where = " OR ".join("strpos(t, ?) > 0" for _ in patterns)
    json_where = " OR ".join("strpos(j, ?) > 0" for _ in patterns)
    escaped = [_escape_bytes(p.encode("utf-8")) for p in patterns]
    folded = "lower(encode(body, 'escape') COLLATE \"C\")"
    # OFFSET 0 keeps the subquery whole, so each row's body is escaped once, not once per pattern.
    rows = conn.execute(
        f"SELECT id, body, ({json_where}) FROM (SELECT id, body, {folded} AS t,"
        " lower(coalesce(CAST(submission AS TEXT), '')) AS j FROM inbox OFFSET 0) AS s"
        f" WHERE {body_where} OR {json_where}",
        [*patterns, *escaped, *patterns],
    )
    wanted = [p.encode("utf-8") for p in patterns]
    return {
        inbox_id
        for inbox_id, body, in_json in rows
        if in_json or any(w in bytes(body).lower() for w in wanted)
    }


def _escape_bytes(data: bytes) -> str:
    """What PostgreSQL's encode(data, 'escape') returns."""
    return "".join("\\\\" if b == 0x5C else chr(b) if 0 < b < 0x80 else f"\\{b:03o}" for b in data)


def _encodings(email: str) -> set[str]:
    """The forms an address takes in stored bodies, lower-cased: as is, JSON-escaped, URL-encoded."""
    lowered = email.lower()
    return {
        lowered,
        json.dumps(lowered)[1:-1],
        quote_plus(lowered),
        quote(lowered, safe=""),
        lowered.replace("@", "\\u0040"),
    }


def _by_terms(conn: Connection, email: str) -> list[str]:
    """Ids from `submission_terms` (hub/spool/terms.py, the console's search index) where the
    spool has it; a help, not the whole search: it holds only the e-mail field."""
    if not {"kind", "value", "inbox_id"} <= columns(conn, "submission_terms"):
        return []
    rows = conn.execute(
        "SELECT inbox_id FROM submission_terms WHERE kind = 'email' AND value = ?", (email.casefold(),)
    )
    return [row[0] for row in rows]


def _parents(conn: Connection, ids: Iterable[str]) -> set[str]:
    """The notifications the matched rows were fetched for (hub.spool.routing_store.add_expanded)."""
    prefix = "fetched for notification "
    found: set[str] = set()
    for chunk in chunks(sorted(ids)):
        marks = ",".join("?" * len(chunk))
        for (note,) in conn.execute(
            f"SELECT note FROM inbox WHERE id IN ({marks}) AND note LIKE 'fetched for%'", chunk
        ):
            if note.startswith(prefix):
                found.add(note[len(prefix) :])
    return found


def chunks(ids: list[str], size: int = 500) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
