"""Prefect shows the truth: states, run logs and tags of a batch, read back through Prefect's client.

A real hub (uvicorn, dispatcher, Prefect's ephemeral server, a delivery worker process) delivers
two Typeform submissions to three loopback destinations: one refuses them (400: dead letters),
one fails for now (500: retrying), one takes them. Ids in the config are unique to this module,
so its `source:` and `destination:` tags find only its own runs in Prefect's shared database.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import sqlite3
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.destination_helpers import captured_logs
from tests.fake_destination import FakeDestination
from tests.harness import PROVIDER_FIXTURES, load_fixture, start_hub, wait_for

FULL = load_fixture(PROVIDER_FIXTURES / "typeform" / "full_event_registration.json")
MINIMAL = load_fixture(PROVIDER_FIXTURES / "typeform" / "minimal.json")
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FIRST_DELIVERY = 180.0  # Prefect's ephemeral server starts with the session's first flow run
SECRET_IN_ANSWER = "refused-because-of-answer-text"
"""What the refusing destination answers: a reason the ledger keeps and no log may show."""

CONFIG = """
sources:
  states-form:
    provider: typeform
    secret: {secret}
destinations:
  states-crm:
    type: webhook
    url: {url}/crm
    secret: {whsec}
  states-flaky:
    type: webhook
    url: {url}/flaky
    secret: {whsec}
    retry: {{initial: 3600}}
  states-archive:
    type: webhook
    url: {url}/archive
    secret: {whsec}
routes:
  - name: everything
    from: [states-form]
    to: [states-crm, states-flaky, states-archive]
dispatch: {{batch_wait: 1.0, delivery_processes: 0}}
"""


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    """The hub's own log records (the dispatcher logs from its thread), at every level."""
    with captured_logs("hookhub") as found:
        yield found


def events(records: list[logging.LogRecord], event: str) -> list[logging.LogRecord]:
    return [r for r in records if getattr(r, "event", None) == event]


def prefect(query: Callable[[Any], Coroutine[Any, Any, Any]]) -> Any:
    """Run `query(client)` against the Prefect API the hub uses."""
    from prefect.client.orchestration import get_client

    async def run() -> Any:
        async with get_client() as client:
            return await query(client)

    return asyncio.run(run())


def flow_runs(tag: str) -> list[Any]:
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterTags

    return prefect(  # type: ignore[no-any-return]
        lambda c: c.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[tag])))
    )


def ended_runs(source: str) -> list[Any]:
    """The flow runs tagged with `source`, once they have ended."""
    return wait_for(  # type: ignore[no-any-return]
        lambda: [r for r in flow_runs(f"source:{source}") if r.state and r.state.is_final()],
        30,
        what=f"the flow runs of {source} to end",
    )


def task_runs(flow_run_ids: list[Any]) -> list[Any]:
    """The task runs of these flow runs."""
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    return prefect(  # type: ignore[no-any-return]
        lambda c: c.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=flow_run_ids)))
    )


def run_logs(task_run_ids: list[Any]) -> list[Any]:
    from prefect.client.schemas.filters import LogFilter, LogFilterTaskRunId

    return prefect(  # type: ignore[no-any-return]
        lambda c: c.read_logs(log_filter=LogFilter(task_run_id=LogFilterTaskRunId(any_=task_run_ids)))
    )


def statuses(spool: Path) -> dict[str, list[str]]:
    conn = sqlite3.connect(spool)
    try:
        found: dict[str, list[str]] = {}
        for destination, status in conn.execute("SELECT destination, status FROM deliveries"):
            found.setdefault(destination, []).append(status)
        return found
    finally:
        conn.close()


def post(url: str, fixture: dict[str, Any], source: str = "states-form") -> str:
    headers = {k: v for k, v in fixture["headers"].items() if k.lower() != "content-length"}
    answer = httpx.post(
        f"{url}/hooks/{source}", content=fixture["body"].encode("utf-8"), headers=headers, timeout=30
    )
    assert answer.status_code == 200 and answer.json()["status"] == "accepted", answer.text
    return str(answer.json()["id"])


def test_dead_letters_fail_the_task_and_flow_runs_with_run_logs_and_tags(
    tmp_path: Path, records: list[logging.LogRecord]
) -> None:
    assert FULL["secret"] == MINIMAL["secret"]
    fake = FakeDestination().start()
    config = tmp_path / "connectors.yaml"
    config.write_text(CONFIG.format(secret=FULL["secret"], url=fake.url(""), whsec=WHSEC), encoding="utf-8")
    fake.script("/crm", *[(400, {}, SECRET_IN_ANSWER)] * 2)
    fake.script("/flaky", *[(500, {}, SECRET_IN_ANSWER)] * 2)
    hub, server = start_hub(config, tmp_path / "data", dispatch=True)
    try:
        ids = {post(server.url, FULL), post(server.url, MINIMAL)}
        settled = {
            "states-crm": ["dead"] * 2,
            "states-flaky": ["retrying"] * 2,
            "states-archive": ["delivered"] * 2,
        }
        wait_for(lambda: statuses(hub.spool_path) == settled, FIRST_DELIVERY, what="every delivery settled")
        ended = ended_runs("states-form")
    finally:
        server.stop()
        fake.stop()

    # The flow run says what happened: Failed, with the count of dead deliveries, and carries the tags.
    assert all(r.state.is_failed() for r in ended), [r.state for r in ended]
    assert sum(int(r.state.message.split(" of ")[0]) for r in ended) == 2, [r.state.message for r in ended]
    assert all("deliveries dead" in r.state.message for r in ended)
    for run in ended:
        assert {"source:states-form", "destination:states-crm", "destination:states-archive"} <= set(run.tags)

    # Each deliver task run: named after its destination, untagged (a tag costs a concurrency
    # slot request through Prefect's API at every start), Failed where items died.
    runs = task_runs([r.id for r in ended])
    crm, flaky, archive = (
        [t for t in runs if t.name.endswith(f" to {d}")]
        for d in ("states-crm", "states-flaky", "states-archive")
    )
    assert crm and flaky and archive
    assert all(t.state.is_failed() and "deliveries to states-crm dead" in t.state.message for t in crm)
    assert all(t.state.is_completed() for t in flaky + archive), [t.state for t in flaky + archive]
    assert all(t.tags == [] for t in runs), [t.tags for t in runs]

    # One summary record per task run in Prefect's run logs: counts, ids, reason class; no reason text.
    everything = crm + flaky + archive
    logs = wait_for(
        lambda: (
            (found := run_logs([t.id for t in everything]))
            and {log.task_run_id for log in found if log.name == "hookhub.runs"} == {t.id for t in everything}
            and found
        ),
        30,
        what="a summary record of every task run",
    )
    summaries = [log for log in logs if log.name == "hookhub.runs"]
    assert len(summaries) == len(everything)
    by_task = {log.task_run_id: log for log in summaries}
    dead_lines = [by_task[t.id] for t in crm]
    assert all(
        line.level == logging.ERROR and "(HTTP 400 Bad Request)" in line.message for line in dead_lines
    )
    assert ids == {i for line in dead_lines for i in ids if i in line.message}
    assert all(by_task[t.id].level == logging.WARNING and "HTTP 500" in by_task[t.id].message for t in flaky)
    assert all(by_task[t.id].level == logging.INFO for t in archive)
    assert not [log for log in logs if SECRET_IN_ANSWER in log.message]

    # The dispatcher counted such runs as done batches: no suspects, one error line each that says so.
    assert not events(records, "flow_failed")
    done = events(records, "batch_done")
    assert len(done) == len(ended) and all(r.levelno == logging.ERROR for r in done)
    assert sum(r.outcomes.get("dead", 0) for r in done) == 2  # type: ignore[attr-defined]
    assert all("delivered" in r.getMessage() and "dead" in r.getMessage() for r in done)
    conn = sqlite3.connect(hub.spool_path)
    try:
        assert conn.execute("SELECT count(*) FROM inbox WHERE retry_group IS NOT NULL").fetchone() == (0,)
    finally:
        conn.close()
    # A dead letter is logged at error, a retry at warning, each with the destination and reason class.
    deliveries = events(records, "delivery")
    dead = [r for r in deliveries if r.destination == "states-crm"]  # type: ignore[attr-defined]
    assert len(dead) == 2 and all(r.levelno == logging.ERROR for r in dead)
    assert all(r.reason == "HTTP 400 Bad Request" for r in dead)  # type: ignore[attr-defined]
    retried = [r for r in deliveries if r.destination == "states-flaky"]  # type: ignore[attr-defined]
    assert len(retried) == 2 and all(r.levelno == logging.WARNING for r in retried)


UNROUTABLE = """
sources:
  unroutable-form:
    provider: typeform
    secret: {secret}
destinations:
  unroutable-archive:
    type: file
    path: out.jsonl
routes:
  - name: everything
    from: [unroutable-form]
    to: [unroutable-archive]
dispatch: {{batch_wait: 1.0, delivery_processes: 0}}
"""


def signed(body: dict[str, Any]) -> dict[str, Any]:
    """A Typeform delivery of `body`, signed with the fixtures' secret."""
    raw = json.dumps(body)
    digest = hmac.new(FULL["secret"].encode(), raw.encode(), hashlib.sha256).digest()
    return {
        "body": raw,
        "headers": {
            "Content-Type": "application/json",
            "Typeform-Signature": "sha256=" + base64.b64encode(digest).decode(),
        },
    }


def test_a_submission_dead_before_delivery_fails_its_routing_task_and_the_flow_run(tmp_path: Path) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text(UNROUTABLE.format(secret=FULL["secret"]), encoding="utf-8")
    broken = signed(
        {"event_id": "unroutable-1", "event_type": "form_response", "form_response": "not an object"}
    )
    hub, server = start_hub(config, tmp_path / "data", dispatch=True)
    try:
        good, bad = post(server.url, MINIMAL, "unroutable-form"), post(server.url, broken, "unroutable-form")
        wait_for(
            lambda: statuses(hub.spool_path) == {"unroutable-archive": ["delivered"]},
            FIRST_DELIVERY,
            what="delivered",
        )
        ended = ended_runs("unroutable-form")
    finally:
        server.stop()
    assert len(ended) == 1 and ended[0].state.is_failed(), [r.state for r in ended]
    assert ended[0].state.message.startswith("1 submissions dead before delivery"), ended[0].state.message
    tasks = task_runs([ended[0].id])
    routing = [t for t in tasks if t.name.startswith("normalize and route")]
    assert len(routing) == 1 and routing[0].state.is_failed()
    assert routing[0].state.message == "1 of 2 submissions dead before delivery"
    assert [t.state.type.value for t in tasks if t.name.startswith("deliver")] == ["COMPLETED"]
    summary = wait_for(
        lambda: [log for log in run_logs([routing[0].id]) if log.name == "hookhub.runs"],
        30,
        what="its summary",
    )
    assert len(summary) == 1 and summary[0].level == logging.ERROR
    assert f"dead 1 (normalize failed): {bad}" in summary[0].message and good not in summary[0].message
