"""The submission list (hub/spool/search.py) over a real spool file: filters, keyset pages, the
search table's upgrade backfill, and query plans that never scan a table."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hub.spool import routing_store
from hub.spool.search import Cursor, SearchQuery, build_sql, search
from hub.spool.terms import BACKFILL_KEY, INLINE_FILL
from hub.spool.transactions import open_spool
from tests.harness import wait_for
from tests.spool_fill import every_page, store, submission_json


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    conn = open_spool(tmp_path / "spool.db")
    people = [
        ("A", 100.0, "tf", "Chloe.Martin@Example.com", "Chloé Martin", "f1"),
        ("B", 200.0, "tf", "bob@example.com", "Bob Stone", "f2"),
        ("C", 300.0, "jf", "chloe.martin@example.com", "Chloé Martin", "f1"),
        ("D", 300.0, "jf", "dan@example.com", "Dan Brown", "Contact us"),
        ("E", 400.0, "tf", None, None, None),
    ]
    for inbox_id, at, source, email, name, form in people:
        store(conn, inbox_id, at, source, email, name, form)
    return conn


def ids(conn: sqlite3.Connection, **filters: object) -> list[str]:
    return [s.id for s in search(conn, SearchQuery.model_validate(filters)).items]


def test_each_filter_finds_its_submissions_newest_first(conn: sqlite3.Connection) -> None:
    assert ids(conn) == ["E", "D", "C", "B", "A"]
    assert ids(conn, email="CHLOE.MARTIN@example.com") == ["C", "A"]
    assert ids(conn, name="chloe") == ["C", "A"]  # one word, accents optional
    assert ids(conn, name="CHLOÉ  martin") == ["C", "A"]
    assert ids(conn, name="mart") == []  # whole words, not prefixes
    assert ids(conn, form="contact US") == ["D"]
    assert ids(conn, form="f1", source="tf") == ["A"]
    assert ids(conn, email="chloe.martin@example.com", form="f1", since=150) == ["C"]
    assert ids(conn, event_id="ev-B") == ["B"]
    assert ids(conn, source="jf") == ["D", "C"]
    assert ids(conn, since=200, until=300) == ["B"]
    assert ids(conn, state="done") == ["E", "D", "C", "B", "A"]
    assert ids(conn, state="failed") == []
    found = search(conn, SearchQuery(email="dan@example.com")).items[0]
    assert (found.name, found.form_id, found.source, found.state) == ("Dan Brown", "Contact us", "jf", "done")


def test_pages_cover_every_row_once_even_with_equal_times(conn: sqlite3.Connection) -> None:
    for query in (
        SearchQuery(limit=2),
        SearchQuery(limit=1, source="jf"),
        SearchQuery(limit=1, name="chloe"),
    ):
        seen = every_page(conn, query)
        assert seen == [s.id for s in search(conn, query.model_copy(update={"limit": 500})).items]
    assert len(ids(conn, limit=500)) == 5


def test_a_stored_submission_is_searchable_by_its_replayed_json_only(conn: sqlite3.Connection) -> None:
    store_again = routing_store.save_routing
    conn.execute("UPDATE inbox SET state='claimed' WHERE id='B'")
    store_again(
        conn, 500.0, {"B": (submission_json("B", "tf", "robert@example.com", "Robert Stone"), [])}, {}
    )
    assert ids(conn, email="bob@example.com") == []
    assert ids(conn, email="robert@example.com") == ["B"]


def test_upgrade_fills_the_search_table_once(tmp_path: Path, conn: sqlite3.Connection) -> None:
    path = Path(conn.execute("PRAGMA database_list").fetchone()[2])
    # As a spool written before the table existed: no terms, no marker.
    conn.execute("DROP TABLE submission_terms")
    conn.execute("DELETE FROM meta WHERE key=?", (BACKFILL_KEY,))
    conn.close()
    reopened = open_spool(path)
    assert ids(reopened, email="chloe.martin@example.com") == ["C", "A"]
    assert ids(reopened, name="chloe", source="jf") == ["C"]
    count = reopened.execute("SELECT count(*) FROM submission_terms").fetchone()[0]
    assert reopened.execute("SELECT value FROM meta WHERE key=?", (BACKFILL_KEY,)).fetchone() == ("done",)
    reopened.close()
    again = open_spool(path)
    assert again.execute("SELECT count(*) FROM submission_terms").fetchone()[0] == count


def _plan(conn: sqlite3.Connection, query: SearchQuery) -> list[str]:
    sql, args = build_sql(query)
    return [row[3] for row in conn.execute("EXPLAIN QUERY PLAN " + sql, args)]


@pytest.mark.parametrize(
    "filters",
    [
        {"email": "a@example.com"},
        {"name": "chloe", "source": "tf", "state": "done"},
        {"form": "f1", "email": "a@example.com", "since": 1, "until": 9},
        {"event_id": "ev-1"},
        {"source": "tf"},
        {"source": "tf", "state": "failed", "since": 1},
        {"state": "failed"},
        {"since": 1, "until": 9},
    ],
)
def test_filtered_pages_read_indexes_only(conn: sqlite3.Connection, filters: dict[str, object]) -> None:
    after = Cursor(received_at=300.0, id="C")
    for query in (
        SearchQuery.model_validate(filters),
        SearchQuery.model_validate({**filters, "after": after}),
    ):
        plan = _plan(conn, query)
        assert all(
            step.startswith(("SEARCH", "USE TEMP B-TREE FOR RIGHT PART", "CORRELATED")) for step in plan
        ), plan


def test_the_unfiltered_list_walks_the_time_index_in_order(conn: sqlite3.Connection) -> None:
    # Newest first with LIMIT: the walk stops after one page (no sort, no table scan).
    assert _plan(conn, SearchQuery()) == ["SCAN i USING INDEX inbox_by_time"]
    assert _plan(conn, SearchQuery(after=Cursor(received_at=300.0, id="C"))) == [
        "SEARCH i USING INDEX inbox_by_time ((received_at,id)<(?,?))"
    ]


def test_a_terms_table_without_sources_is_filled_again(conn: sqlite3.Connection) -> None:
    path = Path(conn.execute("PRAGMA database_list").fetchone()[2])
    conn.execute("DROP TABLE submission_terms")  # its first shape, filled, with no source column
    conn.execute(
        "CREATE TABLE submission_terms (kind TEXT NOT NULL, value TEXT NOT NULL, received_at REAL NOT NULL,"
        " inbox_id TEXT NOT NULL, PRIMARY KEY (kind, value, received_at, inbox_id)) WITHOUT ROWID"
    )
    conn.execute("INSERT INTO submission_terms VALUES ('name', 'chloe', 100.0, 'A')")
    conn.close()
    reopened = open_spool(path)
    assert ids(reopened, name="chloe", source="tf") == ["A"]
    assert ids(reopened, name="chloe") == ["C", "A"]


def test_a_large_backlog_is_filled_beside_the_open_spool(tmp_path: Path) -> None:
    path = tmp_path / "spool.db"
    conn = open_spool(path)
    count = INLINE_FILL + 500
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state, submission)"
        " VALUES (?, ?, 'tf', 'typeform', ?, 'submission', x'7b7d', 'done', ?)",
        [
            (
                f"I{n:06d}",
                float(n),
                f"e{n}",
                submission_json(f"I{n:06d}", "tf", f"p{n}@example.com", "Ana Rossi"),
            )
            for n in range(count)
        ],
    )
    conn.execute("DROP TABLE submission_terms")  # as written before the table existed
    conn.execute("DELETE FROM meta WHERE key=?", (BACKFILL_KEY,))
    conn.execute("COMMIT")
    conn.close()
    reopened = open_spool(path)
    # Opening did not wait for ~20,000 submissions' terms (seconds of work): a thread fills them.
    assert reopened.execute("SELECT value FROM meta WHERE key=?", (BACKFILL_KEY,)).fetchone() != ("done",)
    wait_for(
        lambda: (
            reopened.execute("SELECT value FROM meta WHERE key=?", (BACKFILL_KEY,)).fetchone() == ("done",)
        ),
        timeout=120,
        what="the background fill of the search terms",
    )
    assert ids(reopened, email="p0@example.com") == ["I000000"]
    assert ids(reopened, email=f"p{count - 1}@example.com") == [f"I{count - 1:06d}"]
    assert reopened.execute("SELECT count(DISTINCT inbox_id) FROM submission_terms").fetchone() == (count,)
