"""The search table: e-mail, name and form of each stored submission, indexed for the console.

E-mail and name live inside the stored Submission JSON; searching them there would read every
row. `submission_terms` keeps them normalized (case-folded, accents removed) beside the
submission's `received_at`, keyed (kind, value, received_at, inbox_id) (SQLite: a WITHOUT ROWID
table), so a search is one index range read in page order. The ledger writes a submission's
terms in the transaction that stores its JSON. SQLite spools written before this table get
theirs once, at schema upgrade (`ensure_terms`), resumably; a PostgreSQL store has had the
table since its first migration (hub/store/postgres/schema.py), so it has nothing to fill.
"""

from __future__ import annotations

import json
import logging
import threading
import unicodedata
from collections.abc import Iterable
from typing import Literal

from hub.spool.meta import set_meta
from hub.store import Connection, StoreError
from hub.store.sqlite import open_file

TermKind = Literal["email", "name", "form"]

log = logging.getLogger("hookhub.spool")

BACKFILL_KEY = "submission_terms_filled_to"
"""meta key: the inbox rowid the upgrade backfill has reached ('done' once finished)."""
_BACKFILL_BATCH = 1000
"""Submissions per fill transaction: ~0.1 s holding the write lock beside a serving hub."""

DDL = (
    "CREATE TABLE IF NOT EXISTS submission_terms (kind TEXT NOT NULL, value TEXT NOT NULL,"
    " received_at REAL NOT NULL, inbox_id TEXT NOT NULL, source TEXT,"
    " PRIMARY KEY (kind, value, received_at, inbox_id)) WITHOUT ROWID",
    # Rewriting or erasing one submission's terms finds them by id.
    "CREATE INDEX IF NOT EXISTS submission_terms_by_id ON submission_terms(inbox_id)",
)


def normalize(text: str) -> str:
    """Case-folded, accents removed, spaces collapsed: 'Chloé  MARTIN' -> 'chloe martin'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(plain.split())


def terms_of(submission_json: str) -> set[tuple[TermKind, str]]:
    """The searchable terms of one stored Submission: its e-mail, its name (whole and each word),
    its form id and title. An unreadable JSON has none (it is still listed by source and time)."""
    try:
        data = json.loads(submission_json)
    except ValueError:
        return set()
    if not isinstance(data, dict):
        return set()
    out: set[tuple[TermKind, str]] = set()
    email = data.get("email")
    if isinstance(email, str) and email.strip():
        out.add(("email", email.strip().casefold()))
    name = data.get("name")
    if isinstance(name, str) and (full := normalize(name)):
        out.add(("name", full))
        out.update(("name", word) for word in full.split())
    for key in ("form_id", "form_title"):
        value = data.get(key)
        if isinstance(value, str) and (form := normalize(value)):
            out.add(("form", form))
    return out


def write_terms(conn: Connection, submissions: Iterable[tuple[str, str]]) -> None:
    """(inbox id, Submission JSON) -> their terms, replacing any earlier ones (a replay re-stores
    the JSON). Runs inside the caller's transaction; reads received_at from the inbox rows.
    Set-based, a few statements per batch: it runs in the routing transaction of every batch."""
    texts = dict(submissions)
    ids = list(texts)
    for start in range(0, len(ids), 500):
        chunk = ids[start : start + 500]
        marks = ",".join("?" * len(chunk))
        conn.execute(f"DELETE FROM submission_terms WHERE inbox_id IN ({marks})", chunk)
        rows = [
            (kind, value, received_at, inbox_id, source)
            for inbox_id, received_at, source in conn.execute(
                f"SELECT id, received_at, source FROM inbox WHERE id IN ({marks})", chunk
            )
            for kind, value in terms_of(texts[inbox_id])
        ]
        conn.executemany(
            "INSERT INTO submission_terms (kind, value, received_at, inbox_id, source)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT (kind, value, received_at, inbox_id) DO NOTHING",
            rows,
        )


def ensure_terms(conn: Connection) -> None:
    """Create the table (additive) and fill it for submissions stored before it existed (SQLite:
    PostgreSQL's schema is created whole by its migrations, and its rows have no rowid to resume by).

    Idempotent and resumable: the meta row remembers the last inbox rowid done, each batch
    commits with it, and a finished backfill is one meta read at every later open. A small
    backlog is filled here; a large one (~5 min per 1,000,000 submissions on a busy 2-core
    machine) by a thread of this process with its own connection, in short transactions, so a
    hub upgraded on a big spool starts receiving at once (searches miss the older submissions
    until the log says `search_terms_filled`).
    """
    if conn.dialect != "sqlite":
        return
    for statement in DDL:
        conn.execute(statement)
    if "source" not in {c[1] for c in conn.execute("PRAGMA table_info(submission_terms)")}:
        # A table from before `source` was kept beside each term: filled again, whole.
        conn.execute("ALTER TABLE submission_terms ADD COLUMN source TEXT")
        conn.execute("DELETE FROM meta WHERE key=?", (BACKFILL_KEY,))
    row = conn.execute("SELECT value FROM meta WHERE key=?", (BACKFILL_KEY,)).fetchone()
    if row is not None and row[0] == "done":
        return
    (last,) = conn.execute("SELECT coalesce(max(rowid), 0) FROM inbox").fetchone()
    if last - (int(row[0]) if row is not None else 0) <= INLINE_FILL:
        _fill(conn)
        return
    path = conn.execute("PRAGMA database_list").fetchone()[2]
    with _filling_lock:
        if path in _filling:
            return
        _filling.add(path)
    threading.Thread(
        target=_fill_in_background, args=(path,), name="hookhub-search-terms", daemon=True
    ).start()


INLINE_FILL = 20_000
"""Up to this many stored submissions are given their terms before the spool is opened."""
_filling: set[str] = set()
_filling_lock = threading.Lock()


def _fill_in_background(path: str) -> None:
    try:
        conn = open_file(path)
        conn.execute("PRAGMA busy_timeout=30000")
        try:
            _fill(conn)
        finally:
            conn.close()
    except StoreError as exc:  # resumed from its mark at the next start
        log.warning("search terms not filled yet", extra={"event": "search_terms_stopped", "error": str(exc)})
    finally:
        with _filling_lock:
            _filling.discard(path)


def _fill(conn: Connection) -> None:
    filled = 0
    while True:
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Read under the write lock: another process of the hub (a delivery worker opens the
            # spool too) may be filling as well; each goes on from where the other got.
            row = conn.execute("SELECT value FROM meta WHERE key=?", (BACKFILL_KEY,)).fetchone()
            if row is not None and row[0] == "done":
                conn.execute("COMMIT")
                return
            done_to = int(row[0]) if row is not None else 0
            batch = conn.execute(
                "SELECT rowid, id, submission FROM inbox WHERE rowid > ? AND submission IS NOT NULL"
                " ORDER BY rowid LIMIT ?",
                (done_to, _BACKFILL_BATCH),
            ).fetchall()
            write_terms(conn, [(inbox_id, text) for _, inbox_id, text in batch])
            filled += len(batch)
            done_to = batch[-1][0] if batch else done_to
            mark = str(done_to) if len(batch) == _BACKFILL_BATCH else "done"
            set_meta(conn, BACKFILL_KEY, mark)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        if mark == "done":
            if filled:
                log.info(
                    "search terms filled for stored submissions",
                    extra={"event": "search_terms_filled", "submissions": filled},
                )
            return
        if filled % 100_000 < _BACKFILL_BATCH:  # a line every 100,000 on a large spool
            log.info("filling search terms", extra={"event": "search_terms_filling", "submissions": filled})
