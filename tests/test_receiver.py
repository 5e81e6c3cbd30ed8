"""The receiving edge over a real socket: verify → spool → answer, for each connector."""

from __future__ import annotations

import concurrent.futures
import json
import secrets
import sqlite3
import time
from pathlib import Path

import httpx
import pytest

from connectors.base import InboundRequest
from tests.harness import FakeClock, start_hub

CONNECTORS = ["typeform", "tally", "standard_webhooks", "google_forms_apps_script"]
TIMESTAMPED = {"standard_webhooks", "google_forms_apps_script"}
WHSEC_OLD = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
WHSEC_NEW = "whsec_c2Vjb25kLXNlY3JldC1mb3Itcm90YXRpb24tdGVzdHM="
SECRETS = {
    "typeform": ["tf_old_secret", "tf_new_secret"],
    "tally": ["tally_old", "tally_new"],
    "standard_webhooks": [WHSEC_OLD, WHSEC_NEW],
    "google_forms_apps_script": [WHSEC_OLD, WHSEC_NEW],
}

CONFIG = """
server:
  max_body_bytes: 65536
sources:
{sources}
destinations:
  out:
    type: file
    path: out.jsonl
routes:
  - name: everything
    from: ["*"]
    to: [out]
"""


def _sources_yaml() -> str:
    lines = []
    for provider in CONNECTORS:
        lines.append(f"  {provider.replace('_', '-')}:\n    provider: {provider}\n    secret:")
        lines.extend(f"      - {s}" for s in SECRETS[provider])
    return "\n".join(lines)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("receiver")
    config = root / "connectors.yaml"
    config.write_text(CONFIG.format(sources=_sources_yaml()), encoding="utf-8")
    clock = FakeClock()
    hub, server = start_hub(config, root / "data", clock=clock)
    yield hub, server
    server.stop()


def _source_id(provider: str) -> str:
    return provider.replace("_", "-")


def _sample(hub, provider: str, secret_index: int = -1, now: float | None = None) -> InboundRequest:
    source = hub.config.sources[_source_id(provider)]
    settings = source.config.model_copy(update={"secret": source.config.secrets[secret_index]})
    return source.connector.sample_request(settings, "http://127.0.0.1/hooks/x", now or time.time())


def _post(server, provider: str, request: InboundRequest, **kwargs) -> httpx.Response:
    headers = {k: v for k, v in request.headers.items() if k != "content-length"}
    headers.update(kwargs.pop("headers", {}))
    return httpx.post(
        f"{server.url}/hooks/{_source_id(provider)}",
        content=kwargs.pop("content", request.body),
        headers=headers,
        timeout=30,
        **kwargs,
    )


def _rows(hub, where: str = "1=1", args: tuple = ()) -> list[sqlite3.Row]:
    conn = sqlite3.connect(hub.spool_path)
    conn.row_factory = sqlite3.Row
    try:
        return conn.execute(f"SELECT * FROM inbox WHERE {where}", args).fetchall()
    finally:
        conn.close()


@pytest.fixture(autouse=True)
def _real_time(hub):
    hub[0].clock.now = time.time()  # the FakeClock start_hub gave the hub


@pytest.mark.parametrize("provider", CONNECTORS)
def test_valid_request_is_stored_durably_before_the_answer(hub, provider):
    hub_, server = hub
    request = _sample(hub_, provider)
    response = _post(server, provider, request)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["status"] == "accepted"
    rows = _rows(hub_, "id = ?", (answer["id"],))
    assert len(rows) == 1
    row = rows[0]
    assert row["body"] == request.body  # raw bytes, exactly as signed
    assert row["source"] == _source_id(provider) and row["provider"] == provider
    assert row["state"] == "pending"
    assert row["event_id"] == hub_.config.sources[_source_id(provider)].connector.envelope(request).event_id
    stored_headers = json.loads(row["headers"])
    assert "content-type" in stored_headers
    assert "authorization" not in stored_headers


@pytest.mark.parametrize("provider", CONNECTORS)
def test_credential_headers_are_not_stored(hub, provider):
    """Credentials a proxy or sender adds (Authorization, Cookie, API keys, any other name) never reach
    the spool: only an allow-list is stored (content type, length, user agent, the provider's own headers)."""
    hub_, server = hub
    request = _sample(hub_, provider)
    secret_name = f"X-{secrets.token_hex(4)}-Secret"
    extra = {
        "Authorization": "Bearer hunter2",
        "Cookie": "session=abc",
        "X-Api-Key": "k-123",
        "X-Trace": "t-1",
        "X-Auth-Token": "tok-hunter3",
        secret_name: "hunter4",
    }
    response = _post(server, provider, request, headers=extra)
    assert response.status_code == 200, response.text
    stored = json.loads(_rows(hub_, "id = ?", (response.json()["id"],))[0]["headers"])
    connector = hub_.config.sources[_source_id(provider)].connector
    assert set(stored) == {"content-type", "content-length", "user-agent"} | connector.stored_headers
    assert stored["user-agent"] == request.headers["user-agent"]
    for name in connector.stored_headers:  # what a re-verification needs, exactly as sent
        assert stored[name] == request.headers[name]
    assert not {"hunter2", "session=abc", "k-123", "tok-hunter3", "hunter4"} & set(stored.values())


@pytest.mark.parametrize("provider", CONNECTORS)
def test_tampered_body_is_401_and_not_stored(hub, provider):
    hub_, server = hub
    request = _sample(hub_, provider)
    before = len(_rows(hub_))
    tampered = request.body.replace(b"}", b" }", 1)
    response = _post(server, provider, request, content=tampered)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert len(_rows(hub_)) == before


@pytest.mark.parametrize("provider", CONNECTORS)
def test_missing_signature_is_401(hub, provider):
    hub_, server = hub
    request = _sample(hub_, provider)
    unsigned = {k: v for k, v in request.headers.items() if "signature" not in k}
    response = httpx.post(
        f"{server.url}/hooks/{_source_id(provider)}", content=request.body, headers=unsigned, timeout=30
    )
    assert response.status_code == 401


@pytest.mark.parametrize("provider", CONNECTORS)
def test_wrong_secret_is_401(hub, provider):
    hub_, server = hub
    source = hub_.config.sources[_source_id(provider)]
    wrong = "whsec_d3Jvbmctc2VjcmV0LXdyb25nLXNlY3JldA==" if provider in TIMESTAMPED else "not-the-secret"
    settings = source.config.model_copy(update={"secret": wrong})
    request = source.connector.sample_request(settings, "http://127.0.0.1/hooks/x", time.time())
    assert _post(server, provider, request).status_code == 401


@pytest.mark.parametrize("provider", sorted(TIMESTAMPED))
def test_stale_timestamp_is_401(hub, provider):
    hub_, server = hub
    signed_at = time.time() - 301
    request = _sample(hub_, provider, now=signed_at)
    response = _post(server, provider, request)
    assert response.status_code == 401
    assert "timestamp" in response.json()["detail"]
    future = _sample(hub_, provider, now=time.time() + 301)
    assert _post(server, provider, future).status_code == 401


@pytest.mark.parametrize("provider", CONNECTORS)
def test_rotated_secrets_both_accepted(hub, provider):
    hub_, server = hub
    for index in (0, 1):
        response = _post(server, provider, _sample(hub_, provider, secret_index=index))
        assert response.status_code == 200, response.text
        assert response.json()["status"] == "accepted"


@pytest.mark.parametrize("provider", CONNECTORS)
def test_redelivery_is_a_duplicate_with_the_same_id(hub, provider):
    hub_, server = hub
    request = _sample(hub_, provider)
    first = _post(server, provider, request).json()
    second = _post(server, provider, request).json()
    assert first["status"] == "accepted"
    assert second == {"status": "duplicate", "id": first["id"]}
    row = _rows(hub_, "id = ?", (first["id"],))[0]
    assert row["redeliveries"] == 1


@pytest.mark.parametrize("provider", CONNECTORS)
def test_twenty_concurrent_copies_store_exactly_one(hub, provider):
    hub_, server = hub
    request = _sample(hub_, provider)
    with concurrent.futures.ThreadPoolExecutor(max_workers=20) as pool:
        responses = list(pool.map(lambda _: _post(server, provider, request), range(20)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    answers = [r.json() for r in responses]
    assert sorted(a["status"] for a in answers).count("accepted") == 1
    assert len({a["id"] for a in answers}) == 1
    event_id = hub_.config.sources[_source_id(provider)].connector.envelope(request).event_id
    assert len(_rows(hub_, "source = ? AND event_id = ?", (_source_id(provider), event_id))) == 1


@pytest.mark.parametrize("provider", CONNECTORS)
def test_oversized_body_is_413_with_and_without_content_length(hub, provider):
    hub_, server = hub
    before = len(_rows(hub_))
    request = _sample(hub_, provider)
    big = b"{" + b" " * 70_000 + b"}"
    assert _post(server, provider, request, content=big).status_code == 413

    def chunks():
        for _ in range(70):
            yield b" " * 1024

    response = _post(server, provider, request, content=chunks())  # chunked: no Content-Length
    assert response.status_code == 413
    assert len(_rows(hub_)) == before


@pytest.mark.parametrize("provider", CONNECTORS)
def test_wrong_content_type_is_415(hub, provider):
    hub_, server = hub
    request = _sample(hub_, provider)
    response = _post(server, provider, request, headers={"content-type": "text/plain"})
    assert response.status_code == 415
    assert "application/json" in response.json()["detail"]


def test_unknown_source_is_401_and_wrong_method_405(hub):
    _, server = hub
    response = httpx.post(
        f"{server.url}/hooks/nope", content=b"{}", headers={"content-type": "application/json"}
    )
    assert response.status_code == 401  # as a failed verification: ids cannot be enumerated (issue 11)
    assert "nope" in response.json()["detail"]
    response = httpx.get(f"{server.url}/hooks/typeform")
    assert response.status_code == 405


def test_verified_but_unrecognized_payload_is_kept(hub):
    hub_, server = hub
    source = hub_.config.sources["standard-webhooks"]
    from connectors._schemes import sign_standard_webhooks

    body = b'["not", "an", "object"]'
    headers = sign_standard_webhooks(source.config.secrets[0], "msg_shape_test", int(time.time()), body)
    headers["content-type"] = "application/json"
    response = httpx.post(f"{server.url}/hooks/standard-webhooks", content=body, headers=headers)
    assert response.status_code == 200
    answer = response.json()
    assert answer["status"] == "accepted" and "unrecognized payload" in answer["note"]
    row = _rows(hub_, "id = ?", (answer["id"],))[0]
    assert row["body"] == body and row["event_id"].startswith("sha256:")


def test_spool_write_failure_is_503_and_recovers(hub):
    hub_, server = hub
    conn = sqlite3.connect(hub_.spool_path)
    conn.execute("CREATE TRIGGER refuse BEFORE INSERT ON inbox BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    conn.commit()
    request = _sample(hub_, "typeform")
    try:
        response = _post(server, "typeform", request)
        assert response.status_code == 503
        assert response.headers["retry-after"]
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 200  # the probe writes meta, not inbox: the spool itself is writable
    finally:
        conn.execute("DROP TRIGGER refuse")
        conn.commit()
        conn.close()
    retry = _post(server, "typeform", request)
    assert retry.status_code == 200 and retry.json()["status"] == "accepted"


def test_health_and_readiness(hub):
    _, server = hub
    assert httpx.get(f"{server.url}/healthz").json() == {"status": "alive"}
    ready = httpx.get(f"{server.url}/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    metrics = httpx.get(f"{server.url}/metrics").text
    assert "hookhub_webhooks_total" in metrics


def test_readiness_fails_when_spool_writer_is_down(tmp_path: Path):
    config = tmp_path / "connectors.yaml"
    config.write_text(CONFIG.format(sources=_sources_yaml()), encoding="utf-8")
    hub_, server = start_hub(config, tmp_path / "data")
    try:
        hub_.spool.stop()
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503
        assert "spool" in ready.json()["problems"][0]
        response = _post(server, "typeform", _sample(hub_, "typeform"))
        assert response.status_code == 503
    finally:
        server.stop()


def test_readiness_says_when_the_spool_probe_timed_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    # A TimeoutError's text is empty: the problem must still say what happened (it once read
    # "spool not writable: ", since `exc or 'timed out'` is always the exception).
    config = tmp_path / "connectors.yaml"
    config.write_text(CONFIG.format(sources=_sources_yaml()), encoding="utf-8")
    hub_, server = start_hub(config, tmp_path / "data")

    async def probe_times_out() -> None:
        raise TimeoutError

    try:
        monkeypatch.setattr(hub_.spool, "probe", probe_times_out)
        ready = httpx.get(f"{server.url}/readyz")
        assert ready.status_code == 503
        assert ready.json()["problems"] == ["spool not writable: timed out"]
    finally:
        server.stop()
