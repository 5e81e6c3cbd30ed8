"""deliver_rows: stored Submission JSON in, a decision per row out; a poisoned row is its own dead letter."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from flows.delivery import deliver_rows
from flows.runtime import Runtime
from hub.config.loader import load_config
from hub.spool.rows import DeliveryRow
from hub.store.location import SqliteStore
from tests.email_destination_cases import make_submission

CONFIG = """
sources:
  contact-form: {provider: typeform, secret: s3cret}
destinations:
  out: {type: file, path: out.jsonl}
  hook: {type: webhook, url: "http://127.0.0.1:9/in", secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}
routes:
  - {name: all, from: [contact-form], to: [out, hook]}
"""


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    path = tmp_path / "connectors.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    config = load_config(path)
    return Runtime(config=lambda: config, store=SqliteStore(tmp_path / "spool.db"), data_dir=tmp_path)


def _row(inbox_id: str, destination: str, submission: str | None) -> DeliveryRow:
    return DeliveryRow(
        inbox_id=inbox_id,
        destination=destination,
        route="all",
        attempts=0,
        first_attempt_at=None,
        remote_id=None,
        submission=submission,
    )


@pytest.mark.anyio
@pytest.mark.parametrize("poison", ['{"id": "S2", "answers": "not a list"', "", None])
async def test_one_unreadable_row_is_dead_and_the_rest_delivered(
    runtime: Runtime, poison: str | None
) -> None:
    good = [make_submission(1).model_dump_json(), make_submission(3).model_dump_json()]
    rows = [_row("S1", "out", good[0]), _row("S2", "out", poison), _row("S3", "out", good[1])]
    decisions = await deliver_rows(runtime, "out", rows, {}, http=None)
    by_id = {d.inbox_id: d for d in decisions}
    assert by_id["S1"].status == by_id["S3"].status == "delivered"
    assert by_id["S2"].status == "dead" and not by_id["S2"].attempted
    assert "stored submission is unreadable" in (by_id["S2"].error or "")
    lines = (runtime.data_dir / "out.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line)["delivery_id"] for line in lines] == ["S1.out", "S3.out"]


@pytest.mark.anyio
async def test_a_row_without_stored_json_is_dead_for_a_webhook_too(runtime: Runtime) -> None:
    # The webhook sends stored bytes without parsing them, but never sends nothing.
    [decision] = await deliver_rows(runtime, "hook", [_row("S1", "hook", None)], {}, http=None)
    assert decision.status == "dead" and "no Submission JSON" in (decision.error or "")
