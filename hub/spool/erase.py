"""Erasure of one person's data from the spool (`hookhub erase`, the console's erase action).

A matched submission is anonymized, not deleted: its inbox row keeps its ids, source, provider
event id, state and times (so a redelivery of the same event is still refused as a duplicate
and never sent to the destinations again), and loses its raw request, its Submission JSON,
its error text and its search terms. Its deliveries keep where and when they were delivered
and lose their error texts and remote ids; those not delivered yet are removed, so nothing
sends the person's data after the erasure. Attempts keep their times and codes, not their
error excerpts. Alert texts quoting the person's e-mail or answers have them replaced.

Then the bytes must leave the files, not only the tables: SQLite leaves deleted content in free
space of pages and old page images in the WAL. The erase transaction runs with
`PRAGMA secure_delete=ON` (freed space is zeroed), and the WAL is checkpointed with TRUNCATE so
no frame from before the erasure is left; `vacuumed` says whether a VACUUM was run as well
(when the checkpoint could not finish because a reader held an old snapshot).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from urllib.parse import quote, quote_plus

from pydantic import BaseModel, Field

from hub.spool.transactions import transaction
from hub.store import Connection

log = logging.getLogger("hookhub.erase")

ERASED = "[erased]"
MIN_VALUE_LENGTH = 4
"""Answers shorter than this (`Yes`, `3`) are not searched for in other rows' texts: they
would match unrelated words; the person's own rows are emptied whatever their answers."""
CHECKPOINT_TRIES = 20


class ErasedDelivery(BaseModel):
    destination: str
    route: str | None
    status: str
    delivered_at: float | None
    last_attempt_at: float | None
    attempts: int
    remote_id: str | None = Field(description="the destination's record id (where to erase there)")
    previous_remote_id: str | None = Field(default=None, description="the record a resend replaced")


class ErasedSubmission(BaseModel):
    id: str
    source: str
    received_at: float
    state: str
    deliveries: list[ErasedDelivery]


class ErasureReport(BaseModel):
    """What an erasure found and (unless `dry_run`) removed; no personal data in it but ids."""

    dry_run: bool
    submissions: list[ErasedSubmission]
    attempts_scrubbed: int = 0
    deliveries_removed: int = 0
    alert_texts_scrubbed: int = 0
    wal_checkpointed: bool = False
    vacuumed: bool = False

    @property
    def found(self) -> bool:
        return bool(self.submissions)


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
    # e-mail field an index could cover. instr() on lower() matches without LIKE's wildcards.
    where = " OR ".join(
        "instr(lower(CAST(body AS TEXT)), ?) OR instr(lower(coalesce(submission, '')), ?)" for _ in patterns
    )
    args = [p for pattern in patterns for p in (pattern, pattern)]
    ids.update(row[0] for row in conn.execute(f"SELECT id FROM inbox WHERE {where}", args))
    parents = _parents(conn, ids)
    return sorted(ids | parents)


def erase(
    conn: Connection,
    *,
    email: str | None = None,
    submission_id: str | None = None,
    now: float,
    dry_run: bool = False,
) -> ErasureReport:
    """Find the person's submissions and, unless `dry_run`, anonymize them (see the module)."""
    ids = find_ids(conn, email, submission_id)
    submissions = [_describe(conn, inbox_id) for inbox_id in ids]
    report = ErasureReport(dry_run=dry_run, submissions=submissions)
    if dry_run or not ids:
        return report
    values = _values(conn, ids) | ({email.strip()} if email else set())
    conn.execute("PRAGMA secure_delete=ON")
    try:
        with transaction(conn):
            report.attempts_scrubbed, report.deliveries_removed = _anonymize(conn, ids, now)
            report.alert_texts_scrubbed = _scrub_texts(conn, values)
    finally:
        conn.execute("PRAGMA secure_delete=OFF")
    report.wal_checkpointed = _checkpoint(conn)
    if not report.wal_checkpointed:
        conn.execute("VACUUM")
        report.vacuumed = True
        report.wal_checkpointed = _checkpoint(conn)
    log.info(
        "submissions erased",
        extra={"event": "erased", "submissions": len(ids), "vacuumed": report.vacuumed},
    )
    return report


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
    columns = {row[1] for row in conn.execute("PRAGMA table_info(submission_terms)")}
    if not {"kind", "value", "inbox_id"} <= columns:
        return []
    rows = conn.execute(
        "SELECT inbox_id FROM submission_terms WHERE kind = 'email' AND value = ?", (email.casefold(),)
    )
    return [row[0] for row in rows]


def _parents(conn: Connection, ids: Iterable[str]) -> set[str]:
    """The notifications the matched rows were fetched for (hub.spool.routing_store.add_expanded)."""
    prefix = "fetched for notification "
    found: set[str] = set()
    for chunk in _chunks(sorted(ids)):
        marks = ",".join("?" * len(chunk))
        for (note,) in conn.execute(
            f"SELECT note FROM inbox WHERE id IN ({marks}) AND note LIKE 'fetched for%'", chunk
        ):
            if note.startswith(prefix):
                found.add(note[len(prefix) :])
    return found


_DELIVERY_FIELDS = (
    "destination",
    "route",
    "status",
    "delivered_at",
    "last_attempt_at",
    "attempts",
    "remote_id",
)


def _describe(conn: Connection, inbox_id: str) -> ErasedSubmission:
    source, received_at, state = conn.execute(
        "SELECT source, received_at, state FROM inbox WHERE id = ?", (inbox_id,)
    ).fetchone()
    rows = conn.execute(
        f"SELECT {', '.join(_DELIVERY_FIELDS)} FROM deliveries WHERE inbox_id = ? ORDER BY destination",
        (inbox_id,),
    )
    deliveries = [
        ErasedDelivery.model_validate(dict(zip(_DELIVERY_FIELDS, row, strict=True))) for row in rows
    ]
    return ErasedSubmission(
        id=inbox_id, source=source, received_at=received_at, state=state, deliveries=deliveries
    )


def _values(conn: Connection, ids: list[str]) -> set[str]:
    """What other rows' texts may quote of the person: their e-mail, name and answers (each line
    of a long one on its own too), and the error texts of their own deliveries and attempts
    (an alert about a dead letter quotes its reason, which may quote the answers)."""
    values: set[str] = set()
    errors = (
        "SELECT error FROM inbox WHERE id IN ({marks})",
        "SELECT last_error FROM deliveries WHERE inbox_id IN ({marks})",
        "SELECT error FROM attempts WHERE inbox_id IN ({marks})",
    )
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        for query in errors:
            values.update(text for (text,) in conn.execute(query.format(marks=marks), chunk) if text)
        for (text,) in conn.execute(f"SELECT submission FROM inbox WHERE id IN ({marks})", chunk):
            for value in _strings(json.loads(text) if text else None):
                values.update((value, *value.splitlines()))
    return {v for v in values if len(v.strip()) >= MIN_VALUE_LENGTH}


def _strings(data: object) -> Iterator[str]:
    if isinstance(data, dict):
        for key in ("email", "name"):
            if isinstance(data.get(key), str):
                yield data[key]
        for answer in data.get("answers") or []:
            yield from _leaves(answer.get("value") if isinstance(answer, dict) else None)
        yield from _leaves(data.get("hidden"))


def _leaves(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _leaves(item)


def _anonymize(conn: Connection, ids: list[str], now: float) -> tuple[int, int]:
    scrubbed = removed = 0
    has_terms = bool(conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'submission_terms'").fetchone())
    for chunk in _chunks(ids):
        marks = ",".join("?" * len(chunk))
        scrubbed += conn.execute(
            f"UPDATE attempts SET error = NULL WHERE inbox_id IN ({marks}) AND error IS NOT NULL", chunk
        ).rowcount
        removed += conn.execute(
            f"DELETE FROM deliveries WHERE inbox_id IN ({marks}) AND status != 'delivered'", chunk
        ).rowcount
        conn.execute(
            "UPDATE deliveries SET last_error = NULL, remote_id = NULL, previous_remote_id = NULL"
            f" WHERE inbox_id IN ({marks})",
            chunk,
        )
        if has_terms:
            conn.execute(f"DELETE FROM submission_terms WHERE inbox_id IN ({marks})", chunk)
        # state `done`: nothing is left to deliver; `error` says why the row is empty.
        conn.execute(
            "UPDATE inbox SET body = x'', headers = NULL, url = NULL, submission = NULL, note = NULL,"
            " method = NULL, state = 'done', claimed_by = NULL, error = ?, updated_at = ?"
            f" WHERE id IN ({marks})",
            (f"erased on request at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))}", now, *chunk),
        )
    return scrubbed, removed


def _scrub_texts(conn: Connection, values: set[str]) -> int:
    """Replace quotes of `values` in texts other rows keep: alerts, dead-letter reasons of other
    deliveries, disabled destinations."""
    # As stored, as a reason quotes it (repr), and either one inside alert JSON.
    quoted = {q for v in values for q in (v, repr(v)[1:-1])}
    forms = sorted({f for q in quoted for f in (q, json.dumps(q)[1:-1])}, key=len, reverse=True)
    if not forms:
        return 0
    changed = 0
    tables = [
        ("alert_outbox", "rowid", "alert"),
        ("alert_outbox", "rowid", "last_error"),
        ("alert_state", "rowid", "reasons"),
        ("deliveries", "rowid", "last_error"),
        ("attempts", "rowid", "error"),
        ("inbox", "rowid", "error"),
        ("disabled_destinations", "rowid", "reason"),
    ]
    existing = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    for table, key, column in tables:
        if table not in existing:
            continue
        where = " OR ".join(f"instr({column}, ?)" for _ in forms)
        for rowid, text in conn.execute(
            f"SELECT {key}, {column} FROM {table} WHERE {where}", forms
        ).fetchall():
            for form in forms:
                text = text.replace(form, ERASED)
            conn.execute(f"UPDATE {table} SET {column} = ? WHERE {key} = ?", (text, rowid))
            changed += 1
    return changed


def _checkpoint(conn: Connection) -> bool:
    """Copy the WAL into the database and truncate it; False if readers kept it from finishing."""
    for _ in range(CHECKPOINT_TRIES):
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy == 0:
            return True
        time.sleep(0.05)
    return False


def _chunks(ids: list[str], size: int = 500) -> Iterator[list[str]]:
    for start in range(0, len(ids), size):
        yield ids[start : start + size]
