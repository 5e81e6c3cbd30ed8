"""`sendgrid` destination: recorded answers, exact request, rate limits on virtual time, config.

Fixtures: tests/fixtures/destinations/sendgrid/*.json, every file replayed with respx; the
retry class of each case is SendGrid's, as docs/destinations/sendgrid.md states and cites it (retry
429, 500, 503; permanent 400, 401, 403, 413).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import ValidationError

from flows.delivery import deliver_chunk
from flows.destinations import get_destination
from flows.destinations._http import account_key
from flows.destinations.base import DeliveryItem, Outcome
from flows.destinations.sendgrid import UNTIMED_PAUSE, SendgridConfig, SendgridDestination
from flows.pacing import Pacer
from hub.config.loader import ConfigError, load_config
from tests.destination_helpers import captured_logs, dumped, fake_pacer, replay
from tests.email_destination_cases import (
    CONFIG,
    EXPECTED_HTML,
    EXPECTED_SUBJECT,
    EXPECTED_TEXT,
    PERSONAL,
    email_context,
    item,
)
from tests.harness import DESTINATION_FIXTURES

API_KEY = "SG.test-key.0123456789abcdefghijklmnopqrstuvwxyz"
URL = "https://api.sendgrid.com/v3/mail/send"
WALL = 1_763_892_900.0
"""60 s before the X-RateLimit-Reset (1763892960) of the recorded 429."""
FOLDER = DESTINATION_FIXTURES / "sendgrid"
CASES = sorted(FOLDER.glob("*.json"))
EXPECTED: dict[str, tuple[str, float | None]] = {
    "accepted_202": ("delivered", None),
    "bad_request_400": ("failed", None),
    "unauthorized_401": ("failed", None),
    "sender_identity_403": ("failed", None),
    "payload_too_large_413": ("failed", None),
    "rate_limited_429": ("retry", 60.0),  # until X-RateLimit-Reset
    "server_error_500": ("retry", None),
}
KEY_ID = account_key("sendgrid", API_KEY)


def config(**extra: Any) -> SendgridConfig:
    return SendgridConfig.model_validate({"type": "sendgrid", "api_key": API_KEY, **CONFIG, **extra})


async def deliver(
    items: list[DeliveryItem],
    cfg: SendgridConfig | None = None,
    pacer: Pacer | None = None,
    wall: float = WALL,
) -> list[Outcome]:
    context = email_context(pacer)
    return await deliver_chunk(SendgridDestination(wall_clock=lambda: wall), items, cfg or config(), context)


# --- recorded answers ---------------------------------------------------------------------------


def test_fixture_folder_is_there() -> None:
    assert CASES, f"no fixtures under {FOLDER}"


@pytest.mark.anyio
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
async def test_recorded_answer_is_classified(path: Path) -> None:
    status = json.loads(path.read_text())["status"]
    # A case added later is judged by the documented rule: 429 and 5xx retry, other non-2xx fail.
    rule = "delivered" if status == 202 else "retry" if status == 429 or status >= 500 else "failed"
    expected, wait = EXPECTED.get(path.stem, (rule, None))
    pacer, _ = fake_pacer()
    with respx.mock(assert_all_called=True) as router:
        route = router.post(URL).mock(return_value=replay(path))
        [outcome] = await deliver([item()], pacer=pacer)
    assert route.call_count == 1
    assert outcome.key == item().key
    assert outcome.status == expected, outcome.reason
    assert outcome.status_code == status
    if path.stem in EXPECTED:
        assert outcome.retry_after == wait
    if outcome.status != "delivered":
        assert str(status) in (outcome.reason or "")
    assert pacer.paused_for(KEY_ID) == (wait or 0.0)


@pytest.mark.anyio
async def test_accepted_mail_keeps_sendgrids_message_id() -> None:
    with respx.mock() as router:
        router.post(URL).mock(return_value=replay(FOLDER / "accepted_202.json"))
        [outcome] = await deliver([item()])
    assert outcome.remote_id == "Wl2HOQWiTkqyJzXCeyB4mw"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("case", "reason"),
    [
        (
            "bad_request_400",
            "SendGrid refused the mail (HTTP 400): from.email: The from object must be provided",
        ),
        (
            "sender_identity_403",
            (
                "SendGrid refused the mail (HTTP 403): from: The from address does not match a "
                "verified Sender Identity."
            ),
        ),
        (
            "unauthorized_401",
            (
                "SendGrid refused the mail (HTTP 401): The provided authorization grant is invalid, "
                "expired, or revoked; check api_key"
            ),
        ),
    ],
)
async def test_failures_quote_sendgrid_and_say_what_to_do(case: str, reason: str) -> None:
    with respx.mock() as router:
        router.post(URL).mock(return_value=replay(FOLDER / f"{case}.json"))
        [outcome] = await deliver([item()])
    assert (outcome.reason or "").startswith(reason)
    assert API_KEY not in (outcome.reason or "")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "content", "expected"),
    [
        (200, b"<html>captive portal</html>", "failed"),  # Mail Send answers 202, nothing else
        (204, b"", "failed"),
        (201, b"<html>proxy</html>", "failed"),
        (400, b"\xff\xfe garbage", "failed"),
        (301, b"", "failed"),
        (502, b"<html>Bad Gateway</html>", "retry"),
        (503, b"x" * 100_000, "retry"),
        (408, b"", "retry"),
    ],
)
async def test_odd_answers_are_recorded_not_raised(status: int, content: bytes, expected: str) -> None:
    with respx.mock() as router:
        router.post(URL).mock(return_value=httpx.Response(status, content=content))
        [outcome] = await deliver([item()])
    assert outcome.status == expected
    assert len(outcome.reason or "") < 600


@pytest.mark.anyio
@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
async def test_transport_errors_are_retried(error: Exception) -> None:
    with respx.mock() as router:
        router.post(URL).mock(side_effect=error)
        [outcome] = await deliver([item()])
    assert outcome.status == "retry" and outcome.status_code is None
    assert API_KEY not in (outcome.reason or "")


# --- exact request ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_golden_request() -> None:
    with respx.mock() as router:
        route = router.post(URL).mock(return_value=replay(FOLDER / "accepted_202.json"))
        [outcome] = await deliver([item()], config(timeout=12))
    assert outcome.status == "delivered"
    request = route.calls.last.request
    assert (request.method, str(request.url)) == ("POST", URL)
    assert request.headers.pop("authorization") == f"Bearer {API_KEY}"
    assert {
        k: v
        for k, v in request.headers.items()
        if k not in ("content-length", "host", "accept", "accept-encoding", "connection")
    } == {
        "content-type": "application/json",
        "user-agent": "hookhub-sendgrid/0.1",
    }
    expected = {
        "personalizations": [
            {
                "to": [{"email": "sales@example.com"}],
                "cc": [{"email": "support@example.com", "name": "Support Team"}],
                "bcc": [{"email": "audit@example.com"}],
            }
        ],
        "from": {"email": "forms@hookhub.example", "name": "Forms"},
        "reply_to": {"email": "ada@example.com", "name": "Ada Lovelace"},
        "subject": EXPECTED_SUBJECT,
        "content": [
            {"type": "text/plain", "value": EXPECTED_TEXT},
            {"type": "text/html", "value": EXPECTED_HTML},
        ],
        "custom_args": {"hookhub_submission_id": "sub_01JD4X3T0M9R8Q"},
    }
    assert request.content == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode()
    assert request.extensions["timeout"] == {"connect": 12, "read": 12, "write": 12, "pool": 12}


@pytest.mark.anyio
async def test_eu_base_url_and_text_only() -> None:
    eu = "https://api.eu.sendgrid.com/v3/mail/send"
    with respx.mock(assert_all_called=True) as router:
        route = router.post(eu).mock(return_value=httpx.Response(202))
        await deliver([item()], config(base_url="https://api.eu.sendgrid.com/", html=False))
    body = json.loads(route.calls.last.request.content)
    assert body["content"] == [{"type": "text/plain", "value": EXPECTED_TEXT}]


@pytest.mark.anyio
async def test_a_mapping_error_fails_only_that_item() -> None:
    broken = item(1, mapping={"to": "{{ answers['Missing'] | nosuch }}"})
    with respx.mock() as router:
        route = router.post(URL).mock(return_value=httpx.Response(202))
        outcomes = await deliver([broken, item(2)])
    assert [o.status for o in outcomes] == ["failed", "delivered"]
    assert outcomes[0].reason == "map.to: cannot render line 1: No filter named 'nosuch'."
    assert route.call_count == 1


# --- rate limits on virtual time ---------------------------------------------------------------


@pytest.mark.anyio
async def test_429_pauses_the_key_for_every_later_delivery_until_the_reset() -> None:
    pacer, vt = fake_pacer()
    with respx.mock() as router:
        route = router.post(URL).mock(
            side_effect=[replay(FOLDER / "rate_limited_429.json"), httpx.Response(202)]
        )
        first = await deliver([item(1), item(2)], config(concurrency=1), pacer)
        later = await deliver([item(3)], config(), pacer)
        assert route.call_count == 1  # nothing sent while paused
        vt.now += 60
        again = await deliver([item(3)], config(), pacer)
    assert [o.status for o in first + later] == ["retry"] * 3
    assert [o.retry_after for o in first + later] == [60.0, 60.0, 60.0]
    assert "paused" in (later[0].reason or "")
    assert again[0].status == "delivered"


@pytest.mark.anyio
async def test_retry_after_is_honoured_exactly_never_clamped() -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        router.post(URL).mock(return_value=httpx.Response(503, headers={"Retry-After": "7200.5"}))
        [outcome] = await deliver([item()], pacer=pacer)
    assert outcome.retry_after == 7200.5
    assert pacer.paused_for(KEY_ID) == 7200.5


@pytest.mark.anyio
async def test_429_without_timing_pauses_a_default_and_claims_no_retry_after() -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        router.post(URL).mock(return_value=httpx.Response(429, json={"errors": [{"message": "too many"}]}))
        [outcome] = await deliver([item()], pacer=pacer)
    assert (outcome.status, outcome.retry_after) == ("retry", None)
    assert pacer.paused_for(KEY_ID) == UNTIMED_PAUSE


@pytest.mark.anyio
async def test_spent_budget_queues_the_next_mail_instead_of_failing_it() -> None:
    pacer, vt = fake_pacer()
    sent_at: list[float] = []
    spent = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": str(int(WALL) + 3)}

    def answer(request: httpx.Request) -> httpx.Response:
        sent_at.append(vt.now)
        return httpx.Response(202, headers=spent if len(sent_at) == 1 else {})

    with respx.mock() as router:
        router.post(URL).mock(side_effect=answer)
        outcomes = await deliver([item(1), item(2)], config(concurrency=1), pacer)
    assert [o.status for o in outcomes] == ["delivered", "delivered"]
    assert sent_at == [1000.0, 1003.0]


# --- config, registry, secrecy ------------------------------------------------------------------


def test_registered_as_sendgrid() -> None:
    assert isinstance(get_destination("sendgrid"), SendgridDestination)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"api_key": f"{API_KEY} extra"}, "must be the API key itself"),
        ({"api_key": ""}, "must be the API key itself"),
        ({"base_url": "http://api.sendgrid.com"}, "must start with https://"),
        ({"from": f"{API_KEY}"}, "must be one e-mail address"),
        ({"concurrency": 0}, "greater than or equal to 1"),
        ({"apikey": API_KEY}, "Extra inputs are not permitted"),
    ],
)
def test_bad_config_is_rejected_without_echoing_the_key(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config(**changes)
    assert message in str(caught.value)
    assert API_KEY not in str(caught.value)


def test_loopback_http_base_url_is_allowed_for_tests() -> None:
    assert config(base_url="http://127.0.0.1:8025").base_url == "http://127.0.0.1:8025"
    assert API_KEY not in repr(config())


def test_loader_reports_template_problems(tmp_path: Path) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(
        "destinations:\n  mail:\n    type: sendgrid\n    api_key: SG.x\n    from: f@example.com\n"
        "    to: ['{{ answers[\"Team\"] }']\n    text_template: '{% for %}'\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    problems = "\n".join(str(p) for p in caught.value.problems)
    assert "destinations.mail: to[0]: unexpected '}'" in problems
    assert "destinations.mail: text_template: " in problems


@pytest.mark.anyio
async def test_logs_carry_facts_but_no_key_or_personal_data() -> None:
    with captured_logs("hookhub.destinations.sendgrid") as records, respx.mock() as router:
        router.post(URL).mock(
            side_effect=[replay(FOLDER / "accepted_202.json"), replay(FOLDER / "sender_identity_403.json")]
        )
        await deliver([item(1), item(2)], config(concurrency=1))
    text = dumped(records)
    for secret in (API_KEY, *PERSONAL, "Sender Identity"):
        assert secret not in text
    assert [(r.outcome, r.status_code) for r in records if hasattr(r, "outcome")] == [
        ("delivered", 202),
        ("failed", 403),
    ]
