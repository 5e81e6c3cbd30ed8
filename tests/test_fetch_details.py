"""flows.pipeline.fetch_details on a fake fetching connector: what each row's fetch produced.

A completed notification, one to fetch later, one refused for good, a connector bug and one
that stood for two responses, in one batch; the arguments are left as they were.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from connectors.base import FetchFailed, NoOptions
from flows.pipeline import FETCH_RETRIES, Fetched, fetch_details
from hub.config.loader import parse_config
from hub.config.models import HubConfig
from hub.spool import routing_store
from hub.spool.transactions import open_spool
from hub.submission import Submission


def _submission(event_id: str, inbox_id: str = "") -> Submission:
    return Submission(
        id=inbox_id or event_id,
        source="form",
        provider="fake",
        event_id=event_id,
        submitted_at="2026-01-01T00:00:00Z",
        answers=[{"key": "k", "label": "Q", "type": "t", "value": event_id}],
    )


class FakeConnector:
    fetches = True
    title = "Fake API"
    event_ids_per_form = False

    def __init__(self, outcomes: dict[str, list[Submission] | Exception]) -> None:
        self.outcomes = outcomes

    def for_source(self, options: BaseModel) -> FakeConnector:
        return self

    async def expand(self, submission: Submission, source: Any, client: Any) -> list[Submission]:
        outcome = self.outcomes[submission.event_id]
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


OUTCOMES: dict[str, list[Submission] | Exception] = {
    "e1": [_submission("e1")],
    "e2": FetchFailed("HTTP 503"),
    "e3": FetchFailed("HTTP 404", permanent=True),
    "e4": ValueError("connector bug"),
    "e5": [_submission("r1"), _submission("r2")],
}


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_spool(tmp_path / "spool.db")
    for n in range(1, 6):
        connection.execute(
            "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state)"
            " VALUES (?, ?, 'form', 'fake', ?, 'submission', x'7b7d', 'claimed')",
            (f"S{n}", float(n), f"e{n}"),
        )
    yield connection
    connection.close()


def _config() -> HubConfig:
    # Through the loader, which gives the source its options (tally's are NoOptions); the
    # connector itself is the fake, handed to fetch_details by the lookup below.
    config, _ = parse_config("sources:\n  form:\n    provider: tally\n    secret: s\n", "test.yaml")
    assert isinstance(config.sources["form"].options, NoOptions)
    return config


async def _fetch(conn: sqlite3.Connection, ids: list[str]) -> tuple[Fetched, dict[str, Submission]]:
    rows = {r.id: r for r in routing_store.load_inbox(conn, ids)}
    submissions = {i: _submission(rows[i].event_id, i) for i in ids}
    given = dict(submissions)
    connector = FakeConnector(OUTCOMES)
    fetched = await fetch_details(_config(), conn, rows, submissions, lambda _: connector)  # type: ignore[arg-type, return-value]
    assert submissions == given  # the arguments are not changed
    return fetched, rows


@pytest.mark.anyio
async def test_each_row_s_fetch_comes_back_as_what_it_produced(conn: sqlite3.Connection) -> None:
    fetched, _ = await _fetch(conn, ["S1", "S2", "S3", "S4", "S5"])
    assert fetched.later == ["S2"]
    assert fetched.failed == {
        "S3": "could not fetch details from Fake API: HTTP 404",
        "S4": "could not complete it from the provider's API: ValueError: connector bug",
    }
    ids = list(fetched.submissions)
    assert ids[0] == "S1" and fetched.submissions["S1"].event_id == "e1"
    assert sorted(fetched.submissions[i].event_id for i in ids[1:]) == ["r1", "r2"]
    states = dict(conn.execute("SELECT id, state FROM inbox WHERE id LIKE 'S%'").fetchall())
    assert states["S2"] == "pending" and states["S5"] == "done"
    assert routing_store.fetch_attempts(conn, "S2") == 1
    (not_before,) = conn.execute("SELECT not_before FROM inbox WHERE id='S2'").fetchone()
    assert not_before is not None


@pytest.mark.anyio
async def test_a_row_that_used_up_its_tries_is_a_dead_letter(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE inbox SET fetch_attempts=? WHERE id='S2'", (FETCH_RETRIES - 1,))
    fetched, _ = await _fetch(conn, ["S2"])
    assert fetched.later == [] and fetched.submissions == {}
    assert fetched.failed == {
        "S2": f"could not fetch details from Fake API: HTTP 503 (gave up after {FETCH_RETRIES} attempts)"
    }
