"""A delivery held back by a target's pause (a 429's Retry-After) is deferred, not attempted.

Deferred: rescheduled to the end of the pause, with `attempts`, the backoff and `max_attempts`
untouched and no row in the `attempts` table. Checked on `decide()`, on the ledger (real
SQLite), on every destination type that holds sends during a pause, and end to end through a
real hub, its Prefect flow runs and a loopback receiver that answers 429 with Retry-After.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

import tests.test_destination_hubspot as hubspot_cases
import tests.test_destination_pipedrive as pipedrive_cases
import tests.test_destination_postmark as postmark_cases
import tests.test_destination_salesforce as salesforce_cases
import tests.test_destination_sendgrid as sendgrid_cases
import tests.test_destination_slack as slack_cases
import tests.test_destination_smtp as smtp_cases
import tests.test_destination_webhook as webhook_cases
from flows.destinations import get_destination
from flows.destinations.base import DeliveryContext, DeliveryItem, Outcome, RetryPolicy
from flows.retry import DEFERRAL_JITTER, decide
from hub.config.loader import load_config
from hub.runtime import prepare_sources
from hub.spool import claiming, delivery_outcomes, routing_store
from hub.spool.rows import DeliveryRow, PlannedDelivery
from hub.spool.transactions import open_spool
from tests import email_destination_cases as email_cases
from tests.harness import RunningServer, serve_app, start_hub, wait_for

PAUSE = 600.0
"""Longer than any destination waits out inline, so every one of them must defer."""


def _row(attempts: int = 0, first: float | None = None) -> DeliveryRow:
    return DeliveryRow("S1", "crm", "r", attempts, first, None, "{}")


def _deferred(seconds: float) -> Outcome:
    return Outcome(
        key="S1.crm", status="retry", reason="not sent: paused", retry_after=seconds, deferred=True
    )


# --- decide() -------------------------------------------------------------------------------


def test_a_deferral_is_due_at_the_end_of_the_pause_and_counts_no_attempt() -> None:
    policy = RetryPolicy(initial=10, max_delay=3600)
    now = 1000.0
    for attempts in (0, 3, 12):  # whatever the backoff has grown to, the pause alone decides
        decision = decide(
            _row(attempts=attempts, first=now - 60 if attempts else None), _deferred(2.0), policy, now
        )
        assert decision.status == "retrying" and decision.outcome == "deferred"
        assert decision.attempted is False
        assert decision.next_attempt_at is not None
        assert (
            now + 2.0 <= decision.next_attempt_at <= now + 2.0 + 0.2
        )  # jitter: at most a tenth of the pause
    long = decide(_row(), _deferred(300.0), policy, now)
    assert (
        long.next_attempt_at is not None and now + 300 <= long.next_attempt_at <= now + 300 + DEFERRAL_JITTER
    )


def test_a_deferral_never_reaches_max_attempts() -> None:
    policy = RetryPolicy(initial=1, max_delay=10, max_attempts=2)
    one_left = _row(attempts=1, first=0.0)
    assert decide(one_left, _deferred(1.0), policy, 5.0).status == "retrying"
    # The same row answered with a real failure is at its limit: that one counts.
    real = Outcome(key="S1.crm", status="retry", status_code=429, retry_after=1.0)
    assert decide(one_left, real, policy, 5.0).status == "dead"


def test_a_pause_past_the_horizon_makes_a_dead_letter_without_an_attempt() -> None:
    policy = RetryPolicy(initial=1, max_delay=10, horizon=3600)
    late = decide(_row(attempts=4, first=0.0), _deferred(600.0), policy, 3300.0)
    assert (late.status, late.outcome, late.attempted) == ("dead", "gave_up", False)
    assert late.error is not None and "gave up after 4 attempts" in late.error and "1 h" in late.error
    never_sent = decide(_row(), _deferred(7200.0), policy, 3300.0)
    assert never_sent.status == "dead" and "after 0 attempts" in (never_sent.error or "")
    assert decide(_row(), _deferred(600.0), policy, 3300.0).status == "retrying"  # horizon from now


# --- the ledger -----------------------------------------------------------------------------


@pytest.fixture
def conn(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    connection = open_spool(tmp_path / "spool.db")
    connection.execute(
        "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state)"
        " VALUES ('S1', 1.0, 'form', 'typeform', 'e1', 'submission', x'7b7d', 'pending')"
    )
    routing_store.save_routing(connection, time.time(), {"S1": ("{}", [PlannedDelivery("crm", "r")])}, {})
    yield connection
    connection.close()


def test_the_ledger_reschedules_a_deferral_without_an_attempt_row(conn: sqlite3.Connection) -> None:
    policy = RetryPolicy(initial=1, max_delay=10)
    (row,) = delivery_outcomes.load_deliveries(conn, [("S1", "crm")])
    real = Outcome(key="S1.crm", status="retry", status_code=429, retry_after=2.0, reason="HTTP 429")
    delivery_outcomes.record(conn, time.time(), [decide(row, real, policy, time.time())])
    (row,) = delivery_outcomes.load_deliveries(conn, [("S1", "crm")])
    now = time.time()
    delivery_outcomes.record(conn, now, [decide(row, _deferred(30.0), policy, now)])
    delivery_outcomes.record(conn, now, [decide(row, _deferred(30.0), policy, now)])

    attempts, status, due, code = conn.execute(
        "SELECT attempts, status, next_attempt_at, last_status_code FROM deliveries"
    ).fetchone()
    assert (attempts, status, code) == (1, "retrying", 429)  # the one real send; its answer is kept
    assert now + 30 <= due <= now + 30 + DEFERRAL_JITTER
    assert conn.execute("SELECT attempt, outcome, status_code FROM attempts").fetchall() == [
        (1, "retry", 429)
    ]
    # The dispatcher does not pick it up again while the pause lasts, and does after it.
    assert claiming.claim_due(conn, now + 29, 10) == []
    assert claiming.claim_due(conn, due, 10) == [("S1", "crm")]


# --- every destination that holds sends during a pause --------------------------------------


@dataclass
class PausedPacer:
    """Every key paused for PAUSE seconds: what a destination sees right after a 429."""

    paused: list[str] = field(default_factory=list)

    def paused_for(self, key: str) -> float:
        self.paused.append(key)
        return PAUSE

    async def acquire(self, key: str, limit: int, window: float, max_wait: float | None = None) -> bool:
        assert max_wait is not None and max_wait < PAUSE, "would hold the task for the whole pause"
        self.paused.append(key)
        return False

    async def wait_turn(self, key: str, min_interval: float) -> None:
        raise AssertionError("waited for a turn on a paused key instead of deferring")

    def pause(self, key: str, seconds: float) -> None:
        raise AssertionError("nothing was sent, so nothing can have asked for a pause")

    def observe(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("nothing was sent, so no budget can have been reported")


class NoNetwork:
    """An HTTP client that fails the test when anything tries to send through it."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"a request was made (http.{name}) while the target was paused")


def _never_send(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("an e-mail was sent while the server was paused")


def _email_item(n: int) -> DeliveryItem:
    return email_cases.item(n)


CASES: dict[str, tuple[Callable[[], BaseModel], Callable[[int], DeliveryItem]]] = {
    "webhook": (webhook_cases.config, webhook_cases.item),
    "slack": (slack_cases.config, slack_cases.item),
    "slack-api": (slack_cases.api_config, slack_cases.item),
    "hubspot": (hubspot_cases.config, lambda n: hubspot_cases.item(n=n)),
    "salesforce": (salesforce_cases.config, salesforce_cases.item),
    "pipedrive": (pipedrive_cases.config, pipedrive_cases.item),
    "postmark": (postmark_cases.config, _email_item),
    "sendgrid": (sendgrid_cases.config, _email_item),
    "smtp": (smtp_cases.config, _email_item),
}


@pytest.mark.anyio
@pytest.mark.parametrize("case", sorted(CASES))
async def test_every_destination_defers_while_its_target_is_paused(case: str) -> None:
    make_config, make_item = CASES[case]
    config = make_config()
    items = [make_item(n) for n in (1, 2, 3)]
    pacer = PausedPacer()
    context = DeliveryContext(
        http=NoNetwork(), pacer=pacer, destination_id=case, extra={"smtp_send": _never_send}
    )
    destination = get_destination(str(config.type))
    outcomes = await destination.deliver(items, config, context)
    assert sorted(o.key for o in outcomes) == sorted(i.key for i in items)
    for outcome in outcomes:
        assert (outcome.status, outcome.deferred) == ("retry", True), outcome
        assert outcome.retry_after is not None and outcome.retry_after >= 1
        assert outcome.reason is not None and outcome.reason.startswith("not sent")
    assert pacer.paused  # the pause was what held them


# --- end to end -----------------------------------------------------------------------------

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TYPEFORM_SECRET = "deferral-typeform-secret"
SUBMISSIONS = 12
ROUNDS = 3
FIRST_DELIVERY = 240.0
"""Prefect's ephemeral server starts with the session's first flow run: allow for it."""


@dataclass
class PausingSink:
    """A receiver that answers `429, Retry-After: 1` to the first request of each of `rounds`
    rounds (a round starts once the previous pause is over) and 200 to everything else; never
    429 twice to one delivery, so no delivery needs more than two real attempts."""

    rounds: int
    answers: list[tuple[float, str, int]] = field(default_factory=list)
    _refused: set[str] = field(default_factory=set)
    _paused_until: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    server: RunningServer | None = None

    async def _handle(self, request: Request) -> Response:
        await request.body()
        delivery = request.headers.get("webhook-id", "")
        with self._lock:
            now = time.time()
            status = 200
            if self.rounds and now >= self._paused_until and delivery not in self._refused:
                self.rounds -= 1
                self._refused.add(delivery)
                self._paused_until = now + 1.0
                status = 429
            self.answers.append((now, delivery, status))
        headers = {"retry-after": "1"} if status == 429 else {}
        return Response("slow down" if status == 429 else "{}", status_code=status, headers=headers)

    def start(self) -> PausingSink:
        self.server = serve_app(Starlette(routes=[Route("/sink", self._handle, methods=["POST"])]))
        return self

    def url(self) -> str:
        assert self.server is not None
        return f"{self.server.url}/sink"


@pytest.fixture
def sink() -> Iterator[PausingSink]:
    running = PausingSink(rounds=ROUNDS).start()
    yield running
    assert running.server is not None
    running.server.stop()


def _write_config(path: Path, sink: PausingSink) -> Path:
    # One chunk at a time, one request at a time: each 429 reaches the hub before anything
    # else is sent, so any request inside a pause would be the hub's fault.
    path.write_text(
        f"""
sources:
  contact-form: {{provider: typeform, secret: {TYPEFORM_SECRET}}}
destinations:
  sink:
    type: webhook
    url: "{sink.url()}"
    secret: {WHSEC}
    concurrency: 1
    retry: {{initial: 1, max_delay: 2, max_attempts: 2}}
routes:
  - {{name: all, from: [contact-form], to: [sink]}}
dispatch: {{max_flows: 1, batch_wait: 0.5}}
""",
        encoding="utf-8",
    )
    return path


def _post_signed(config: Path, url: str, count: int) -> list[str]:
    source = prepare_sources(load_config(config))["contact-form"]
    ids = []
    for _ in range(count):
        request = source.connector.sample_request(source.config, f"{url}/hooks/contact-form", time.time())
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        answer = httpx.post(f"{url}/hooks/contact-form", content=request.body, headers=headers, timeout=30)
        assert answer.status_code == 200, answer.text
        ids.append(answer.json()["id"])
    return ids


def _deliveries(spool: Path) -> dict[str, tuple[str, int]]:
    conn = sqlite3.connect(spool)
    try:
        return {i: (s, a) for i, s, a in conn.execute("SELECT inbox_id, status, attempts FROM deliveries")}
    finally:
        conn.close()


def test_deliveries_held_by_a_429_are_sent_after_it_not_dead_lettered(
    tmp_path: Path, sink: PausingSink
) -> None:
    hub, server = start_hub(
        _write_config(tmp_path / "connectors.yaml", sink), tmp_path / "data", dispatch=True
    )
    try:
        ids = _post_signed(tmp_path / "connectors.yaml", server.url, SUBMISSIONS)
        wait_for(
            lambda: (
                len(_deliveries(hub.spool_path)) == SUBMISSIONS
                and all(status in ("delivered", "dead") for status, _ in _deliveries(hub.spool_path).values())
            ),
            timeout=FIRST_DELIVERY,
            what="every delivery to settle",
        )
    finally:
        server.stop()

    deliveries = _deliveries(hub.spool_path)
    assert sorted(deliveries) == sorted(ids)
    # max_attempts 2 and at most one real failure each: deferrals did not count, nothing died.
    dead = sorted(i for i, (status, _) in deliveries.items() if status != "delivered")
    assert not dead, f"{len(dead)} of {SUBMISSIONS} dead-lettered (deferrals counted as attempts?)"
    assert sink.rounds == 0, "the receiver asked for fewer pauses than planned: the test proves nothing"
    refused = {delivery for _, delivery, status in sink.answers if status == 429}
    assert len(refused) == ROUNDS
    assert {i: a for i, (_, a) in deliveries.items()} == {i: 2 if f"{i}.sink" in refused else 1 for i in ids}

    # The attempts table holds exactly what the receiver received, answer for answer.
    conn = sqlite3.connect(hub.spool_path)
    try:
        recorded = sorted(
            conn.execute("SELECT inbox_id || '.' || destination, status_code FROM attempts").fetchall()
        )
    finally:
        conn.close()
    assert recorded == sorted((delivery, status) for _, delivery, status in sink.answers)

    # Nothing reached the receiver before a Retry-After it gave had passed.
    pauses = [at for at, _, status in sink.answers if status == 429]
    early = [(at, paused) for at, _, _ in sink.answers for paused in pauses if paused < at < paused + 1.0]
    assert not early, f"sent during a pause: {early}"
