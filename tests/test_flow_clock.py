"""The flows' time rules read the runtime's clock: pinned to an instant, a delivery's retry time
and its retry horizon are known exactly, whatever the wall clock says."""

from __future__ import annotations

from pathlib import Path

import pytest

from flows.delivery import deliver_rows
from flows.runtime import Runtime
from hub.config.loader import load_config
from hub.spool.rows import DeliveryRow
from hub.store.location import SqliteStore
from tests.email_destination_cases import make_submission

INSTANT = 1_000_000_000.0  # 2001: far from now, so a rule that read the wall clock shows
CONFIG = """
sources:
  contact-form: {provider: typeform, secret: s3cret}
destinations:
  out: {type: file, path: blocked/out.jsonl, retry: {initial: 60, horizon: 3600}}
routes:
  - {name: all, from: [contact-form], to: [out]}
"""


@pytest.fixture
def runtime(tmp_path: Path) -> Runtime:
    path = tmp_path / "connectors.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    # A file where the destination's folder should be: every write fails, so every row is retried.
    (tmp_path / "blocked").write_text("", encoding="utf-8")
    config = load_config(path)
    return Runtime(
        config=lambda: config,
        store=SqliteStore(tmp_path / "spool.db"),
        data_dir=tmp_path,
        clock=lambda: INSTANT,
    )


def _row(first_attempt_at: float | None, attempts: int) -> DeliveryRow:
    return DeliveryRow(
        inbox_id="S1",
        destination="out",
        route="all",
        attempts=attempts,
        first_attempt_at=first_attempt_at,
        remote_id=None,
        submission=make_submission(1).model_dump_json(),
    )


@pytest.mark.anyio
async def test_a_retry_is_due_one_backoff_after_the_clock(runtime: Runtime) -> None:
    [decision] = await deliver_rows(runtime, "out", [_row(None, 0)], {}, http=None)
    assert decision.status == "retrying" and "cannot write" in (decision.error or "")
    # The first wait is `initial` plus a jitter of at most half of it.
    assert decision.next_attempt_at is not None
    assert INSTANT + 60 <= decision.next_attempt_at <= INSTANT + 90


@pytest.mark.anyio
async def test_the_horizon_is_counted_from_the_first_attempt_to_the_clock(runtime: Runtime) -> None:
    within = await deliver_rows(runtime, "out", [_row(INSTANT - 3000, 1)], {}, http=None)
    assert [d.status for d in within] == ["retrying"]
    # The next try would fall after first attempt + 1 h: a dead letter now, not later.
    [beyond] = await deliver_rows(runtime, "out", [_row(INSTANT - 3500, 1)], {}, http=None)
    assert (beyond.status, beyond.outcome) == ("dead", "gave_up")
    assert "over 1 h" in (beyond.error or "")
