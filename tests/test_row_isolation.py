"""No single row may fail a batch: each stage of the flow gets a row that makes it raise.

A real hub on a loopback socket with the real dispatcher and real Prefect runs; the failing
parts are handed in through the dispatcher's `stages` (a connector, a `when`, a destination)
and `run_flow`, each failing only for the submission whose name carries its marker. Every
other submission must be delivered, and each poisoned one must be a dead letter saying why.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from pydantic import BaseModel

from connectors import get_connector
from connectors.base import Connector, InboundRequest, NormalizeContext, SourceSettings
from connectors.typeform import TypeformConnector
from flows.destinations import get_destination
from flows.destinations.base import DeliveryContext, DeliveryItem, Destination, Outcome
from flows.destinations.file import FileDestination
from flows.stages import Stages
from hub.cli import main as cli
from hub.dispatch import Dispatcher
from hub.routing.plan import compiled_condition
from hub.routing.when import Condition
from hub.server import Hub
from hub.spool import claiming, delivery_outcomes, report, routing_store, suspects
from hub.spool.ids import new_id
from hub.spool.routing_store import load_inbox
from hub.spool.rows import Decision, PlannedDelivery
from hub.spool.schema import connect
from hub.spool.transactions import open_spool
from hub.submission import Submission
from tests.harness import RunningServer, serve_app, wait_for

SECRET = "row-isolation-secret"
# Prefect's ephemeral server starts with the first flow run of the session: allow for it.
FIRST_DELIVERY = 180.0

CONFIG = f"""
sources:
  forms: {{provider: typeform, secret: {SECRET}}}
destinations:
  out: {{type: file, path: out.jsonl}}
routes:
  - {{name: everyone, from: [forms], when: "not exists(hidden.never)", to: [out]}}
dispatch: {{batch_size: 100, batch_wait: 1.0, chunk_size: 100, max_flows: 2, delivery_processes: 0}}
"""


class PoisonedTypeform(TypeformConnector):
    """Typeform, but normalizing, fetching and encoding fail for the submissions named so."""

    fetches = True  # so the flow's fetch stage runs for every row

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        if b"BOOM-normalize" in request.body:
            raise RuntimeError("normalize exploded")
        submission = super().normalize(request, context)
        if "BOOM-json" in (submission.name or ""):
            # A value no JSON encoder takes, whatever its text: encoding fails after sanitizing too.
            return submission.model_copy(update={"metadata": {"opaque": object()}})
        return submission

    async def expand(self, submission: Submission, source: SourceSettings, http: Any) -> list[Submission]:
        if "BOOM-fetch" in (submission.name or ""):
            raise TypeError("expand exploded")
        return [submission]


class PoisonedFile(FileDestination):
    """The file destination, but the whole chunk raises if it holds BOOM-deliver, and BOOM-record
    gets an outcome whose reason SQLite cannot store (a lone surrogate, as a receiver's text may be)."""

    async def deliver(
        self, items: list[DeliveryItem], config: BaseModel, context: DeliveryContext
    ) -> list[Outcome]:
        if any("BOOM-deliver" in (item.submission.name or "") for item in items):
            raise ValueError("deliver exploded")
        record = [item for item in items if "BOOM-record" in (item.submission.name or "")]
        outcomes = await super().deliver([i for i in items if i not in record], config, context)
        refused = [Outcome(key=item.key, status="failed", reason="receiver said \ud800") for item in record]
        return outcomes + refused


def poisoned_condition(text: str) -> Condition:
    real = compiled_condition(text)

    def condition(submission: Submission) -> Any:
        if "BOOM-when" in (submission.name or ""):
            raise KeyError("when exploded")
        return real(submission)

    return condition


def poisoned_connector(provider: str) -> Connector:
    return PoisonedTypeform() if provider == "typeform" else get_connector(provider)


def poisoned_destination(type_name: str) -> Destination:
    return PoisonedFile() if type_name == "file" else get_destination(type_name)


POISONED = Stages(
    connector=poisoned_connector, condition=poisoned_condition, destination=poisoned_destination
)


def typeform_body(name: str) -> bytes:
    """A Typeform form_response whose name answer is `name`, JSON-escaped as JavaScript writes it."""
    payload = {
        "event_id": new_id(),
        "event_type": "form_response",
        "form_response": {
            "form_id": "isoForm",
            "token": new_id(),
            "submitted_at": "2026-12-01T10:00:00Z",
            "definition": {
                "id": "isoForm",
                "title": "Isolation",
                "fields": [{"id": "nameFld", "ref": "full_name", "type": "short_text", "title": "Full name"}],
            },
            "answers": [
                {
                    "type": "text",
                    "text": name,
                    "field": {"id": "nameFld", "type": "short_text", "ref": "full_name"},
                }
            ],
        },
    }
    # ensure_ascii: a lone surrogate is written as the escape `\ud83d`, as JSON.stringify does.
    return json.dumps(payload, ensure_ascii=True).encode("ascii")


def post(server: RunningServer, body: bytes) -> str:
    signature = "sha256=" + base64.b64encode(hmac.digest(SECRET.encode(), body, hashlib.sha256)).decode()
    answer = httpx.post(
        f"{server.url}/hooks/forms",
        content=body,
        timeout=30,
        headers={"content-type": "application/json", "typeform-signature": signature},
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Any]:
    running: list[RunningServer] = []

    def start_hub(**dispatcher: Any) -> tuple[Hub, RunningServer]:
        from hub.runtime import ConfigHolder

        config = tmp_path / "connectors.yaml"
        config.write_text(CONFIG, encoding="utf-8")
        hub = Hub(config=ConfigHolder(config), data_dir=tmp_path / "data", watch_config=False)
        hub.services.append(Dispatcher(hub, **dispatcher))
        server = serve_app(hub.app())
        running.append(server)
        return hub, server

    yield start_hub
    for server in running:
        server.stop()


def states(hub: Hub) -> dict[str, tuple[str, str | None]]:
    conn = sqlite3.connect(hub.spool_path)
    try:
        return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, state, error FROM inbox")}
    finally:
        conn.close()


def delivered_lines(hub: Hub) -> list[dict[str, Any]]:
    path = hub.data_dir / "out.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def dead_letters(hub: Hub) -> dict[str, str]:
    conn = connect(hub.spool_path)
    try:
        return {letter.inbox_id: letter.reason for letter in report.dead_letters(conn)}
    finally:
        conn.close()


def test_each_stage_fails_one_row_and_the_others_are_delivered(start, capsys) -> None:
    hub, server = start(stages=POISONED)
    # The surrogate first, as in the report that found it: it used to hold back everything after it.
    surrogate = post(server, typeform_body("Ren\ud83d"))
    poisoned = {
        stage: post(server, typeform_body(f"Someone BOOM-{stage}"))
        for stage in ("normalize", "fetch", "when", "json", "deliver", "record")
    }
    normal = [post(server, typeform_body(f"Person {n}")) for n in range(20)]

    settled = ("done", "failed")
    wait_for(
        lambda: all(states(hub)[i][0] in settled for i in [surrogate, *poisoned.values(), *normal]),
        timeout=FIRST_DELIVERY,
        what="every submission to be delivered or a dead letter",
    )
    by_id = {line["id"]: line for line in delivered_lines(hub)}
    assert all(states(hub)[i][0] == "done" for i in normal)
    assert set(normal) <= set(by_id) and len(by_id) == len(normal) + 1  # once each, plus the surrogate

    # Stored and sent with U+FFFD where the lone surrogate was; the raw request is kept as it came.
    assert states(hub)[surrogate][0] == "done"
    assert by_id[surrogate]["name"] == "Ren\ufffd"
    assert by_id[surrogate]["answers"][0]["value"] == "Ren\ufffd"
    conn = connect(hub.spool_path)
    try:
        [row] = load_inbox(conn, [surrogate])
    finally:
        conn.close()
    assert b'"Ren\\ud83d"' in row.body

    letters = dead_letters(hub)
    expected = {
        "normalize": "unnormalizable (typeform): normalize exploded",
        "fetch": "could not complete it from the provider's API: TypeError: expand exploded",
        "when": "route 'everyone': `when` failed: KeyError: 'when exploded'",
        "json": "cannot be routed: PydanticSerializationError",
        "deliver": "destination error for this submission: ValueError: deliver exploded",
        "record": "its outcome (failed) could not be recorded: UnicodeEncodeError",
    }
    for stage, inbox_id in poisoned.items():
        assert states(hub)[inbox_id][0] == "failed", stage
        assert expected[stage] in letters[inbox_id], (stage, letters[inbox_id])

    # What an operator sees, and what a replay does: the poisoned rows go back into the queue.
    data_dir = str(hub.data_dir)
    assert cli(["deadletters", "--data-dir", data_dir]) == 0
    shown = capsys.readouterr().out
    assert all(inbox_id in shown for inbox_id in poisoned.values())
    assert "`when` failed: KeyError" in shown
    assert cli(["replay", "--data-dir", data_dir, "--all"]) == 0
    wait_for(
        lambda: all(states(hub)[i][0] == "failed" for i in poisoned.values()),
        timeout=60,
        what="the replayed rows to fail again, each on its own",
    )
    assert len(delivered_lines(hub)) == len(normal) + 1


def test_a_flow_that_fails_for_no_rows_reason_is_bisected_and_its_row_quarantined(start) -> None:
    from flows.pipeline import deliver_batch

    runs: list[int] = []

    async def crashing_flow(**params: Any) -> dict[str, int]:
        """The real flow, but a run holding the marked row fails before any stage can blame it."""
        conn = connect(Path(params["store"]))
        try:
            rows = load_inbox(conn, params["inbox_ids"])
        finally:
            conn.close()
        runs.append(len(params["inbox_ids"]) + len(params["due"]))
        if any(b"BOOM-flow" in row.body for row in rows):
            raise RuntimeError("the flow run crashed")
        return await deliver_batch(**params)

    hub, server = start(run_flow=crashing_flow, flow_failure_backoff=0.3)
    culprit = post(server, typeform_body("Someone BOOM-flow"))
    normal = [post(server, typeform_body(f"Person {n}")) for n in range(20)]

    wait_for(
        lambda: states(hub)[culprit][0] == "failed" and all(states(hub)[i][0] == "done" for i in normal),
        timeout=FIRST_DELIVERY,
        what="the others delivered and the culprit quarantined",
    )
    assert sorted(line["id"] for line in delivered_lines(hub)) == sorted(normal)
    reason = dead_letters(hub)[culprit]
    assert reason.startswith(
        "quarantined after 3 failed flow runs of it alone: RuntimeError: the flow run crashed"
    )
    # Bisected (the first batch held all 21 if they came together) and retried alone three times.
    assert runs.count(1) >= 3


# The recording stage on its own, on a real spool: a batch SQLite refuses is written row by row.


@pytest.fixture
def spool(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    conn = open_spool(tmp_path / "spool.db")
    conn.executemany(
        "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state, claimed_by)"
        " VALUES (?, ?, 'forms', 'typeform', ?, 'submission', x'7b7d', 'claimed', 'me')",
        [(f"S{n}", float(n), f"e{n}") for n in range(1, 5)],
    )
    yield conn
    conn.close()


def _inbox(conn: sqlite3.Connection) -> dict[str, tuple[str, str | None]]:
    return {r[0]: (r[1], r[2]) for r in conn.execute("SELECT id, state, error FROM inbox")}


def _deliveries(conn: sqlite3.Connection) -> dict[str, tuple[str, str | None, str | None]]:
    rows = conn.execute("SELECT inbox_id, status, last_error, remote_id FROM deliveries")
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def test_routing_that_sqlite_refuses_for_one_row_fails_that_row_only(spool: sqlite3.Connection) -> None:
    routed = {f"S{n}": (json.dumps({"n": n}), [PlannedDelivery("out", "all")]) for n in (1, 2, 3)}
    routed["S2"] = ('{"name": "Ren\ud83d"}', [PlannedDelivery("out", "all")])  # JSON no encoder would write
    claimed = routing_store.save_routing(
        spool, time.time(), routed, {"S4": "unnormalizable (typeform): broken"}
    )
    assert sorted(claimed) == [("S1", "out"), ("S3", "out")]
    states = _inbox(spool)
    assert states["S1"][0] == states["S3"][0] == "routed"
    assert states["S2"][0] == "failed"
    assert "could not be stored: UnicodeEncodeError" in (states["S2"][1] or "")
    assert states["S4"] == ("failed", "unnormalizable (typeform): broken")


def test_outcomes_that_sqlite_refuses_for_one_row_fail_that_row_only(spool: sqlite3.Connection) -> None:
    routing_store.save_routing(
        spool, time.time(), {f"S{n}": ("{}", [PlannedDelivery("out", "all")]) for n in range(1, 5)}, {}
    )
    decisions = [
        Decision("S1", "out", "delivered", "delivered", status_code=200, remote_id="r1"),
        Decision("S2", "out", "dead", "failed", status_code=400, error="receiver said \ud800"),
        Decision("S3", "out", "delivered", "delivered", status_code=200, remote_id="r\udc00"),
        Decision("S4", "out", "retrying", "retry", status_code=2**70, next_attempt_at=time.time() + 60),
    ]
    written = delivery_outcomes.record(spool, time.time(), decisions)
    rows = _deliveries(spool)
    assert rows["S1"] == ("delivered", None, "r1")
    assert rows["S2"][0] == "dead" and "could not be recorded: UnicodeEncodeError" in (rows["S2"][1] or "")
    # Delivered stays delivered (a dead letter would be sent again on replay), without the id it
    # could not keep.
    assert rows["S3"] == ("delivered", None, None)
    assert rows["S4"][0] == "dead" and "could not be recorded: OverflowError" in (rows["S4"][1] or "")
    assert [d.status for d in written] == ["delivered", "dead", "delivered", "dead"]
    assert _inbox(spool)["S1"][0] == "done" and _inbox(spool)["S2"][0] == "failed"


def test_a_failed_batch_comes_back_in_halves_behind_no_one_and_a_row_failing_alone_is_quarantined(
    spool: sqlite3.Connection,
) -> None:
    claimed = ["S1", "S2", "S3", "S4"]
    assert suspects.flow_failed(spool, claimed, [], "RuntimeError: boom", time.time(), 0.0, 3) == []
    spool.execute(
        "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state)"
        " VALUES ('S5', 9.0, 'forms', 'typeform', 'e5', 'submission', x'7b7d', 'pending')"
    )
    # Fresh work is claimed without the suspects, however old they are.
    assert claiming.claim_inbox(spool, time.time(), 100, "me") == ["S5"]
    assert suspects.claim_suspects(spool, time.time(), "me") == (["S1", "S2"], [])
    assert suspects.claim_suspects(spool, time.time(), "me") == (["S3", "S4"], [])
    suspects.flow_succeeded(spool, ["S3", "S4"], [])
    assert suspects.flow_failed(spool, ["S1", "S2"], [], "RuntimeError: boom", time.time(), 0.0, 3) == []
    assert suspects.claim_suspects(spool, time.time(), "me") == (["S1"], [])
    assert suspects.claim_suspects(spool, time.time(), "me") == (["S2"], [])
    suspects.flow_succeeded(spool, ["S2"], [])
    for failure in range(1, 4):
        quarantined = suspects.flow_failed(spool, ["S1"], [], "RuntimeError: boom", time.time(), 0.0, 3)
        assert quarantined == ([] if failure < 3 else ["S1"])
        if failure < 3:
            assert suspects.claim_suspects(spool, time.time(), "me") == (["S1"], [])
    letters = {letter.inbox_id: letter.reason for letter in report.dead_letters(spool)}
    assert letters == {"S1": "quarantined after 3 failed flow runs of it alone: RuntimeError: boom"}
    rows = {r[0]: r[1:] for r in spool.execute("SELECT id, retry_group, flow_failures FROM inbox")}
    assert rows["S2"] == rows["S3"] == (None, 0)  # cleared by their successful runs
    # A replay puts it back as an ordinary row.
    report.replay(spool, report.dead_letters(spool), time.time())
    assert claiming.claim_inbox(spool, time.time(), 100, "me") == ["S1"]
