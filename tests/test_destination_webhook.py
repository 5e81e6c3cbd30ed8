"""`webhook` destination: recorded answers, Standard Webhooks signing, Retry-After, concurrency, config.

Fixtures: tests/fixtures/destinations/webhook/*.json, replayed with respx; the retry class of
each case follows the Standard Webhooks delivery rules
(https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from datetime import UTC, datetime
from email.utils import format_datetime
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import respx
from pydantic import ValidationError

from connectors._schemes import verify_standard_webhooks
from connectors.base import InboundRequest, VerificationFailed
from flows.destinations import get_destination
from flows.destinations._http import account_key, parse_retry_after
from flows.destinations.base import DeliveryContext, DeliveryItem, Outcome
from flows.destinations.webhook import WebhookConfig, WebhookDestination
from flows.pacing import Pacer
from hub.submission import Answer, Submission
from tests.destination_helpers import loopback_server, replay
from tests.harness import DESTINATION_FIXTURES
from tests.httpx_senders import respx_sender

URL = "https://crm.example.com/hooks/forms"
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
OTHER_SECRET = "whsec_EAQMFunN9cJRB1htPZ0NSfpniZb7tDxZ4fYC2mVqfo0="
NOW = 1_795_183_408.0
CASES = sorted((DESTINATION_FIXTURES / "webhook").glob("*.json"))
# The conclusion each recorded case demands: (status, retry_after, disable).
EXPECTED: dict[str, tuple[str, float | None, bool]] = {
    "ok_200": ("delivered", None, False),
    "accepted_202_empty": ("delivered", None, False),
    "moved_301": ("failed", None, False),  # never followed: the URL must be updated
    "bad_request_400": ("failed", None, False),
    "gone_410": ("failed", None, True),
    "rate_limited_429": ("retry", 120.0, False),
    "server_error_500": ("retry", None, False),
    "bad_gateway_502": ("retry", None, False),
    "unavailable_503_retry_after": ("retry", 300.0, False),
    "gateway_timeout_504": ("retry", None, False),
}


class Clock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_submission(n: int = 1) -> Submission:
    return Submission.model_validate(
        {
            "id": f"sub_{n:04d}",
            "source": "contact-form",
            "provider": "typeform",
            "form_id": "frm_contact",
            "form_title": "Contact us",
            "event_id": f"evt_{n}",
            "submitted_at": "2026-11-23T10:15:00.250Z",
            "email": "ada@example.com",
            "name": "Ada Lovelace",
            "answers": [Answer(key="q1", label="Topics", type="multiple_choice", value=["Sales", "Süpport"])],
            "hidden": {"utm_source": "newsletter"},
            "metadata": {"ip": "192.0.2.1"},
        }
    )


def item(n: int = 1) -> DeliveryItem:
    return DeliveryItem(key=f"dlv_sub_{n:04d}_crm", submission=make_submission(n), route="all-leads")


def config(**extra: Any) -> WebhookConfig:
    return WebhookConfig.model_validate({"type": "webhook", "url": URL, "secret": SECRET, **extra})


async def deliver(
    items: list[DeliveryItem],
    cfg: WebhookConfig | None = None,
    pacer: Pacer | None = None,
    clock: Clock | None = None,
) -> list[Outcome]:
    clock = clock or Clock()

    http = respx_sender()
    context = DeliveryContext(http=http, pacer=pacer or Pacer(clock=clock), destination_id="crm")
    return await WebhookDestination(clock=clock).deliver(items, cfg or config(), context)


def inbound(request: httpx.Request) -> InboundRequest:
    return InboundRequest(
        method=request.method,
        url=str(request.url),
        headers={k.lower(): v for k, v in request.headers.items()},
        body=request.content,
    )


# --- recorded answers ---------------------------------------------------------------------------


def test_fixture_folder_is_there() -> None:
    assert CASES, f"no fixtures under {DESTINATION_FIXTURES / 'webhook'}"


@pytest.mark.anyio
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
async def test_recorded_answer_is_classified(path: Path) -> None:
    case = path.stem
    status = json.loads(path.read_text())["status"]
    # A case added later without an entry above is judged by the documented status rules.
    if 200 <= status < 300:
        rule = "delivered"
    elif status in (408, 409, 425, 429) or status >= 500:
        rule = "retry"
    else:
        rule = "failed"
    expected_status, expected_wait, expected_disable = EXPECTED.get(case, (rule, None, status == 410))
    clock = Clock()
    pacer = Pacer(clock=clock)
    with respx.mock(assert_all_called=True) as router:
        route = router.post(URL).mock(return_value=replay(path))
        [outcome] = await deliver([item()], pacer=pacer, clock=clock)
    assert route.call_count == 1  # one attempt; redirects are not followed
    assert outcome.key == "dlv_sub_0001_crm"
    assert (outcome.status, outcome.disable) == (expected_status, expected_disable), outcome.reason
    assert outcome.status_code == status
    if case in EXPECTED:
        assert outcome.retry_after == expected_wait
    assert pacer.paused_for(account_key("webhook", URL)) == (outcome.retry_after or 0.0)
    if outcome.status != "delivered":
        assert str(status) in (outcome.reason or "")
    if case == "bad_request_400":
        body = '{"error": "signature verification failed"}'
        assert outcome.reason == f"the receiver refused the request (HTTP 400): {body!r}"
    if case == "moved_301":
        assert "https://hooks.example.net/new-endpoint" in (outcome.reason or "")
        assert "update url" in (outcome.reason or "")
    if case == "gone_410":  # changing the url re-enables nothing; `hookhub replay` does
        assert outcome.reason == "the receiver answered 410 Gone: it asked hookhub to stop sending"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("response", "remote_id"),
    [
        (httpx.Response(201, json={"id": "rec_42", "ok": True}), "rec_42"),
        (httpx.Response(200, json={"id": 42}), "42"),
        (httpx.Response(200, json=[{"id": "x"}]), None),
        (httpx.Response(200, json={"id": True}), None),
        (httpx.Response(200, content=b"\xff not json"), None),
        (httpx.Response(204), None),
    ],
)
async def test_remote_id_is_recorded_when_the_receiver_returns_one(
    response: httpx.Response, remote_id: str | None
) -> None:
    with respx.mock() as router:
        router.post(URL).mock(return_value=response)
        [outcome] = await deliver([item()])
    assert outcome.status == "delivered"
    assert outcome.remote_id == remote_id


@pytest.mark.anyio
@pytest.mark.parametrize("status", [408, 409, 425])
async def test_conflict_and_timeout_statuses_are_retried(status: int) -> None:
    with respx.mock() as router:
        router.post(URL).mock(return_value=httpx.Response(status, text="later"))
        [outcome] = await deliver([item()])
    assert outcome.status == "retry"


@pytest.mark.anyio
async def test_other_client_errors_fail_with_a_short_snippet() -> None:
    with respx.mock() as router:
        router.post(URL).mock(return_value=httpx.Response(422, text="invalid " + "x" * 10_000))
        [outcome] = await deliver([item()])
    assert outcome.status == "failed"
    assert outcome.reason is not None
    assert outcome.reason.startswith("the receiver refused the request (HTTP 422): 'invalid xxx")
    quoted = outcome.reason.split(": ", 1)[1]
    assert len(quoted) <= 202  # 200 characters of body plus the quotes


@pytest.mark.anyio
@pytest.mark.parametrize(
    "error",
    [
        httpx.ConnectError("refused"),
        httpx.ConnectTimeout("slow"),
        httpx.ReadTimeout("slow"),
        httpx.RemoteProtocolError("eof"),
    ],
)
async def test_transport_errors_are_retried(error: Exception) -> None:
    with respx.mock() as router:
        router.post(URL).mock(side_effect=error)
        [outcome] = await deliver([item()])
    assert outcome.status == "retry"
    assert outcome.status_code is None


@pytest.mark.anyio
async def test_request_uses_the_configured_timeout_and_headers() -> None:
    cfg = config(timeout=12, headers={"Authorization": "Bearer t0ken", "X-Team": "sales"})
    with respx.mock() as router:
        route = router.post(URL).mock(return_value=httpx.Response(200))
        await deliver([item()], cfg)
    request = route.calls.last.request
    assert request.extensions["timeout"] == {"connect": 12, "read": 12, "write": 12, "pool": 12}
    assert request.headers["authorization"] == "Bearer t0ken"
    assert request.headers["x-team"] == "sales"
    assert request.headers["content-type"] == "application/json"
    assert "t0ken" not in repr(cfg)


# --- body and signature -------------------------------------------------------------------------


@pytest.mark.anyio
async def test_body_is_the_public_submission_json_and_the_signature_verifies() -> None:
    with respx.mock() as router:
        route = router.post(URL).mock(return_value=httpx.Response(200))
        await deliver([item()])
    request = route.calls.last.request
    assert json.loads(request.content) == make_submission().model_dump(mode="json")
    assert set(json.loads(request.content)) == set(Submission.model_fields)
    assert request.headers["webhook-id"] == "dlv_sub_0001_crm"
    assert request.headers["webhook-timestamp"] == str(int(NOW))
    verify_standard_webhooks(inbound(request), [SECRET], tolerance=300, now=NOW)
    with pytest.raises(VerificationFailed):
        verify_standard_webhooks(inbound(request), [OTHER_SECRET], tolerance=300, now=NOW)
    tampered = dataclasses.replace(inbound(request), body=request.content.replace(b"Ada", b"Eve"))
    with pytest.raises(VerificationFailed):
        verify_standard_webhooks(tampered, [SECRET], tolerance=300, now=NOW)


@pytest.mark.anyio
async def test_an_item_from_the_spool_sends_the_stored_json_byte_for_byte() -> None:
    stored = make_submission(7).model_dump_json()
    from_spool = DeliveryItem(key="dlv_sub_0007_crm", submission_json=stored, route="all-leads")
    with respx.mock() as router:
        route = router.post(URL).mock(return_value=httpx.Response(200))
        [outcome] = await deliver([from_spool])
    request = route.calls.last.request
    assert outcome.status == "delivered"
    assert request.content == stored.encode("utf-8")
    verify_standard_webhooks(inbound(request), [SECRET], tolerance=300, now=NOW)
    # Parsed only when read, and then the same submission.
    assert from_spool.submission == make_submission(7)


def test_an_item_needs_a_submission_or_its_json() -> None:
    with pytest.raises(TypeError, match="stored JSON"):
        DeliveryItem(key="k", route="r")


@pytest.mark.anyio
async def test_webhook_id_is_stable_across_attempts_and_the_timestamp_is_not() -> None:
    clock = Clock()
    with respx.mock() as router:
        route = router.post(URL).mock(side_effect=[httpx.Response(500), httpx.Response(200)])
        [first] = await deliver([item()], clock=clock)
        clock.now += 60
        [second] = await deliver([item()], clock=clock)
    assert (first.status, second.status) == ("retry", "delivered")
    one, two = (call.request for call in route.calls)
    assert one.headers["webhook-id"] == two.headers["webhook-id"] == "dlv_sub_0001_crm"
    assert int(two.headers["webhook-timestamp"]) - int(one.headers["webhook-timestamp"]) == 60
    assert one.content == two.content
    verify_standard_webhooks(inbound(one), [SECRET], tolerance=300, now=NOW)
    verify_standard_webhooks(inbound(two), [SECRET], tolerance=300, now=clock.now)


class _Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[InboundRequest]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        headers = {k.lower(): v for k, v in self.headers.items()}
        self.received.append(InboundRequest(method="POST", url=self.path, headers=headers, body=body))
        payload = b'{"id": "rcv_1"}'
        self.send_response(201)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.anyio
async def test_signature_verifies_on_a_real_loopback_receiver() -> None:
    with loopback_server(_Receiver) as port:
        cfg = WebhookConfig.model_validate(
            {"type": "webhook", "url": f"http://127.0.0.1:{port}/in", "secret": SECRET}
        )
        [outcome] = await deliver([item()], cfg)
    assert (outcome.status, outcome.remote_id) == ("delivered", "rcv_1")
    received = _Receiver.received[-1]
    verify_standard_webhooks(received, [SECRET], tolerance=300, now=NOW)
    assert json.loads(received.body)["id"] == "sub_0001"


# --- Retry-After, pausing, concurrency -----------------------------------------------------------


def test_retry_after_parsing() -> None:
    now = datetime(2026, 11, 23, 10, 0, 0, tzinfo=UTC).timestamp()
    assert parse_retry_after("120", now) == 120.0
    assert parse_retry_after(" 7 ", now) == 7.0
    assert parse_retry_after("0", now) == 0.0
    assert parse_retry_after("Mon, 23 Nov 2026 10:01:30 GMT", now) == 90.0
    assert parse_retry_after("Mon, 23 Nov 2026 10:01:30 -0000", now) == 90.0
    assert parse_retry_after("Mon, 23 Nov 2026 09:00:00 GMT", now) == 0.0  # already past
    assert parse_retry_after("Mon, 23 Nov 2026 10:00:00 GMT", now + 3600) == 0.0
    for garbage in (None, "", "soon", "-5", "1e3", "Mon, 99 Nov 2026 10:01:30 GMT"):
        assert parse_retry_after(garbage, now) is None


@pytest.mark.anyio
async def test_retry_after_http_date_is_honoured_and_pauses_the_endpoint() -> None:
    clock = Clock()
    pacer = Pacer(clock=clock)
    date = format_datetime(datetime.fromtimestamp(NOW + 90, tz=UTC), usegmt=True)
    with respx.mock() as router:
        route = router.post(URL).mock(return_value=httpx.Response(429, headers={"Retry-After": date}))
        [outcome] = await deliver([item(1)], pacer=pacer, clock=clock)
        [later] = await deliver([item(2)], pacer=pacer, clock=clock)
    assert (outcome.status, outcome.retry_after) == ("retry", 90.0)
    assert route.call_count == 1  # the second delivery was not sent during the pause
    assert (later.status, later.retry_after) == ("retry", 90.0)
    clock.now += 90
    assert pacer.paused_for(account_key("webhook", URL)) == 0.0


@pytest.mark.anyio
async def test_batch_is_delivered_concurrently_within_the_limit() -> None:
    in_flight = 0
    peak = 0

    async def answer(request: httpx.Request) -> httpx.Response:
        nonlocal in_flight, peak
        in_flight += 1
        peak = max(peak, in_flight)
        for _ in range(5):  # yield so other requests can start if the semaphore allows
            await asyncio.sleep(0)
        in_flight -= 1
        return httpx.Response(200, json={"id": json.loads(request.content)["id"]})

    with respx.mock() as router:
        router.post(URL).mock(side_effect=answer)
        outcomes = await deliver([item(i) for i in range(10)], config(concurrency=3))
    assert peak == 3
    assert sorted(o.key for o in outcomes) == sorted(f"dlv_sub_{i:04d}_crm" for i in range(10))
    assert {o.key: o.remote_id for o in outcomes}["dlv_sub_0007_crm"] == "sub_0007"


# --- config -------------------------------------------------------------------------------------


def test_registered_as_webhook() -> None:
    assert isinstance(get_destination("webhook"), WebhookDestination)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"url": "ftp://crm.example.com/x"}, "must start with https:// or http://"),
        ({"url": "crm.example.com/x"}, "must be an absolute URL"),
        ({"secret": "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"}, "must start with whsec_"),
        ({"secret": "whsec_not base64!"}, "not valid base64"),
        ({"secret": "whsec_c2hvcnQ="}, "too short"),
        ({"headers": {"webhook-signature": "v1,x"}}, "cannot be overridden"),
        ({"headers": {"Content-Type": "text/plain"}}, "cannot be overridden"),
        ({"headers": {"X-Ok": "a\r\nInjected: 1"}}, "must be one line"),
        ({"headers": {"bad name": "x"}}, "not a valid header name"),
        ({"concurrency": 0}, "greater than or equal to 1"),
    ],
)
def test_bad_config_is_rejected(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config(**changes)
    assert message in str(caught.value)
    assert SECRET.removeprefix("whsec_") not in str(caught.value)


def test_http_urls_are_allowed_for_generic_receivers() -> None:
    assert config(url="http://intranet.example/hook").url == "http://intranet.example/hook"
