"""End to end through a real uvicorn hub, a real Prefect run and real loopback destinations.

Each test starts its own hub (own spool) with the dispatcher; all share Prefect's
ephemeral server, which the first flow run of the session starts.
"""

from __future__ import annotations

import json
import sqlite3
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors._schemes import verify_standard_webhooks
from connectors.base import InboundRequest
from hub.cli import main as cli
from tests.fake_destination import FakeDestination, by_webhook_id, json_body
from tests.harness import PROVIDER_FIXTURES, load_fixture, start_hub, wait_for

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TYPEFORM = PROVIDER_FIXTURES / "typeform"
FULL = load_fixture(TYPEFORM / "full_event_registration.json")
MINIMAL = load_fixture(TYPEFORM / "minimal.json")
# Prefect's ephemeral server starts with the first flow run of the session: allow for it.
FIRST_DELIVERY = 180.0

CONFIG = """
sources:
  contact-form:
    provider: typeform
    secret: {secret}
destinations:
  team-slack:
    type: slack
    webhook_url: {slack}
  crm:
    type: webhook
    url: {hook}
    secret: {whsec}
    retry: {{initial: 0.2, max_delay: 0.5}}
routes:
{routes}
"""

ALL_ROUTES = """
  - name: everything
    from: ["*"]
    to: [team-slack, crm]
"""


@pytest.fixture
def fake() -> Iterator[FakeDestination]:
    destination = FakeDestination().start()
    yield destination
    destination.stop()


def write_config(
    path: Path, fake: FakeDestination, routes: str = ALL_ROUTES, hook_path: str = "/hook"
) -> Path:
    path.write_text(
        CONFIG.format(
            secret=FULL["secret"],
            slack=fake.url("/slack"),
            hook=fake.url(hook_path),
            whsec=WHSEC,
            routes=textwrap.indent(textwrap.dedent(routes), ""),
        ),
        encoding="utf-8",
    )
    return path


@pytest.fixture
def hub_factory(tmp_path: Path):
    running: list[Any] = []

    def start(config: Path) -> tuple[Any, Any]:
        hub, server = start_hub(config, tmp_path / "data", dispatch=True)
        running.append(server)
        return hub, server

    yield start
    for server in running:
        server.stop()


def post(server: Any, fixture: dict[str, Any], source: str = "contact-form") -> httpx.Response:
    headers = {k: v for k, v in fixture["headers"].items() if k.lower() != "content-length"}
    return httpx.post(
        f"{server.url}/hooks/{source}", content=fixture["body"].encode("utf-8"), headers=headers, timeout=30
    )


def ledger(hub: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(hub.spool_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT * FROM deliveries ORDER BY inbox_id, destination")]
    finally:
        conn.close()


def attempts(hub: Any, destination: str) -> list[dict[str, Any]]:
    conn = sqlite3.connect(hub.spool_path)
    conn.row_factory = sqlite3.Row
    try:
        return [
            dict(r)
            for r in conn.execute(
                "SELECT * FROM attempts WHERE destination=? ORDER BY attempt", (destination,)
            )
        ]
    finally:
        conn.close()


def status_of(hub: Any, inbox_id: str, destination: str) -> str | None:
    rows = [r for r in ledger(hub) if r["inbox_id"] == inbox_id and r["destination"] == destination]
    return rows[0]["status"] if rows else None


def inbox_state(hub: Any, inbox_id: str) -> str:
    conn = sqlite3.connect(hub.spool_path)
    try:
        return conn.execute("SELECT state FROM inbox WHERE id=?", (inbox_id,)).fetchone()[0]
    finally:
        conn.close()


def test_typeform_in_one_slack_message_and_one_signed_webhook_out(tmp_path, fake, hub_factory) -> None:
    hub, server = hub_factory(write_config(tmp_path / "connectors.yaml", fake))
    first = post(server, FULL)
    assert first.status_code == 200 and first.json()["status"] == "accepted"
    submission_id = first.json()["id"]
    wait_for(lambda: inbox_state(hub, submission_id) == "done", timeout=FIRST_DELIVERY, what="first delivery")

    (hook,) = fake.received("/hook")
    request = InboundRequest(method="POST", url=fake.url("/hook"), headers=hook.headers, body=hook.body)
    verify_standard_webhooks(request, [WHSEC], tolerance=300, now=hook.at)
    assert hook.headers["webhook-id"] == f"{submission_id}.crm"
    sent = json_body(hook)
    assert sent["id"] == submission_id and sent["event_id"] == FULL["expect"]["event_id"]
    assert sent["email"] == FULL["expect"]["email"]
    assert {a["label"]: a["value"] for a in sent["answers"]}["How many tickets?"] == 3

    (slack,) = fake.received("/slack")
    message = json_body(slack)
    assert message["blocks"] and "Renée" in json.dumps(message, ensure_ascii=False)

    # A redelivery by the provider is acknowledged and causes nothing downstream. The next
    # submission is delivered after the duplicate would have been, so waiting for it is enough.
    again = post(server, FULL)
    assert again.json() == {"status": "duplicate", "id": submission_id}
    second = post(server, MINIMAL).json()["id"]
    wait_for(lambda: inbox_state(hub, second) == "done", timeout=60, what="second delivery")
    assert len(fake.received("/slack")) == 2 and len(fake.received("/hook")) == 2
    assert by_webhook_id(fake.received("/hook")) == {f"{submission_id}.crm": 1, f"{second}.crm": 1}
    assert all(r["status"] == "delivered" and r["attempts"] == 1 for r in ledger(hub))


def test_500_500_200_is_delivered_once_after_three_attempts(tmp_path, fake, hub_factory) -> None:
    fake.script("/hook", (500, {}, "boom"), (500, {}, "boom"), (200, {}, "{}"))
    hub, server = hub_factory(write_config(tmp_path / "connectors.yaml", fake))
    submission_id = post(server, FULL).json()["id"]
    wait_for(
        lambda: status_of(hub, submission_id, "crm") == "delivered", timeout=FIRST_DELIVERY, what="delivery"
    )
    (row,) = [r for r in ledger(hub) if r["destination"] == "crm"]
    assert row["attempts"] == 3 and row["last_status_code"] == 200
    assert [a["outcome"] for a in attempts(hub, "crm")] == ["retry", "retry", "delivered"]
    assert [a["status_code"] for a in attempts(hub, "crm")] == [500, 500, 200]
    # Every attempt carried the same webhook-id, so the receiver can tell them apart from new events.
    assert by_webhook_id(fake.received("/hook")) == {f"{submission_id}.crm": 3}


def test_429_retry_after_is_honoured(tmp_path, fake, hub_factory) -> None:
    fake.script("/hook", (429, {"Retry-After": "2"}, "slow down"))
    hub, server = hub_factory(write_config(tmp_path / "connectors.yaml", fake))
    submission_id = post(server, FULL).json()["id"]
    wait_for(
        lambda: status_of(hub, submission_id, "crm") == "delivered", timeout=FIRST_DELIVERY, what="delivery"
    )
    first, second = fake.received("/hook")
    assert second.at - first.at >= 2.0
    assert [a["retry_after"] for a in attempts(hub, "crm")] == [2.0, None]


def test_400_is_a_dead_letter_and_replay_after_fixing_config_delivers(
    tmp_path, fake, hub_factory, capsys
) -> None:
    fake.script("/wrong", (400, {}, '{"error": "unknown endpoint"}'))
    config = write_config(tmp_path / "connectors.yaml", fake, hook_path="/wrong")
    hub, server = hub_factory(config)
    submission_id = post(server, FULL).json()["id"]
    wait_for(
        lambda: status_of(hub, submission_id, "crm") == "dead", timeout=FIRST_DELIVERY, what="dead letter"
    )
    wait_for(lambda: inbox_state(hub, submission_id) == "failed", timeout=10, what="submission marked failed")
    assert status_of(hub, submission_id, "team-slack") == "delivered"

    data_dir = str(hub.data_dir)
    assert cli(["deadletters", "--data-dir", data_dir]) == 0
    listed = capsys.readouterr().out
    assert f"{submission_id}  contact-form -> crm" in listed and "400" in listed

    write_config(config, fake, hook_path="/hook")
    assert hub.config.reload()
    assert cli(["replay", "--all", "--dry-run", "--data-dir", data_dir, "--config", str(config)]) == 0
    assert f"would send {submission_id} (contact-form) to crm again" in capsys.readouterr().out
    assert status_of(hub, submission_id, "crm") == "dead"  # a dry run changes nothing

    assert cli(["replay", "--all", "--data-dir", data_dir, "--config", str(config), "--wait", "60"]) == 0
    assert status_of(hub, submission_id, "crm") == "delivered"
    assert inbox_state(hub, submission_id) == "done"
    assert len(fake.received("/hook")) == 1 and len(fake.received("/wrong")) == 1
    assert len(fake.received("/slack")) == 1  # the replay redid only what was missing


def test_when_false_is_not_delivered(tmp_path, fake, hub_factory) -> None:
    routes = """
  - name: big-orders
    from: [contact-form]
    when: "answers['How many tickets?'] > 100"
    to: [team-slack]
  - name: crm-all
    from: ["*"]
    to: [crm]
"""
    hub, server = hub_factory(write_config(tmp_path / "connectors.yaml", fake, routes=routes))
    submission_id = post(server, FULL).json()["id"]
    wait_for(lambda: inbox_state(hub, submission_id) == "done", timeout=FIRST_DELIVERY, what="delivery")
    assert fake.received("/slack") == []
    assert [r["destination"] for r in ledger(hub)] == ["crm"]


def test_route_that_cannot_evaluate_dead_letters_that_submission_only(
    tmp_path, fake, hub_factory, capsys
) -> None:
    routes = """
  - name: picky
    from: [contact-form]
    when: "exists(answers['Full name']) and answers['Full name'] > 3"
    to: [team-slack]
  - name: crm-all
    from: ["*"]
    to: [crm]
"""
    hub, server = hub_factory(write_config(tmp_path / "connectors.yaml", fake, routes=routes))
    broken = post(server, FULL).json()["id"]
    fine = post(server, MINIMAL).json()["id"]  # no 'Full name': the condition is just false
    wait_for(
        lambda: inbox_state(hub, fine) == "done" and inbox_state(hub, broken) == "failed",
        timeout=FIRST_DELIVERY,
        what="both settled",
    )
    assert status_of(hub, broken, "crm") == "delivered"
    assert status_of(hub, broken, "team-slack") is None
    conn = sqlite3.connect(hub.spool_path)
    error = conn.execute("SELECT error FROM inbox WHERE id=?", (broken,)).fetchone()[0]
    conn.close()
    assert "route 'picky'" in error and "when" in error
    # `deadletters` names the route that could not be judged, and where the others delivered it.
    assert cli(["deadletters", "--data-dir", str(hub.data_dir)]) == 0
    listed = capsys.readouterr().out
    assert f"{broken}  contact-form -> route picky (its `when` could not be judged)" in listed
    assert "delivered all the same by its other routes to: crm" in listed


def test_signed_payload_of_the_wrong_shape_is_kept_as_a_dead_letter(
    tmp_path, fake, hub_factory, capsys
) -> None:
    import base64
    import hashlib
    import hmac

    hub, server = hub_factory(write_config(tmp_path / "connectors.yaml", fake))
    body = b'{"event_id": "01WRONGSHAPE", "event_type": "form_response", "form_response": "not an object"}'
    signature = base64.b64encode(hmac.new(FULL["secret"].encode(), body, hashlib.sha256).digest()).decode()
    answer = httpx.post(
        f"{server.url}/hooks/contact-form",
        content=body,
        timeout=30,
        headers={"content-type": "application/json", "typeform-signature": f"sha256={signature}"},
    )
    assert answer.status_code == 200  # verified: stored, never refused for its shape
    broken = answer.json()["id"]
    fine = post(server, MINIMAL).json()["id"]
    wait_for(
        lambda: inbox_state(hub, broken) == "failed" and inbox_state(hub, fine) == "done",
        timeout=FIRST_DELIVERY,
        what="both settled",
    )
    assert cli(["deadletters", "--data-dir", str(hub.data_dir)]) == 0
    listed = capsys.readouterr().out
    assert f"{broken}  contact-form -> (not normalized or not routed)" in listed
    assert "unnormalizable (typeform)" in listed
    assert ledger(hub) and all(r["inbox_id"] == fine for r in ledger(hub))
