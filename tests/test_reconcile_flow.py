"""The scheduled reconcile flow (flows/reconcile.py) as the hub's upkeep starts it: a real Prefect
flow run, one task per due source; a source whose API fails fails its task and the flow run, and
the other sources are still reconciled. Providers answer from memory (tests/reconcile_memory.py)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import FlowFilter, FlowFilterName
from prefect.client.schemas.objects import FlowRun

from connectors.tally import TallyConnector
from connectors.typeform import TypeformConnector
from flows.reconcile import upkeep_reconcile
from flows.runtime import Runtime, bind, unbind
from hub.config.loader import load_config
from hub.reconcile import state
from hub.spool.transactions import open_spool
from hub.store import SqliteStore
from tests.harness import FakeClock
from tests.reconcile_memory import MemoryReconciler

NOW = 1_796_000_000.0
CONFIG = """
sources:
  contact-form:
    provider: typeform
    secret: s3cret
    reconcile: {every: 1h, settle: 1m, form_id: form1, credentials: {token: tfp_test}}
  waitlist:
    provider: tally
    secret: s3cret
    reconcile: {every: 1h, settle: 1m, form_id: form2, credentials: {token: tly-test}}
destinations:
  out: {type: file, path: out.jsonl}
routes:
  - {name: all, from: ["*"], to: [out]}
"""


async def _runs() -> list[FlowRun]:
    async with get_client() as client:
        return await client.read_flow_runs(
            flow_filter=FlowFilter(name=FlowFilterName(any_=["hookhub-reconcile"]))
        )


def test_a_failing_source_fails_the_flow_run_and_the_others_are_reconciled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    typeform, tally = MemoryReconciler(), MemoryReconciler()
    monkeypatch.setattr(TypeformConnector, "reconciler", typeform)
    monkeypatch.setattr(TallyConnector, "reconciler", tally)
    tally.fail_after_pages, tally.permanent = 0, True
    config_path = tmp_path / "connectors.yaml"
    config_path.write_text(CONFIG, encoding="utf-8")
    spool = tmp_path / "spool.db"
    conn = open_spool(spool)
    config = load_config(config_path)
    clock = FakeClock(NOW)
    runtime = Runtime(config=lambda: config, store=SqliteStore(spool), data_dir=tmp_path, clock=clock)
    bind(runtime)
    try:
        asyncio.run(
            upkeep_reconcile(str(spool), str(config_path), config, conn, NOW)
        )  # first runs: start now
        typeform.add("t1", NOW + 30)
        tally.add("w1", NOW + 30)
        clock.now = NOW + 3600
        asyncio.run(upkeep_reconcile(str(spool), str(config_path), config, conn, NOW + 3600))
        ok, failing = state.read(conn, "contact-form"), state.read(conn, "waitlist")
        assert (ok.last_outcome, ok.reconciled) == ("ok", 1)
        assert (failing.last_outcome, failing.last_error) == (
            "refused",
            "memory API: HTTP 401: token revoked",
        )
        runs = sorted(asyncio.run(_runs()), key=lambda r: str(r.created))
        assert [r.state_type.value for r in runs if r.state_type is not None] == ["COMPLETED", "FAILED"]
        failed_state = runs[-1].state
        assert failed_state is not None and "could not reconcile waitlist" in (failed_state.message or "")
        # Within `every` nothing is due, so no flow run starts.
        asyncio.run(upkeep_reconcile(str(spool), str(config_path), config, conn, NOW + 3600 + 60))
        assert len(asyncio.run(_runs())) == 2
    finally:
        unbind(runtime)
        conn.close()
