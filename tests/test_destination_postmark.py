"""`postmark` destination: recorded answers (single and batch), per-item verdicts, exact requests,
rate limits on virtual time, config.

Fixtures: tests/fixtures/destinations/postmark/*.json, every file replayed with respx: an
object body answers POST /email for one item, an array answers POST /email/batch for as many
items as it has results. Retry classes: Postmark's, per docs/destinations/postmark.md (retry 429, 500,
503 and ErrorCode 100; permanent 401, 422, including ErrorCode 406 inactive recipient).
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
from flows.destinations.postmark import BATCH_SIZE, UNTIMED_PAUSE, PostmarkConfig, PostmarkDestination
from flows.pacing import Pacer
from tests.destination_helpers import captured_logs, dumped, fake_pacer, replay
from tests.email_destination_cases import (
    CONFIG,
    EXPECTED_HTML,
    EXPECTED_SUBJECT,
    EXPECTED_TEXT,
    NOW,
    PERSONAL,
    email_context,
    item,
)
from tests.harness import DESTINATION_FIXTURES

TOKEN = "0f4f1c1e-4b5d-4c1a-9a1e-7d2b3c4d5e6f"
BASE = "https://api.postmarkapp.com"
FOLDER = DESTINATION_FIXTURES / "postmark"
CASES = sorted(FOLDER.glob("*.json"))
# The conclusion each recorded case demands, one entry per message it answers for.
EXPECTED: dict[str, list[str]] = {
    "ok_200": ["delivered"],
    "bad_token_401": ["failed"],
    "invalid_request_422_300": ["failed"],
    "inactive_recipient_422_406": ["failed"],
    "sender_not_confirmed_422_401": ["failed"],
    "rate_limited_429": ["retry"],
    "server_error_500": ["retry"],
    "batch_mixed_200": ["delivered", "failed"],
}
KEY_ID = account_key("postmark", TOKEN)


def config(**extra: Any) -> PostmarkConfig:
    return PostmarkConfig.model_validate({"type": "postmark", "server_token": TOKEN, **CONFIG, **extra})


async def deliver(
    items: list[DeliveryItem], cfg: PostmarkConfig | None = None, pacer: Pacer | None = None
) -> list[Outcome]:
    context = email_context(pacer)
    return await deliver_chunk(PostmarkDestination(wall_clock=lambda: NOW), items, cfg or config(), context)


def by_rule(result: Any, status: int) -> str:
    """The documented rule (docs/destinations/postmark.md) for a case added later without an entry above."""
    code = result.get("ErrorCode") if isinstance(result, dict) else None
    if status == 429 or status >= 500 or code in (100, 429):
        return "retry"
    return "delivered" if status == 200 and code == 0 else "failed"


# --- recorded answers ---------------------------------------------------------------------------


def test_fixture_folder_is_there() -> None:
    assert CASES, f"no fixtures under {FOLDER}"


@pytest.mark.anyio
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
async def test_recorded_answer_is_classified(path: Path) -> None:
    recorded = json.loads(path.read_text())
    status, body = recorded["status"], recorded["body"]
    batch = isinstance(body, list)
    results = body if batch else [body]
    expected = EXPECTED.get(path.stem) or [by_rule(r, status) for r in results]
    items = [item(n + 1) for n in range(len(results))]
    pacer, _ = fake_pacer()
    with respx.mock(assert_all_called=True) as router:
        route = router.post(f"{BASE}/email/batch" if batch else f"{BASE}/email").mock(
            return_value=replay(path)
        )
        outcomes = await deliver(items, pacer=pacer)
    assert route.call_count == 1
    assert [o.key for o in outcomes] == [i.key for i in items]
    assert [o.status for o in outcomes] == expected, [o.reason for o in outcomes]
    assert {o.status_code for o in outcomes} == {status}
    for outcome, result in zip(outcomes, results, strict=True):
        if outcome.status == "delivered":
            assert outcome.remote_id == result["MessageID"]
        else:
            assert result["Message"][:40] in (outcome.reason or "")
    rate_limited = status == 429 or any(r.get("ErrorCode") == 429 for r in results)
    assert pacer.paused_for(KEY_ID) == (UNTIMED_PAUSE if rate_limited else 0.0)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("case", "start"),
    [
        ("inactive_recipient_422_406", "the recipient is inactive in Postmark (hard bounce, spam complaint"),
        (
            "sender_not_confirmed_422_401",
            "the `from` address is not a confirmed Sender Signature in Postmark",
        ),
        ("bad_token_401", "Postmark refused the server token: check server_token"),
        ("invalid_request_422_300", "Postmark says the e-mail is invalid: Error parsing 'To'"),
    ],
)
async def test_failures_say_what_to_do(case: str, start: str) -> None:
    with respx.mock() as router:
        router.post(f"{BASE}/email").mock(return_value=replay(FOLDER / f"{case}.json"))
        [outcome] = await deliver([item()])
    assert (outcome.reason or "").startswith(start), outcome.reason
    assert TOKEN not in (outcome.reason or "")


@pytest.mark.anyio
async def test_batch_judges_each_message_and_missing_results_are_failures() -> None:
    results = [
        {"ErrorCode": 0, "Message": "OK", "MessageID": "id-1", "To": "sales@example.com"},
        {"ErrorCode": 100, "Message": "Maintenance"},
        {"ErrorCode": 300, "Message": "Invalid 'To' address"},
    ]
    with respx.mock() as router:
        router.post(f"{BASE}/email/batch").mock(return_value=httpx.Response(200, json=results))
        outcomes = await deliver([item(n) for n in range(1, 5)])
    assert [o.status for o in outcomes] == ["delivered", "retry", "failed", "failed"]
    assert outcomes[0].remote_id == "id-1"
    assert "may or may not have been sent" in (outcomes[3].reason or "")


@pytest.mark.anyio
async def test_a_batch_refused_as_a_whole_is_sent_one_by_one() -> None:
    with respx.mock(assert_all_called=True) as router:
        batch = router.post(f"{BASE}/email/batch").mock(
            return_value=httpx.Response(422, json={"ErrorCode": 300, "Message": "Invalid 'To' in message 2"})
        )
        single = router.post(f"{BASE}/email").mock(
            side_effect=[replay(FOLDER / "ok_200.json"), replay(FOLDER / "invalid_request_422_300.json")]
        )
        outcomes = await deliver([item(1), item(2)])
    assert (batch.call_count, single.call_count) == (1, 2)
    assert [o.status for o in outcomes] == ["delivered", "failed"]


@pytest.mark.anyio
async def test_more_items_than_a_batch_takes_are_split() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        count = len(json.loads(request.content))
        return httpx.Response(
            200, json=[{"ErrorCode": 0, "Message": "OK", "MessageID": f"m{i}"} for i in range(count)]
        )

    with respx.mock() as router:
        route = router.post(f"{BASE}/email/batch").mock(side_effect=answer)
        outcomes = await deliver([item(n) for n in range(1, BATCH_SIZE + 31)])
    assert [len(json.loads(c.request.content)) for c in route.calls] == [BATCH_SIZE, 30]
    assert [o.status for o in outcomes] == ["delivered"] * (BATCH_SIZE + 30)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "content", "expected"),
    [
        (200, b"<html>portal</html>", "failed"),
        (200, b"[]", "failed"),
        (404, b"Not Found", "failed"),
        (413, b"", "failed"),
        (302, b"", "failed"),
        (503, b"<html>down</html>", "retry"),
        (422, b'{"ErrorCode": 0}', "failed"),
    ],
)
async def test_odd_answers_are_recorded_not_raised(status: int, content: bytes, expected: str) -> None:
    with respx.mock() as router:
        router.post(f"{BASE}/email").mock(return_value=httpx.Response(status, content=content))
        [outcome] = await deliver([item()])
    assert outcome.status == expected
    assert len(outcome.reason or "") < 600


@pytest.mark.anyio
async def test_transport_errors_retry_every_item_of_the_batch() -> None:
    with respx.mock() as router:
        router.post(f"{BASE}/email/batch").mock(side_effect=httpx.ReadTimeout("slow"))
        outcomes = await deliver([item(1), item(2)])
    assert [o.status for o in outcomes] == ["retry", "retry"]
    assert "may arrive twice" in (outcomes[0].reason or "")


# --- exact requests ---------------------------------------------------------------------------


def expected_message(**changes: Any) -> dict[str, Any]:
    message = {
        "From": "Forms <forms@hookhub.example>",
        "To": "sales@example.com",
        "Cc": "Support Team <support@example.com>",
        "Bcc": "audit@example.com",
        "ReplyTo": "Ada Lovelace <ada@example.com>",
        "Subject": EXPECTED_SUBJECT,
        "TextBody": EXPECTED_TEXT,
        "HtmlBody": EXPECTED_HTML,
        "MessageStream": "outbound",
        "Metadata": {"hookhub_submission_id": "sub_01JD4X3T0M9R8Q"},
    }
    message.update(changes)
    return message


def check_headers(request: httpx.Request) -> None:
    assert request.headers.pop("x-postmark-server-token") == TOKEN
    shown = {
        k: v
        for k, v in request.headers.items()
        if k not in ("content-length", "host", "accept-encoding", "connection")
    }
    assert shown == {
        "accept": "application/json",
        "content-type": "application/json",
        "user-agent": "hookhub-postmark/0.1",
    }


@pytest.mark.anyio
async def test_golden_single_request() -> None:
    with respx.mock() as router:
        route = router.post(f"{BASE}/email").mock(return_value=replay(FOLDER / "ok_200.json"))
        [outcome] = await deliver([item()], config(tag="contact-form"))
    assert outcome.status == "delivered"
    request = route.calls.last.request
    assert (request.method, str(request.url)) == ("POST", f"{BASE}/email")
    check_headers(request)
    expected = expected_message()
    expected = {
        **{k: v for k, v in expected.items() if k != "Metadata"},
        "Tag": "contact-form",
        "Metadata": expected["Metadata"],
    }
    assert request.content == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.mark.anyio
async def test_golden_batch_request() -> None:
    other = item(7)
    with respx.mock() as router:
        route = router.post("https://eu.proxy.example/email/batch").mock(
            return_value=replay(FOLDER / "batch_mixed_200.json")
        )
        outcomes = await deliver(
            [item(), other], config(base_url="https://eu.proxy.example/", message_stream="forms")
        )
    assert [o.status for o in outcomes] == ["delivered", "failed"]
    request = route.calls.last.request
    check_headers(request)
    assert json.loads(request.content) == [
        expected_message(MessageStream="forms"),
        expected_message(MessageStream="forms", Metadata={"hookhub_submission_id": "sub_0007"}),
    ]


@pytest.mark.anyio
async def test_a_mapping_error_fails_only_that_item() -> None:
    broken = item(1, mapping={"subject": "{% if %}"})
    with respx.mock() as router:
        route = router.post(f"{BASE}/email").mock(return_value=replay(FOLDER / "ok_200.json"))
        outcomes = await deliver([broken, item(2)])
    assert [o.status for o in outcomes] == ["failed", "delivered"]
    assert (outcomes[0].reason or "").startswith("map.subject: cannot render line 1: Expected an expression")
    assert route.call_count == 1  # the good one alone, on the single endpoint


# --- rate limits on virtual time ---------------------------------------------------------------


@pytest.mark.anyio
async def test_429_pauses_the_token_for_every_later_delivery() -> None:
    pacer, vt = fake_pacer()
    with respx.mock() as router:
        route = router.post(f"{BASE}/email").mock(
            side_effect=[replay(FOLDER / "rate_limited_429.json"), replay(FOLDER / "ok_200.json")]
        )
        first = await deliver([item(1)], pacer=pacer)
        later = await deliver([item(2)], pacer=pacer)
        assert route.call_count == 1
        vt.now += UNTIMED_PAUSE
        again = await deliver([item(2)], pacer=pacer)
    assert [o.status for o in first + later] == ["retry", "retry"]
    assert first[0].retry_after is None  # Postmark named no time
    assert later[0].retry_after == UNTIMED_PAUSE and "paused" in (later[0].reason or "")
    assert again[0].status == "delivered"


@pytest.mark.anyio
async def test_retry_after_is_honoured_exactly() -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        router.post(f"{BASE}/email").mock(
            return_value=httpx.Response(
                429,
                headers={"Retry-After": "3601"},
                json={"ErrorCode": 429, "Message": "Rate limit exceeded."},
            )
        )
        [outcome] = await deliver([item()], pacer=pacer)
    assert outcome.retry_after == 3601.0
    assert pacer.paused_for(KEY_ID) == 3601.0


@pytest.mark.anyio
async def test_a_rate_limited_message_inside_a_batch_pauses_the_token() -> None:
    pacer, _ = fake_pacer()
    results = [
        {"ErrorCode": 0, "Message": "OK", "MessageID": "a"},
        {"ErrorCode": 429, "Message": "Rate limit"},
    ]
    with respx.mock() as router:
        router.post(f"{BASE}/email/batch").mock(return_value=httpx.Response(200, json=results))
        outcomes = await deliver([item(1), item(2)], pacer=pacer)
    assert [o.status for o in outcomes] == ["delivered", "retry"]
    assert pacer.paused_for(KEY_ID) == UNTIMED_PAUSE


# --- config, registry, secrecy ------------------------------------------------------------------


def test_registered_as_postmark() -> None:
    assert isinstance(get_destination("postmark"), PostmarkDestination)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"server_token": f"{TOKEN} {TOKEN}"}, "must be the token itself"),
        ({"base_url": "ftp://api.postmarkapp.com"}, "must start with https://"),
        ({"message_stream": ""}, "at least 1 character"),
        ({"bcc": ["nobody"]}, "'nobody' is not an e-mail address"),
        ({"token": TOKEN}, "Extra inputs are not permitted"),
    ],
)
def test_bad_config_is_rejected_without_echoing_the_token(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config(**changes)
    assert message in str(caught.value)
    assert TOKEN not in str(caught.value)
    assert TOKEN not in repr(config())


def test_check_reports_template_syntax() -> None:
    cfg = config(subject="{{ name", map={"reply_to": "{{ email | nope }}"})
    assert get_destination("postmark").check(cfg) == [
        "subject: unexpected end of template, expected 'end of print statement'. (line 1)",
        "map.reply_to: No filter named 'nope'. (line 1)",
    ]


@pytest.mark.anyio
async def test_logs_carry_facts_but_no_token_or_personal_data() -> None:
    with captured_logs("hookhub.destinations.postmark") as records, respx.mock() as router:
        router.post(f"{BASE}/email/batch").mock(return_value=replay(FOLDER / "batch_mixed_200.json"))
        await deliver([item(1), item(2)])
    text = dumped(records)
    for secret in (TOKEN, *PERSONAL, "bounced@example.com"):
        assert secret not in text
    assert [(r.outcome, r.status_code) for r in records if hasattr(r, "outcome")] == [
        ("delivered", 200),
        ("failed", 200),
    ]
