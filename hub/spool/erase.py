"""Erasure of one person's data from the spool (`hookhub erase`, the console's erase action).

A matched submission is anonymized, not deleted: its inbox row keeps its ids, source, provider
event id, state and times (so a redelivery of the same event is still refused as a duplicate
and never sent to the destinations again), and loses its raw request, its Submission JSON,
its error text and its search terms. Its deliveries keep where and when they were delivered
and lose their error texts and remote ids; those not delivered yet are removed, so nothing
sends the person's data after the erasure. Attempts keep their times and codes, not their
error excerpts. Alert texts quoting the person's e-mail or answers have them replaced.

Then the bytes must leave the files, not only the tables. SQLite leaves deleted content in free
space of pages and old page images in the WAL: the erase transaction runs with
`PRAGMA secure_delete=ON` (freed space is zeroed), and the WAL is checkpointed with TRUNCATE so
no frame from before the erasure is left; `vacuumed` says whether a VACUUM was run as well
(when the checkpoint could not finish because a reader held an old snapshot).

PostgreSQL has no secure_delete: an UPDATE or DELETE leaves the old row version in the table as
a dead tuple until VACUUM removes it (autovacuum would, at a time of its choosing). After the
erase commits, the affected tables are vacuumed at once (outside a transaction, as VACUUM must
be); `vacuumed` says whether that ran. VACUUM makes the dead tuples' space reusable, it does not
overwrite it, and the server's WAL, its archive, replicas and backups keep copies until they are
recycled or expire: docs/privacy.md says what an admin must do about those.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

from pydantic import BaseModel, Field

from hub.spool.erase_find import chunks, find_ids
from hub.spool.intake import intake_beside
from hub.spool.transactions import transaction
from hub.store import Connection, Dialect, StoreError
from hub.store.catalog import tables
from hub.store.sqlite import open_file

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
    store: Dialect = "sqlite"
    wal_checkpointed: bool = False
    """SQLite: the write-ahead log was emptied into the database (no frame from before is left)."""
    vacuumed: bool = False
    """SQLite: VACUUM ran because the checkpoint could not finish; PostgreSQL: the affected
    tables were vacuumed after the erasure (their dead row versions removed)."""

    @property
    def found(self) -> bool:
        return bool(self.submissions)


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
    report.store = conn.dialect
    if conn.dialect == "sqlite":
        conn.execute("PRAGMA secure_delete=ON")
    try:
        with transaction(conn):
            report.attempts_scrubbed, report.deliveries_removed = _anonymize(conn, ids, now)
            report.alert_texts_scrubbed = _scrub_texts(conn, values)
    finally:
        if conn.dialect == "sqlite":
            conn.execute("PRAGMA secure_delete=OFF")
    if conn.dialect == "sqlite":
        report.wal_checkpointed = _checkpoint(conn)
        if not report.wal_checkpointed:
            conn.execute("VACUUM")
            report.vacuumed = True
            report.wal_checkpointed = _checkpoint(conn)
        report.wal_checkpointed = _checkpoint_intake(conn) and report.wal_checkpointed
    else:
        report.vacuumed = _vacuum_pg(conn)
    log.info(
        "submissions erased",
        extra={"event": "erased", "submissions": len(ids), "vacuumed": report.vacuumed},
    )
    return report


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
    for chunk in chunks(ids):
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
    has_terms = "submission_terms" in tables(conn)
    for chunk in chunks(ids):
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
            "UPDATE inbox SET body = ?, headers = NULL, url = NULL, submission = NULL, note = NULL,"
            " method = NULL, state = 'done', claimed_by = NULL, error = ?, updated_at = ?"
            f" WHERE id IN ({marks})",
            (
                b"",
                f"erased on request at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(now))}",
                now,
                *chunk,
            ),
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
    existing = tables(conn)
    for table, key, column in _QUOTING:
        if table not in existing:
            continue
        where = " OR ".join(f"instr({column}, ?) > 0" for _ in forms)
        by_key = " AND ".join(f"{k} = ?" for k in key)
        for *row_key, text in conn.execute(
            f"SELECT {', '.join(key)}, {column} FROM {table} WHERE {where}", forms
        ).fetchall():
            for form in forms:
                text = text.replace(form, ERASED)
            conn.execute(f"UPDATE {table} SET {column} = ? WHERE {by_key}", (text, *row_key))
            changed += 1
    return changed


_QUOTING: tuple[tuple[str, tuple[str, ...], str], ...] = (
    ("alert_outbox", ("id",), "alert"),
    ("alert_outbox", ("id",), "last_error"),
    ("alert_state", ("rule", "key"), "reasons"),
    ("deliveries", ("inbox_id", "destination"), "last_error"),
    ("attempts", ("inbox_id", "destination", "attempt"), "error"),
    ("inbox", ("id",), "error"),
    ("disabled_destinations", ("destination",), "reason"),
)
"""(table, primary key, column) of every text that may quote a person."""

_ERASED_FROM = ("inbox", "deliveries", "attempts", "submission_terms", *{t for t, _, _ in _QUOTING})


def _vacuum_pg(conn: Connection) -> bool:
    """VACUUM the tables the erasure changed, so their dead row versions (the old texts) go now, not
    at autovacuum's next turn. False (with a warning) if it could not: VACUUM skips, with only a
    notice, tables this role does not own, and fails inside a transaction."""
    names = sorted(set(_ERASED_FROM))
    try:
        owned = conn.execute(
            "SELECT count(*) FROM pg_class WHERE pg_has_role(current_user, relowner, 'USAGE')"
            " AND oid IN (SELECT to_regclass(n) FROM unnest(?::text[]) AS n)",
            (names,),
        ).fetchone()[0]
        if owned < len(names):
            why = f"{len(names) - owned} of the tables are owned by another role: VACUUM them as that role"
        else:
            conn.execute(f"VACUUM {', '.join(names)}")
            return True
    except StoreError as exc:
        why = str(exc)
    log.warning(
        "erased rows not vacuumed: old row versions stay until autovacuum removes them",
        extra={"event": "erase_not_vacuumed", "error": why},
    )
    return False


def _checkpoint_intake(spool: Connection) -> bool:
    """A submission may have passed through intake.db (hub/spool/intake.py), where its row is
    deleted with secure_delete once moved, but older frames stay in intake.db-wal until a
    TRUNCATE checkpoint; False if one could not finish."""
    path = intake_beside(spool)
    if path is None:
        return True
    intake = open_file(path)
    try:
        return _checkpoint(intake)
    finally:
        intake.close()


def _checkpoint(conn: Connection) -> bool:
    """Copy the WAL into the database and truncate it; False if readers kept it from finishing."""
    for _ in range(CHECKPOINT_TRIES):
        busy, _log, _done = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy == 0:
            return True
        time.sleep(0.05)
    return False
