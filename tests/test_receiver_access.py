"""What an anonymous caller may learn (issue 11, item 13), over a real socket.

A remote caller is simulated the way a reverse proxy on the same host presents one: a loopback
connection with `X-Forwarded-For`, which uvicorn's proxy-header handling (trusted from
127.0.0.1 by default) turns into the client's address.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from connectors._schemes import b64, hmac_digest
from hub.receiver.access import UNVERIFIED_DETAIL, bearer_matches, is_loopback
from hub.receiver.request_parts import request_headers
from tests.harness import RunningServer, start_hub

STATUS_TOKEN = "status-token-for-the-access-tests"
REMOTE = {"x-forwarded-for": "203.0.113.9"}
CONFIG = f"""
server:
  status_token: {STATUS_TOKEN}
sources:
  tf: {{provider: typeform, secret: access-secret}}
"""


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[object, RunningServer, Path]]:
    root = tmp_path_factory.mktemp("access")
    config = root / "connectors.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    hub_, server = start_hub(config, root / "data")
    yield hub_, server, config
    server.stop()


def _post(server: RunningServer, source: str, headers: dict[str, str]) -> httpx.Response:
    body = b'{"event_id": "e1", "event_type": "form_response", "form_response": {"form_id": "f"}}'
    signature = "sha256=" + b64(hmac_digest(b"wrong-secret", body))
    headers = {"content-type": "application/json", "typeform-signature": signature, **headers}
    return httpx.post(f"{server.url}/hooks/{source}", content=body, timeout=10, headers=headers)


def test_remote_callers_cannot_tell_unknown_sources_from_failed_verification(hub) -> None:
    _, server, _ = hub
    unknown, forged = _post(server, "nope", REMOTE), _post(server, "tf", REMOTE)
    assert (unknown.status_code, unknown.content) == (forged.status_code, forged.content)
    assert unknown.json() == {"error": "unauthorized", "detail": UNVERIFIED_DETAIL}
    text = {"content-type": "text/plain", **REMOTE}
    wrong_type = httpx.post(f"{server.url}/hooks/tf", content=b"x", headers=text)
    assert (wrong_type.status_code, wrong_type.content) == (forged.status_code, forged.content)  # not 415
    assert httpx.head(f"{server.url}/hooks/nope", headers=REMOTE).status_code == 200


def test_loopback_callers_see_the_reason(hub) -> None:
    _, server, _ = hub
    assert _post(server, "nope", {}).json()["detail"] == "no source 'nope' is configured"
    assert _post(server, "tf", {}).json()["detail"] == "signature mismatch"


def test_readyz_and_metrics_detail_only_for_loopback_or_the_token(hub) -> None:
    hub_, server, config = hub
    config.write_text(CONFIG + "  broken: {provider: no-such-provider}\n", encoding="utf-8")
    assert not hub_.config.reload()
    try:
        remote = httpx.get(f"{server.url}/readyz", headers=REMOTE)
        assert remote.status_code == 200 and remote.json() == {"status": "ready"}
        local = httpx.get(f"{server.url}/readyz").json()
        assert local["sources"] == 1 and "no-such-provider" in json.dumps(local["config_error"])
        bearer = {"authorization": f"Bearer {STATUS_TOKEN}", **REMOTE}
        assert httpx.get(f"{server.url}/readyz", headers=bearer).json() == local
        wrong = {"authorization": "Bearer not-the-token-at-all", **REMOTE}
        assert httpx.get(f"{server.url}/readyz", headers=wrong).json() == {"status": "ready"}
        assert httpx.get(f"{server.url}/metrics", headers=REMOTE).status_code == 403
        assert httpx.get(f"{server.url}/metrics", headers=wrong).status_code == 403
        assert "hookhub_webhooks_total" in httpx.get(f"{server.url}/metrics", headers=bearer).text
        assert "hookhub_webhooks_total" in httpx.get(f"{server.url}/metrics").text
    finally:
        config.write_text(CONFIG, encoding="utf-8")
        assert hub_.config.reload()


@pytest.mark.parametrize(
    ("client", "loopback"),
    [
        (("127.0.0.1", 1), True),
        (("127.8.9.1", 1), True),
        (("::1", 1), True),
        (("::ffff:127.0.0.1", 1), True),
        (("203.0.113.9", 1), False),
        (("::ffff:203.0.113.9", 1), False),
        (("testclient", 1), False),
        (None, False),
    ],
)
def test_is_loopback(client, loopback: bool) -> None:
    assert is_loopback({"client": client}) is loopback


def test_bearer_matches() -> None:
    assert bearer_matches(f"Bearer {STATUS_TOKEN}", STATUS_TOKEN)
    assert bearer_matches(f"bearer  {STATUS_TOKEN} ", STATUS_TOKEN)
    assert not bearer_matches(f"Basic {STATUS_TOKEN}", STATUS_TOKEN)
    assert not bearer_matches("Bearer ", STATUS_TOKEN)
    assert not bearer_matches(f"Bearer {STATUS_TOKEN}", None)


def test_repeated_headers_are_joined_in_linear_time() -> None:
    # Joined per repeat, 100,000 repeats took ~8 s here (400,000: 190 s, with the event loop stopped).
    scope = {"headers": [(b"x-a", b"b")] * 100_000 + [(b"Content-Type", b"application/json")]}
    started = time.perf_counter()
    headers = request_headers(scope)
    assert time.perf_counter() - started < 2.0
    assert headers["x-a"] == ", ".join(["b"] * 100_000) and headers["content-type"] == "application/json"
    assert request_headers({"headers": [(b"a", b"1"), (b"b", b"2")]}) == {"a": "1", "b": "2"}
