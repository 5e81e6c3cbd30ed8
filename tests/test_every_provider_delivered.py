"""One submission fixture of every provider, through a running hub and a real Prefect run, out
to a loopback webhook destination, checked against the fixture's expected facts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from connectors import get_connector, provider_ids
from hub.submission import parse_instant
from tests.fake_destination import FakeDestination, json_body
from tests.harness import PROVIDER_FIXTURES, FakeClock, epoch, load_fixture, start_hub, wait_for

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _one_submission_per_provider() -> list[dict[str, Any]]:
    chosen = []
    for folder in sorted(p for p in PROVIDER_FIXTURES.iterdir() if p.is_dir()):
        for path in sorted(folder.glob("*.json")):
            fx = load_fixture(path)
            expect = fx["expect"]
            if expect["verified"] and expect["is_submission"] and not expect.get("duplicate_of"):
                chosen.append(fx)
                break
    return chosen


FIXTURES = _one_submission_per_provider()


def _config(fixtures: list[dict[str, Any]], hook_url: str) -> str:
    lines = ["sources:"]
    for fx in fixtures:
        lines += [
            f"  {fx['provider']}:",
            f"    provider: {fx['provider']}",
            f"    public_url: {json.dumps(fx['url'])}",
        ]
        if fx.get("secret") is not None:
            lines.append(f"    secret: {json.dumps(fx['secret'])}")
        lines += [f"    {k}: {json.dumps(v)}" for k, v in (fx.get("verify_config") or {}).items()]
    lines += [
        "destinations:",
        f"  out: {{type: webhook, url: {json.dumps(hook_url)}, secret: {WHSEC}}}",
        "routes:",
        "  - {name: all, from: ['*'], to: [out]}",
    ]
    return "\n".join(lines) + "\n"


def test_every_provider_is_normalized_and_delivered(tmp_path: Path) -> None:
    # Notification-only providers fetch their answers from the provider's API: their own
    # end-to-end tests (tests/test_fetch_*.py) serve that API on loopback.
    fixtures = [
        fx
        for fx in FIXTURES
        if fx["provider"] in provider_ids() and not get_connector(fx["provider"]).fetches
    ]
    missing = sorted({fx["provider"] for fx in FIXTURES} - set(provider_ids()))
    assert len(fixtures) >= 15, f"too few connectors to be meaningful; missing: {missing}"
    assert not missing, f"no connector for: {missing}"
    fake = FakeDestination().start()
    config = tmp_path / "connectors.yaml"
    config.write_text(_config(fixtures, fake.url("/hook")), encoding="utf-8")
    clock = FakeClock()
    _, server = start_hub(config, tmp_path / "data", clock=clock, dispatch=True)
    try:
        ids: dict[str, dict[str, Any]] = {}
        for fx in fixtures:
            clock.now = epoch(fx["received_at"])  # timestamped schemes verify against the fixture's clock
            query = urlsplit(fx["url"]).query
            answer = httpx.post(
                f"{server.url}/hooks/{fx['provider']}" + (f"?{query}" if query else ""),
                content=fx["body"].encode("utf-8"),
                headers={k: v for k, v in fx["headers"].items() if k.lower() != "content-length"},
                timeout=30,
            )
            assert answer.status_code == 200, (fx["provider"], answer.text)
            ids[answer.json()["id"]] = fx
        wait_for(
            lambda: len(fake.received("/hook")) >= len(ids), timeout=180, what="every provider delivered"
        )
        delivered = {json_body(r)["id"]: json_body(r) for r in fake.received("/hook")}
        assert set(delivered) == set(ids)
        for submission_id, fx in ids.items():
            sent, expect = delivered[submission_id], fx["expect"]
            where = fx["provider"]
            assert sent["provider"] == fx["provider"] and sent["source"] == fx["provider"], where
            assert sent["event_id"] == expect["event_id"], where
            assert sent["form_id"] == expect["form_id"], where
            assert sent["email"] == expect["email"], where
            expected_at = parse_instant(expect["submitted_at"] or fx["received_at"])
            assert parse_instant(sent["submitted_at"]) == expected_at, where
            answers = {a["label"]: a["value"] for a in sent["answers"]}
            assert answers == expect["answers"], where
    finally:
        server.stop()
        fake.stop()
