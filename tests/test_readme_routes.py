"""The README's example routes, verbatim, through a running hub and real Prefect runs: a Typeform
submission whose form has no "How many tickets?" question reaches `crm` through `all-leads` and is
skipped by `big-orders` (a missing answer is not "more than 2"), with no dead letter."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path

import httpx

from tests.fake_destination import FakeDestination, json_body
from tests.harness import PROVIDER_FIXTURES, FakeClock, epoch, load_fixture, start_hub, wait_for

README = Path(__file__).resolve().parents[1] / "README.md"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
DELIVERY = 180.0


def readme_routes() -> str:
    """The `routes:` block of the README's connectors.yaml example, as written there."""
    text = README.read_text(encoding="utf-8")
    block = re.search(r"\nroutes:\n((?:  .*\n)+)", text)
    assert block is not None, "the README's configuration example has no routes: block"
    return "routes:\n" + block.group(1)


def _states(spool: Path) -> dict[str, str]:
    conn = sqlite3.connect(spool)
    try:
        return dict(conn.execute("SELECT source, state FROM inbox").fetchall())
    finally:
        conn.close()


def test_the_readmes_routes_skip_a_form_without_the_compared_answer_and_leave_no_dead_letter(
    tmp_path: Path,
) -> None:
    routes = readme_routes()
    assert "answers['How many tickets?'] > 2" in routes  # the example this test is about
    minimal = load_fixture(PROVIDER_FIXTURES / "typeform" / "minimal.json")
    full = load_fixture(PROVIDER_FIXTURES / "typeform" / "full_event_registration.json")
    assert "How many tickets?" not in minimal["expect"]["answers"]
    fake = FakeDestination().start()
    config = tmp_path / "connectors.yaml"
    config.write_text(
        f"""
sources:
  contact-form: {{provider: typeform, secret: {json.dumps(minimal["secret"])}}}
  event-signup: {{provider: typeform, secret: {json.dumps(full["secret"])}}}
destinations:
  crm: {{type: webhook, url: "{fake.url("/crm")}", secret: {WHSEC}}}
  sales-slack: {{type: webhook, url: "{fake.url("/sales")}", secret: {WHSEC}}}
{routes}""",
        encoding="utf-8",
    )
    clock = FakeClock()
    hub, server = start_hub(config, tmp_path / "data", clock=clock, dispatch=True)
    try:
        for source, fx in (("contact-form", minimal), ("event-signup", full)):
            clock.now = epoch(fx["received_at"])  # the signature is checked at the fixture's clock
            headers = {k: v for k, v in fx["headers"].items() if k.lower() != "content-length"}
            answer = httpx.post(
                f"{server.url}/hooks/{source}", content=fx["body"].encode(), headers=headers, timeout=30
            )
            assert answer.status_code == 200, answer.text
        wait_for(
            lambda: (
                len(_states(hub.spool_path)) == 2
                and set(_states(hub.spool_path).values()) <= {"done", "failed"}
            ),
            timeout=DELIVERY,
            what="both submissions settled",
        )
        assert _states(hub.spool_path) == {"contact-form": "done", "event-signup": "done"}  # no dead letter
        [crm] = [json_body(r) for r in fake.received("/crm")]
        assert crm["source"] == "contact-form"  # all-leads; event-signup is not one of its sources
        # big-orders judged both: the first has no such question (false, not an error), the second
        # 3 tickets but an @example.de address. Before issue 17 the first was a dead letter.
        assert fake.received("/sales") == []
    finally:
        server.stop()
        fake.stop()
