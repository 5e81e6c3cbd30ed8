"""Every provider fixture, byte for byte, through a real running hub.

The folder walk picks up new fixtures and new connectors without code changes;
fixtures of providers that have no connector module yet are skipped with a reason.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from connectors import get_connector, provider_ids
from tests.harness import FakeClock, epoch, fixture_files, load_fixture, start_hub

FIXTURES = list(fixture_files())


def _source_id(fx: dict) -> str:
    return f"{fx['provider']}.{fx['expect'].get('duplicate_of') or fx['case']}"


def _yaml_scalar(value: object) -> str:
    return json.dumps(value, ensure_ascii=False)  # JSON scalars are valid YAML flow scalars


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("fixtures")
    lines = ["sources:"]
    for path in FIXTURES:
        fx = load_fixture(path)
        if fx["provider"] not in provider_ids() or fx["expect"].get("duplicate_of"):
            continue
        lines.append(f"  {_source_id(fx)}:")
        lines.append(f"    provider: {fx['provider']}")
        if fx.get("secret") is not None:
            lines.append(f"    secret: {_yaml_scalar(fx['secret'])}")
        lines.append(f"    public_url: {_yaml_scalar(fx['url'])}")
        for key, value in (fx.get("verify_config") or {}).items():
            lines.append(f"    {key}: {_yaml_scalar(value)}")
    lines += [
        "destinations:",
        "  out: {type: file, path: out.jsonl}",
        "routes:",
        "  - {name: all, from: ['*'], to: [out]}",
    ]
    config = root / "connectors.yaml"
    config.write_text("\n".join(lines) + "\n", encoding="utf-8")
    clock = FakeClock()
    hub, server = start_hub(config, root / "data", clock=clock)
    yield hub, server, clock, {}
    server.stop()


def _ordered(paths: list[Path]) -> list[Path]:
    # Originals before their redeliveries, so `duplicate_of` has something to match.
    return sorted(
        paths, key=lambda p: (p.parent.name, bool(load_fixture(p)["expect"].get("duplicate_of")), p.name)
    )


@pytest.mark.parametrize("path", _ordered(FIXTURES), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_fixture_through_running_hub(hub, path: Path):
    hub_, server, clock, first_ids = hub
    fx = load_fixture(path)
    if fx["provider"] not in provider_ids():
        pytest.skip(f"no connector yet for {fx['provider']}")
    expect = fx["expect"]
    clock.now = epoch(fx["received_at"])
    query = urlsplit(fx["url"]).query
    target = f"{server.url}/hooks/{_source_id(fx)}" + (f"?{query}" if query else "")
    headers = {k: v for k, v in fx["headers"].items() if k.lower() != "content-length"}
    response = httpx.request(
        fx["method"], target, content=fx["body"].encode("utf-8"), headers=headers, timeout=30
    )

    if not expect["verified"]:
        assert response.status_code == 401, response.text
        return
    assert response.status_code == 200, response.text
    answer = response.json()
    if expect.get("duplicate_of"):
        assert answer == {"status": "duplicate", "id": first_ids[(fx["provider"], expect["duplicate_of"])]}
        return
    first_ids[(fx["provider"], fx["case"])] = answer["id"]
    conn = sqlite3.connect(hub_.spool_path)
    try:
        event_id, kind, body, stored_url = conn.execute(
            "SELECT event_id, kind, body, url FROM inbox WHERE id = ?", (answer["id"],)
        ).fetchone()
    finally:
        conn.close()
    assert body == fx["body"].encode("utf-8")
    assert "token=" not in stored_url or "token=REDACTED" in stored_url
    if expect["is_submission"] is False:
        assert answer["status"] in ("test", "ignored") and kind in ("test", "ignored")
    else:
        assert answer["status"] == "accepted" and kind == "submission"
        # Providers that number events per form are deduplicated on (form id, event id).
        per_form = get_connector(fx["provider"]).event_ids_per_form and expect["form_id"]
        assert event_id == (f"{expect['form_id']}/{expect['event_id']}" if per_form else expect["event_id"])
