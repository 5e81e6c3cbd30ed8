"""The delivery ledger and retry decisions, on real SQLite files, without Prefect."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from flows.destinations.base import Outcome, RetryPolicy
from flows.retry import backoff, decide
from hub.spool import claiming, delivery_outcomes, report, routing_store, suspects
from hub.spool.rows import Decision, DeliveryRow, PlannedDelivery
from hub.spool.transactions import open_spool


def _row(attempts: int = 0, first: float | None = None) -> DeliveryRow:
    return DeliveryRow("S1", "crm", "r", attempts, first, None, "{}")


def test_backoff_grows_exponentially_with_bounded_jitter_and_a_cap() -> None:
    policy = RetryPolicy(initial=10, multiplier=2, max_delay=300)
    for attempt, base in [(1, 10), (2, 20), (3, 40), (4, 80)]:
        waits = [backoff(policy, attempt) for _ in range(50)]
        assert all(base <= w <= base + 5 for w in waits), (attempt, min(waits), max(waits))
    assert all(backoff(policy, 30) == 300 for _ in range(20))


def test_decide_delivered_failed_and_retry() -> None:
    policy = RetryPolicy(initial=1, max_delay=10)
    now = 1000.0
    assert (
        decide(_row(), Outcome(key="k", status="delivered", status_code=200), policy, now).status
        == "delivered"
    )
    dead = decide(_row(), Outcome(key="k", status="failed", status_code=400, reason="bad field"), policy, now)
    assert (dead.status, dead.error) == ("dead", "bad field")
    retry = decide(_row(), Outcome(key="k", status="retry", status_code=503), policy, now)
    assert retry.status == "retrying" and now + 1 <= retry.next_attempt_at <= now + 1.5
    assert retry.error == "HTTP 503"


def test_retry_after_is_never_shortened_or_clamped() -> None:
    policy = RetryPolicy(initial=1, max_delay=10)
    decision = decide(
        _row(), Outcome(key="k", status="retry", status_code=429, retry_after=3600), policy, 0.0
    )
    assert decision.next_attempt_at == 3600  # longer than max_delay: the target's limit wins
    assert decision.retry_after == 3600


def test_gives_up_past_the_horizon_or_max_attempts() -> None:
    policy = RetryPolicy(initial=60, max_delay=3600, horizon=7200)
    late = decide(
        _row(attempts=5, first=0.0), Outcome(key="k", status="retry", status_code=500), policy, 7000.0
    )
    assert late.status == "dead" and late.outcome == "gave_up" and "6 attempts" in late.error
    capped = RetryPolicy(initial=1, max_delay=10, max_attempts=3)
    third = decide(
        _row(attempts=2, first=0.0), Outcome(key="k", status="retry", status_code=500), capped, 5.0
    )
    assert third.status == "dead" and "gave up after 3 attempts" in third.error


@pytest.fixture
def conn(tmp_path: Path):
    connection = open_spool(tmp_path / "spool.db")
    connection.execute(
        "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state)"
        " VALUES ('S1', 1.0, 'form', 'typeform', 'e1', 'submission', x'7b7d', 'pending')"
    )
    yield connection
    connection.close()


def _status(conn, destination: str) -> str:  # type: ignore[no-untyped-def]
    return conn.execute(
        "SELECT status FROM deliveries WHERE inbox_id='S1' AND destination=?", (destination,)
    ).fetchone()[0]


def test_claims_are_exclusive_and_recovered_after_a_crash(conn) -> None:  # type: ignore[no-untyped-def]
    assert claiming.claim_inbox(conn, time.time(), 10, "a") == ["S1"]
    assert claiming.claim_inbox(conn, time.time(), 10, "b") == []
    assert claiming.recover(conn, time.time()) == (1, 0)
    assert claiming.claim_inbox(conn, time.time(), 10, "b") == ["S1"]


def test_routing_twice_adds_only_what_is_missing_and_never_resends_delivered(conn) -> None:  # type: ignore[no-untyped-def]
    planned = [PlannedDelivery("crm", "r"), PlannedDelivery("slack", "r")]
    assert sorted(routing_store.save_routing(conn, time.time(), {"S1": ("{}", planned)}, {})) == [
        ("S1", "crm"),
        ("S1", "slack"),
    ]
    delivery_outcomes.record(
        conn,
        time.time(),
        [
            Decision("S1", "crm", "delivered", "delivered", status_code=200),
            Decision("S1", "slack", "dead", "failed", status_code=400, error="no_text"),
        ],
    )
    assert conn.execute("SELECT state FROM inbox WHERE id='S1'").fetchone()[0] == "failed"

    # Routed again (a replay of the whole submission): the delivered row is left alone.
    assert routing_store.save_routing(conn, time.time(), {"S1": ("{}", planned)}, {}) == []
    letters = report.dead_letters(conn)
    assert [(letter.destination, letter.reason) for letter in letters] == [("slack", "no_text")]
    assert report.replay(conn, letters, time.time()) == 1
    assert (_status(conn, "crm"), _status(conn, "slack")) == ("delivered", "pending")
    assert claiming.claim_due(conn, time.time() + 1, 10) == [("S1", "slack")]

    # A late outcome for a delivered row cannot undo it.
    delivery_outcomes.record(
        conn, time.time(), [Decision("S1", "crm", "retrying", "retry", next_attempt_at=0.0)]
    )
    assert _status(conn, "crm") == "delivered"
    assert conn.execute("SELECT attempts FROM deliveries WHERE destination='crm'").fetchone()[0] == 2
    delivery_outcomes.record(
        conn, time.time(), [Decision("S1", "slack", "delivered", "delivered", status_code=200)]
    )
    assert conn.execute("SELECT state FROM inbox WHERE id='S1'").fetchone()[0] == "done"


def test_unroutable_submission_is_a_dead_letter_that_replays_as_a_whole(conn) -> None:  # type: ignore[no-untyped-def]
    claiming.claim_inbox(conn, time.time(), 10, "a")
    routing_store.save_routing(
        conn, time.time(), {}, {"S1": "unnormalizable (typeform): body.form_response is missing"}
    )
    (letter,) = report.dead_letters(conn)
    assert letter.destination is None and "form_response" in letter.reason
    report.replay(conn, [letter], time.time())
    assert conn.execute("SELECT state, error FROM inbox WHERE id='S1'").fetchone() == ("pending", None)


def test_attempts_are_recorded_one_row_each(conn) -> None:  # type: ignore[no-untyped-def]
    routing_store.save_routing(conn, time.time(), {"S1": ("{}", [PlannedDelivery("crm", "r")])}, {})
    delivery_outcomes.record(
        conn,
        time.time(),
        [Decision("S1", "crm", "retrying", "retry", status_code=500, next_attempt_at=5.0, error="HTTP 500")],
    )
    delivery_outcomes.record(
        conn, time.time(), [Decision("S1", "crm", "delivered", "delivered", status_code=200)]
    )
    rows = conn.execute("SELECT attempt, outcome, status_code FROM attempts ORDER BY attempt").fetchall()
    assert rows == [(1, "retry", 500), (2, "delivered", 200)]
    assert conn.execute("SELECT last_error, delivered_at IS NOT NULL FROM deliveries").fetchone() == (None, 1)


def test_a_fetched_submission_is_read_back_as_stored_not_renormalized(conn) -> None:  # type: ignore[no-untyped-def]
    from hub.config.models import HubConfig
    from hub.routing.process import normalize_row
    from hub.submission import Submission

    parent = routing_store.load_inbox(conn, ["S1"])[0]
    child = Submission(
        id="C1",
        source="form",
        provider="typeform",
        event_id="resp-1",
        submitted_at="2026-01-01T00:00:00Z",
        answers=[{"key": "k", "label": "Q", "type": "t", "value": "A"}],
    )
    added = routing_store.add_expanded(
        conn, time.time(), parent, [("C1", "resp-1", child.model_dump_json())], "test"
    )
    assert list(added) == ["C1"]
    # The same response fetched again by a later notification is not stored twice.
    assert (
        routing_store.add_expanded(
            conn, time.time(), parent, [("C2", "resp-1", child.model_dump_json())], "test"
        )
        == {}
    )
    (row,) = routing_store.load_inbox(conn, ["C1"])
    assert row.kind == "fetched"
    assert normalize_row(HubConfig(), row) == child
    assert conn.execute("SELECT state FROM inbox WHERE id='S1'").fetchone()[0] == "done"


def test_a_submission_settles_only_when_no_delivery_is_open(conn) -> None:  # type: ignore[no-untyped-def]
    planned = [PlannedDelivery(d, "r") for d in ("crm", "slack", "mail")]
    routing_store.save_routing(conn, time.time(), {"S1": ("{}", planned)}, {})

    def state() -> tuple[str, str | None]:
        return conn.execute("SELECT state, error FROM inbox WHERE id='S1'").fetchone()

    delivery_outcomes.record(
        conn,
        time.time(),
        [
            Decision("S1", "crm", "dead", "failed", status_code=400, error="bad field"),
            Decision("S1", "slack", "retrying", "retry", status_code=429, next_attempt_at=9.0),
        ],
    )
    assert state() == ("routed", None)  # slack retries and mail has not been tried
    delivery_outcomes.record(
        conn,
        time.time(),
        [
            Decision("S1", "slack", "delivered", "delivered", status_code=200),
            Decision("S1", "mail", "dead", "failed", error="mailbox full"),
        ],
    )
    status, error = state()
    assert status == "failed"
    assert sorted(error.split("; ")) == ["crm: bad field", "mail: mailbox full"]


# --- time-dependent rules at a fixed instant: every clock read is the caller's `now` ----------

NOW = 1_000_000.0


def _inbox_times(conn) -> tuple[str, float | None, float | None]:  # type: ignore[no-untyped-def]
    return conn.execute("SELECT state, not_before, updated_at FROM inbox WHERE id='S1'").fetchone()


def _delivery_times(conn) -> tuple[str, float, float]:  # type: ignore[no-untyped-def]
    return conn.execute(
        "SELECT status, next_attempt_at, updated_at FROM deliveries WHERE inbox_id='S1' AND destination='crm'"
    ).fetchone()


def test_claim_due_takes_only_the_rows_due_at_now(conn) -> None:  # type: ignore[no-untyped-def]
    assert routing_store.save_routing(conn, NOW, {"S1": ("{}", [PlannedDelivery("crm", "r")])}, {}) == [
        ("S1", "crm")
    ]
    delivery_outcomes.record(
        conn, NOW, [Decision("S1", "crm", "retrying", "retry", next_attempt_at=NOW + 60)]
    )
    assert not claiming.has_work(conn, NOW + 59.9)
    assert claiming.claim_due(conn, NOW + 59.9, 10) == []
    assert claiming.has_work(conn, NOW + 60)
    assert claiming.claim_due(conn, NOW + 60, 10) == [("S1", "crm")]
    assert _delivery_times(conn) == ("sending", NOW + 60, NOW + 60)


def test_release_recover_and_record_stamp_the_given_now(conn) -> None:  # type: ignore[no-untyped-def]
    assert claiming.claim_inbox(conn, NOW, 10, "a") == ["S1"]
    assert conn.execute("SELECT claimed_at, updated_at FROM inbox").fetchone() == (NOW, NOW)
    claiming.release(conn, NOW + 1, ["S1"], [])
    assert _inbox_times(conn) == ("pending", None, NOW + 1)
    claiming.claim_inbox(conn, NOW + 2, 10, "a")
    assert claiming.recover(conn, NOW + 3) == (1, 0)
    assert _inbox_times(conn) == ("pending", None, NOW + 3)

    claiming.claim_inbox(conn, NOW + 4, 10, "a")
    routing_store.save_routing(conn, NOW + 5, {"S1": ("{}", [PlannedDelivery("crm", "r")])}, {})
    assert _delivery_times(conn) == ("sending", NOW + 5, NOW + 5)
    claiming.release(conn, NOW + 6, [], [("S1", "crm")])
    assert _delivery_times(conn) == ("pending", NOW + 5, NOW + 6)
    claiming.claim_due(conn, NOW + 7, 10)
    retry = Decision("S1", "crm", "retrying", "retry", status_code=503, next_attempt_at=NOW + 70)
    delivery_outcomes.record(conn, NOW + 8, [retry])
    assert _delivery_times(conn) == ("retrying", NOW + 70, NOW + 8)
    delivery_outcomes.record(
        conn, NOW + 9, [Decision("S1", "crm", "delivered", "delivered", status_code=200)]
    )
    times = conn.execute("SELECT first_attempt_at, last_attempt_at, delivered_at, updated_at FROM deliveries")
    assert times.fetchone() == (NOW + 8, NOW + 9, NOW + 9, NOW + 9)
    assert [at for (at,) in conn.execute("SELECT at FROM attempts ORDER BY attempt")] == [NOW + 8, NOW + 9]
    assert conn.execute("SELECT state, updated_at FROM inbox WHERE id='S1'").fetchone() == ("done", NOW + 9)


def test_fetch_later_holds_the_row_until_now_plus_delay(conn) -> None:  # type: ignore[no-untyped-def]
    claiming.claim_inbox(conn, NOW, 10, "a")
    routing_store.fetch_later(conn, NOW, "S1", 30.0, "provider API unreachable")
    assert _inbox_times(conn) == ("pending", NOW + 30, NOW)
    assert routing_store.fetch_attempts(conn, "S1") == 1
    assert claiming.pending_count(conn, NOW + 29.9) == 0
    assert not claiming.has_work(conn, NOW + 29.9)
    assert claiming.claim_inbox(conn, NOW + 29.9, 10, "a") == []
    assert claiming.pending_count(conn, NOW + 30) == 1
    assert claiming.claim_inbox(conn, NOW + 30, 10, "a") == ["S1"]


def test_suspects_of_a_failed_flow_run_wait_out_the_backoff_from_now(conn) -> None:  # type: ignore[no-untyped-def]
    claiming.claim_inbox(conn, NOW, 10, "a")
    assert suspects.flow_failed(conn, ["S1"], [], "RuntimeError: boom", NOW, 60.0, 3) == []
    assert _inbox_times(conn) == ("pending", NOW + 60, NOW)
    assert suspects.claim_suspects(conn, NOW + 59.9, "b") == ([], [])
    assert claiming.claim_inbox(conn, NOW + 3600, 10, "b") == []  # a suspect is never fresh work
    assert suspects.claim_suspects(conn, NOW + 60, "b") == (["S1"], [])

    routing_store.save_routing(conn, NOW + 61, {"S1": ("{}", [PlannedDelivery("crm", "r")])}, {})
    assert suspects.flow_failed(conn, [], [("S1", "crm")], "RuntimeError: boom", NOW + 62, 60.0, 3) == []
    assert _delivery_times(conn) == ("pending", NOW + 122, NOW + 62)
    assert claiming.claim_due(conn, NOW + 1000, 10) == []  # a suspect delivery is not claimed as due
    assert suspects.claim_suspects(conn, NOW + 121.9, "b") == ([], [])
    assert suspects.claim_suspects(conn, NOW + 122, "b") == ([], [("S1", "crm")])


def test_a_disabled_destination_is_stamped_with_the_given_now(conn) -> None:  # type: ignore[no-untyped-def]
    delivery_outcomes.disable_destination(conn, NOW, "crm", "token revoked")
    assert conn.execute("SELECT destination, since, reason FROM disabled_destinations").fetchall() == [
        ("crm", NOW, "token revoked")
    ]
