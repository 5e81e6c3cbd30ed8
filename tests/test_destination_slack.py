"""`slack` destination: recorded answers, exact request body, Block Kit limits, pacing, config.

Fixtures: tests/fixtures/destinations/slack_webhook/*.json (incoming webhook) and
slack_chat_postmessage/*.json (Web API), replayed with respx; the retry class of each case is the
one Slack documents for incoming webhooks and chat.postMessage (docs/destinations/slack.md, "How
answers are classified" and "Sources").
"""

from __future__ import annotations

import asyncio
import email.utils
import json
import logging
import re
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import respx
from pydantic import ValidationError

from flows.delivery import deliver_chunk
from flows.destinations import get_destination
from flows.destinations._http import account_key
from flows.destinations._pause import INLINE_TURNS_SECONDS
from flows.destinations.base import DeliveryContext, DeliveryItem, Outcome
from flows.destinations.slack import ADVICE, SPACING, SlackConfig, SlackDestination, channel_key
from flows.destinations.slack.blocks import render_message
from flows.destinations.slack.web_api import ADVICE as API_ADVICE
from flows.pacing import Pacer
from hub.config.loader import ConfigError, load_config
from hub.submission import Answer, Submission
from tests.destination_helpers import VirtualTime, captured_logs, fake_pacer, loopback_server, replay
from tests.harness import DESTINATION_FIXTURES
from tests.httpx_senders import respx_sender

URL = "https://hooks.slack.com/services/T0000TEST/B0000TEST/SECRETtoken0000000000000"
TOKEN = "SECRETtoken0000000000000"
LINK = "https://hub.example.com/submissions/sub_01JD4X3T0M9R8Q"
SLACK_FIXTURES = DESTINATION_FIXTURES / "slack_webhook"
CASES = sorted(SLACK_FIXTURES.glob("*.json"))
# The conclusion each recorded case demands (incoming webhooks: 429/5xx transient, other 4xx permanent).
EXPECTED = {
    "ok": "delivered",
    "rate_limited": "retry",
    "rollup_error": "retry",
    "invalid_payload": "failed",
    "no_text": "failed",
    "action_prohibited": "failed",
    "channel_not_found": "failed",
    "channel_is_archived": "failed",
    "invalid_token": "failed",
    "no_service": "failed",
}


DEFAULT_ANSWERS = [Answer(key="q1", label="Topic", type="text", value="Sales")]


def make_submission(answers: list[Answer] | None = None, **changes: Any) -> Submission:
    data: dict[str, Any] = {
        "id": "sub_01JD4X3T0M9R8Q",
        "source": "contact-form",
        "provider": "typeform",
        "form_id": "frm_contact",
        "form_title": "Contact us",
        "event_id": "evt_1",
        "submitted_at": "2026-11-23T10:15:00Z",
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "answers": DEFAULT_ANSWERS if answers is None else answers,
    }
    data.update(changes)
    return Submission.model_validate(data)


def item(n: int = 1, submission: Submission | None = None, **changes: Any) -> DeliveryItem:
    return DeliveryItem(key=f"dlv_{n}", submission=submission or make_submission(), route="r", **changes)


def config(url: str = URL, **extra: Any) -> SlackConfig:
    return SlackConfig.model_validate({"type": "slack", "webhook_url": url, **extra})


async def deliver(
    items: list[DeliveryItem], cfg: SlackConfig, pacer: Pacer, link: str | None = LINK
) -> list[Outcome]:
    http = respx_sender()
    context = DeliveryContext(
        http=http, pacer=pacer, destination_id="team-slack", record_link=lambda _id: link
    )
    return await deliver_chunk(SlackDestination(wall_clock=lambda: 1_795_000_000.0), items, cfg, context)


# --- recorded answers ---------------------------------------------------------------------------


def test_fixture_folder_is_there() -> None:
    assert CASES, f"no fixtures under {SLACK_FIXTURES}"


@pytest.mark.anyio
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
async def test_recorded_answer_is_classified(path: Path) -> None:
    case = path.stem
    status = json.loads(path.read_text())["status"]
    # A case added later without an entry above is judged by the documented status rule.
    expected = EXPECTED.get(case) or ("retry" if status == 429 or status >= 500 else "failed")
    pacer, _ = fake_pacer()
    with respx.mock(assert_all_called=True) as router:
        route = router.post(URL).mock(return_value=replay(path))
        [outcome] = await deliver([item()], config(), pacer)
    assert route.call_count == 1
    assert outcome.key == "dlv_1"
    assert outcome.status == expected, outcome.reason
    assert outcome.status_code == status
    assert outcome.disable is False
    if expected == "failed":
        # Every failure says what Slack answered and what an admin can do about it.
        assert outcome.reason == f"Slack says {case}: {ADVICE[case]}"
    key = account_key("slack-webhook", URL)
    if case == "rate_limited":
        assert outcome.retry_after == 30.0
        assert pacer.paused_for(key) == 30.0
    else:
        assert pacer.paused_for(key) == 0.0
    if case == "rollup_error":
        assert outcome.retry_after is None
        assert "may be posted twice" in (outcome.reason or "")


@pytest.mark.anyio
async def test_archived_channel_reason_is_actionable() -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        router.post(URL).mock(return_value=replay(SLACK_FIXTURES / "channel_is_archived.json"))
        [outcome] = await deliver([item()], config(), pacer)
    assert outcome.reason == (
        "Slack says channel_is_archived: unarchive the channel or point the webhook at another"
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "content", "expected"),
    [
        (200, b"<html>captive portal</html>", "failed"),
        (200, b"", "failed"),
        (400, b"\xff\xfe\x00garbage\x80", "failed"),
        (403, b"some_new_error", "failed"),
        (302, b"", "failed"),
        (502, b"<html><body>502 Bad Gateway</body></html>", "retry"),
        (503, b"x" * 100_000, "retry"),
    ],
)
async def test_garbage_answers_are_recorded_not_raised(status: int, content: bytes, expected: str) -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        router.post(URL).mock(return_value=httpx.Response(status, content=content))
        [outcome] = await deliver([item()], config(), pacer)
    assert outcome.status == expected
    assert outcome.reason and len(outcome.reason) < 400


@pytest.mark.anyio
@pytest.mark.parametrize(
    "error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")]
)
async def test_transport_errors_are_retried(error: Exception) -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        router.post(URL).mock(side_effect=error)
        [outcome] = await deliver([item()], config(), pacer)
    assert outcome.status == "retry"
    assert outcome.status_code is None
    assert TOKEN not in (outcome.reason or "")


@pytest.mark.anyio
async def test_request_uses_the_configured_timeout() -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        route = router.post(URL).mock(return_value=httpx.Response(200, text="ok"))
        await deliver([item()], config(timeout=7), pacer)
    assert route.calls.last.request.extensions["timeout"] == {"connect": 7, "read": 7, "write": 7, "pool": 7}


# --- exact body and Block Kit limits ------------------------------------------------------------


@pytest.mark.anyio
async def test_golden_body_escapes_user_text() -> None:
    answers = [
        Answer(key="q1", label="Company", type="short_text", value="Engines & Co <Ltd> <!channel>"),
        Answer(key="q2", label="Topics", type="multiple_choice", value=["Sales", "Support"]),
        Answer(key="q3", label="Newsletter", type="yes_no", value=True),
        Answer(key="q4", label="Tickets", type="number", value=3),
        Answer(key="q5", label="Comments", type="long_text", value=None),
    ]
    submission = make_submission(answers, name="Ada <Lovelace>")
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        route = router.post(URL).mock(return_value=httpx.Response(200, text="ok"))
        cfg = config(username="hookhub", icon_emoji=":inbox_tray:")
        [outcome] = await deliver([item(submission=submission)], cfg, pacer)
    assert outcome.status == "delivered"
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    expected = {
        "text": "New submission: Contact us from Ada &lt;Lovelace&gt; (ada@example.com)",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Contact us"}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*Name*\nAda &lt;Lovelace&gt;"},
                    {"type": "mrkdwn", "text": "*Email*\nada@example.com"},
                ],
            },
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*Company*\nEngines &amp; Co &lt;Ltd&gt; &lt;!channel&gt;"},
                    {"type": "mrkdwn", "text": "*Topics*\nSales, Support"},
                    {"type": "mrkdwn", "text": "*Newsletter*\nYes"},
                    {"type": "mrkdwn", "text": "*Tickets*\n3"},
                    {"type": "mrkdwn", "text": "*Comments*\n(no answer)"},
                ],
            },
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": (
                            f"Submitted 2026-11-23 10:15 UTC · source contact-form · <{LINK}|View in hookhub>"
                        ),
                    }
                ],
            },
        ],
        "username": "hookhub",
        "icon_emoji": ":inbox_tray:",
    }
    assert json.loads(request.content) == expected
    assert request.content == json.dumps(expected, ensure_ascii=False).encode("utf-8")


@pytest.mark.anyio
async def test_golden_body_with_60_answers_and_a_5000_char_answer() -> None:
    answers = [
        Answer(key=f"q{i}", label=f"Question {i}", type="text", value=f"Answer {i}") for i in range(1, 61)
    ]
    answers[29] = Answer(key="q30", label="Question 30", type="long_text", value="A" * 5000)
    submission = make_submission(answers, name=None, form_title=None)
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        route = router.post(URL).mock(return_value=httpx.Response(200, text="ok"))
        await deliver([item(submission=submission)], config(), pacer, link=None)

    def fields(first: int, last: int) -> dict[str, Any]:
        return {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*Question {i}*\nAnswer {i}"} for i in range(first, last + 1)
            ],
        }

    long_head = "*Question 30*\n"
    expected = {
        "text": "New submission: frm_contact from ada@example.com",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "frm_contact"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Email*\nada@example.com"}]},
            fields(1, 10),
            fields(11, 20),
            fields(21, 29),
            {
                "type": "section",
                "text": {"type": "mrkdwn", "text": long_head + "A" * (3000 - len(long_head) - 1) + "…"},
            },
            fields(31, 40),
            fields(41, 50),
            fields(51, 60),
            {
                "type": "context",
                "elements": [
                    {"type": "mrkdwn", "text": "Submitted 2026-11-23 10:15 UTC · source contact-form"}
                ],
            },
        ],
    }
    body = json.loads(route.calls.last.request.content)
    assert body == expected
    assert_within_slack_limits(body)


def test_too_many_blocks_are_summarised_with_a_link() -> None:
    answers = [Answer(key=f"q{i}", label=f"Essay {i}", type="text", value="w" * 400) for i in range(1, 61)]
    message = render_message(make_submission(answers), LINK)
    assert_within_slack_limits(message)
    blocks = message["blocks"]
    assert len(blocks) == 50
    assert blocks[-3]["text"]["text"].startswith("*Essay 46*\n")
    assert blocks[-2] == {
        "type": "context",
        "elements": [
            {
                "type": "mrkdwn",
                "text": (f"…and 14 more answers not shown here: <{LINK}|see the full submission>"),
            }
        ],
    }


PATHOLOGICAL = {
    "600 short answers": {
        "answers": [Answer(key=f"k{i}", label=f"L{i}", type="t", value=i) for i in range(600)]
    },
    "huge title": {"form_title": "T" * 5000},
    "huge label": {"answers": [Answer(key="k", label="L" * 5000, type="t", value="v")]},
    "ampersands": {"answers": [Answer(key="k", label="&" * 3000, type="t", value="&" * 5000)]},
    "field ampersands": {"answers": [Answer(key="k", label="x", type="t", value="<&>" * 40)]},
    "emoji": {
        "answers": [Answer(key="k", label="😀" * 300, type="t", value="😀" * 5000)],
        "form_title": "😀" * 200,
    },
    "huge respondent": {"name": "N" * 5000, "email": "e" * 5000 + "@example.com"},
    "no answers, no title": {"answers": [], "form_title": None, "form_id": None, "name": None, "email": None},
    "empty strings": {
        "answers": [Answer(key="", label="", type="t", value="")],
        "form_title": "",
        "form_id": "",
    },
    "many lists": {"answers": [Answer(key="k", label="Pick", type="t", value=["x" * 100] * 100)] * 80},
}


@pytest.mark.parametrize("changes", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_every_message_stays_within_slack_limits(changes: dict[str, Any]) -> None:
    answers = changes.pop("answers", None)
    for link in (LINK, None, "https://hub.example.com/" + "x" * 5000):
        assert_within_slack_limits(render_message(make_submission(answers, **changes), link))


def assert_within_slack_limits(message: dict[str, Any]) -> None:
    """Slack's Block Kit limits (docs/destinations/slack.md, Sources), checked apart from the renderer."""

    def size(text: str) -> int:
        return len(text.encode("utf-16-le")) // 2

    def escaped_ok(text: str) -> bool:
        # Outside `<url|label>` links every <, > and & must be an entity.
        bare = re.sub(r"<https://[^<>|\s]+\|[^<>]+>", "", text)
        bare = re.sub(r"&(amp|lt|gt);", "", bare)
        return not re.search(r"[<>&]", bare)

    assert message["text"].strip() and size(message["text"]) <= 3000 and escaped_ok(message["text"])
    blocks = message["blocks"]
    assert 1 <= len(blocks) <= 50
    for block in blocks:
        kind = block["type"]
        if kind == "header":
            assert block["text"]["type"] == "plain_text"
            assert 0 < size(block["text"]["text"]) <= 150
        elif kind == "section":
            assert "text" in block or block.get("fields")
            if "text" in block:
                assert 0 < size(block["text"]["text"]) <= 3000 and escaped_ok(block["text"]["text"])
            assert len(block.get("fields", [])) <= 10
            for field in block.get("fields", []):
                assert 0 < size(field["text"]) <= 2000 and escaped_ok(field["text"])
        elif kind == "context":
            assert 1 <= len(block["elements"]) <= 10
            for element in block["elements"]:
                assert 0 < size(element["text"]) <= 3000 and escaped_ok(element["text"])
        else:
            raise AssertionError(f"unexpected block type {kind}")


# --- pacing -------------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_two_deliveries_to_one_webhook_are_a_second_apart() -> None:
    pacer, vt = fake_pacer()
    sent_at: list[float] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent_at.append(vt.now)
        return httpx.Response(200, text="ok")

    with respx.mock() as router:
        router.post(URL).mock(side_effect=record)
        http = respx_sender()
        context = DeliveryContext(http=http, pacer=pacer)
        dest = SlackDestination()
        # Two independent deliveries (two tasks) to the same webhook, at the same moment.
        await asyncio.gather(
            dest.deliver([item(1)], config(), context), dest.deliver([item(2)], config(), context)
        )
    assert len(sent_at) == 2
    assert sent_at[1] - sent_at[0] >= 1.0


async def paced_posts(count: int) -> tuple[list[Outcome], list[float], VirtualTime]:
    """`count` items delivered in one task on virtual time: the outcomes, and when each post went."""
    pacer, vt = fake_pacer()
    sent_at: list[float] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent_at.append(vt.now)
        return httpx.Response(200, text="ok")

    with respx.mock() as router:
        router.post(URL).mock(side_effect=record)
        outcomes = await deliver([item(i) for i in range(count)], config(), pacer)
    return outcomes, sent_at, vt


@pytest.mark.anyio
async def test_a_batch_is_paced_one_per_second() -> None:
    outcomes, sent_at, _ = await paced_posts(3)
    assert [o.status for o in outcomes] == ["delivered"] * 3
    assert sent_at == pytest.approx([1000.0, 1000.0 + SPACING, 1000.0 + 2 * SPACING])


@pytest.mark.anyio
async def test_a_backlog_is_handed_back_spread_over_the_turns_it_needs() -> None:
    # A batch of 12 posts: waiting for all would hold the batch's other destinations ~12 s.
    # The posts beyond the turns that fit in INLINE_TURNS_SECONDS go back to the ledger, each due
    # at a turn of its own (not all at once, to be handed back again), and none counts as an attempt.
    outcomes, sent_at, vt = await paced_posts(12)
    inline = int(INLINE_TURNS_SECONDS / SPACING) + 1
    assert [o.status for o in outcomes] == ["delivered"] * inline + ["retry"] * (12 - inline)
    assert sent_at == pytest.approx([1000.0 + n * SPACING for n in range(inline)])
    handed_back = outcomes[inline:]
    assert all(o.deferred for o in handed_back)
    assert "queued behind earlier sends" in (handed_back[0].reason or "")
    # Due one turn apart, the first right after the turns the inline posts took (the clock
    # has moved on by the inline sends, so these are counted from the last one's time).
    dues = [vt.now + (o.retry_after or 0) for o in handed_back]
    assert dues == pytest.approx([1000.0 + n * SPACING for n in range(inline, 12)])


@pytest.mark.anyio
async def test_rate_limit_pauses_the_webhook_for_every_later_delivery() -> None:
    pacer, _ = fake_pacer()
    limited = SLACK_FIXTURES / "rate_limited.json"
    with respx.mock() as router:
        route = router.post(URL).mock(side_effect=[replay(limited)])
        first = await deliver([item(1), item(2)], config(), pacer)
        later = await deliver([item(3)], config(), pacer)
    assert route.call_count == 1  # nothing was sent while paused
    assert [o.status for o in first + later] == ["retry"] * 3
    assert [o.retry_after for o in first + later] == [30.0, 30.0, 30.0]
    assert "paused" in (later[0].reason or "")


# --- config, registry, secrecy ------------------------------------------------------------------


def test_registered_as_slack() -> None:
    assert isinstance(get_destination("slack"), SlackDestination)


@pytest.mark.parametrize("url", ["http://127.0.0.1:8080/hook", "http://localhost/x", "http://[::1]:9/x", URL])
def test_https_or_loopback_urls_are_accepted(url: str) -> None:
    assert config(url).webhook_url is not None


@pytest.mark.parametrize(
    "url", ["http://hooks.slack.com/services/T/B/" + TOKEN, "ftp://x/" + TOKEN, TOKEN, ""]
)
def test_other_urls_are_rejected_without_echoing_them(url: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config(url)
    assert TOKEN not in str(caught.value)


def test_config_problems_are_reported_by_the_loader(tmp_path: Path) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(
        "destinations:\n"
        "  a:\n    type: slack\n"
        f"  b:\n    type: slack\n    webhook_url: http://hooks.slack.com/services/T/B/{TOKEN}\n"
        "    icon_emoji: inbox\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    problems = [str(p) for p in caught.value.problems]
    missing = (
        "missing the Slack target: set webhook_url (an incoming webhook URL), "
        "or token (a bot token, xoxb-…) + channel (where to post)"
    )
    assert f"{path}:3:5: destinations.a: {missing}" in problems
    assert any("destinations.b.webhook_url: must start with https://" in p for p in problems)
    assert any("destinations.b.icon_emoji: must be an emoji name" in p for p in problems)
    assert TOKEN not in "\n".join(problems)
    assert TOKEN not in repr(config())


@pytest.mark.anyio
async def test_logs_carry_facts_but_no_url_or_personal_data() -> None:
    pacer, _ = fake_pacer()
    with captured_logs("hookhub.destinations.slack") as records, respx.mock() as router:
        router.post(URL).mock(
            side_effect=[httpx.Response(200, text="ok"), replay(SLACK_FIXTURES / "rate_limited.json")]
        )
        await deliver([item(1), item(2)], config(), pacer)
    assert records
    dumped = " ".join(json.dumps(vars(r), default=str) for r in records)
    for secret in (TOKEN, "hooks.slack.com", "ada@example.com", "Ada Lovelace", "Sales"):
        assert secret not in dumped
    outcomes = [(r.outcome, r.status_code) for r in records if hasattr(r, "outcome")]
    assert outcomes == [("delivered", 200), ("retry", 429)]


class _SlackLike(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:  # the name http.server dispatches to
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.anyio
async def test_posts_to_a_real_loopback_server() -> None:
    with loopback_server(_SlackLike) as port:
        pacer, _ = fake_pacer()
        url = f"http://127.0.0.1:{port}/services/T/B/{TOKEN}"
        [outcome] = await deliver([item()], config(url), pacer)
    assert outcome.status == "delivered"
    path, body = _SlackLike.received[-1]
    assert path == f"/services/T/B/{TOKEN}"
    header = {"type": "header", "text": {"type": "plain_text", "text": "Contact us"}}
    assert json.loads(body)["blocks"][0] == header


# === Web API: token + channel, chat.postMessage / chat.update (Slack's Web API) ==============

XOXB = "xoxb-0000000000-1111111111111-SECRETbotTOKENxyz0000000"
CHANNEL = "C0123456789"
POST_URL = "https://slack.com/api/chat.postMessage"
UPDATE_URL = "https://slack.com/api/chat.update"
API_FIXTURES = DESTINATION_FIXTURES / "slack_chat_postmessage"
API_CASES = sorted(API_FIXTURES.glob("*.json"))
# The conclusion each recorded case demands (chat.postMessage: retryable / permanent errors).
API_EXPECTED = {
    "ok": "delivered",
    "ok_with_warning": "delivered",
    "ratelimited": "retry",
    "internal_error": "retry",
    "http_503": "retry",
    "channel_not_found": "failed",
    "not_in_channel": "failed",
    "is_archived": "failed",
    "invalid_auth": "failed",
    "invalid_blocks": "failed",
    "msg_too_long": "failed",
}
TRANSIENT_CODES = {"ratelimited", "rate_limited", "internal_error", "fatal_error", "service_unavailable"}
POSTED = "C0123456789:1763892900.000100"


def api_config(**extra: Any) -> SlackConfig:
    return SlackConfig.model_validate({"type": "slack", "token": XOXB, "channel": CHANNEL, **extra})


def slack_ok(channel: str = CHANNEL, ts: str = "1763892900.000100") -> httpx.Response:
    return httpx.Response(200, json={"ok": True, "channel": channel, "ts": ts})


def slack_error(code: str, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json={"ok": False, "error": code}, headers=headers)


def expected_class(recorded: dict[str, Any]) -> str:
    """For a case added later without an entry above: the documented rule."""
    status, body = recorded["status"], recorded["body"]
    if status == 429 or status >= 500:
        return "retry"
    if isinstance(body, dict) and body.get("ok") is True:
        return "delivered"
    return "retry" if isinstance(body, dict) and body.get("error") in TRANSIENT_CODES else "failed"


def test_api_fixture_folder_is_there() -> None:
    assert API_CASES, f"no fixtures under {API_FIXTURES}"
    assert {p.stem for p in API_CASES} >= set(API_EXPECTED)


@pytest.mark.anyio
@pytest.mark.parametrize("path", API_CASES, ids=[p.stem for p in API_CASES])
async def test_recorded_api_answer_is_classified(path: Path) -> None:
    case, recorded = path.stem, json.loads(path.read_text(encoding="utf-8"))
    expected = API_EXPECTED.get(case) or expected_class(recorded)
    pacer, _ = fake_pacer()
    with respx.mock(assert_all_called=True) as router:
        route = router.post(POST_URL).mock(return_value=replay(path))
        [outcome] = await deliver([item()], api_config(), pacer)
    assert route.call_count == 1
    assert outcome.key == "dlv_1"
    assert outcome.status == expected, outcome.reason
    assert outcome.status_code == recorded["status"]
    body = recorded["body"]
    if expected == "delivered":
        assert outcome.remote_id == f"{body['channel']}:{body['ts']}"
        assert outcome.reason is None
    else:
        assert outcome.remote_id is None
    if expected == "failed":
        # Slack's code plus what an admin can do about it.
        assert (outcome.reason or "").startswith(f"Slack says {body['error']}: {API_ADVICE[body['error']]}")
    key = channel_key(api_config())
    if recorded["status"] == 429:
        wait = float(recorded["headers"]["Retry-After"])
        assert outcome.retry_after == wait
        assert pacer.paused_for(key) == wait
    else:
        assert outcome.retry_after is None
        assert pacer.paused_for(key) == 0.0
    if expected == "retry" and recorded["status"] != 429:
        assert "may be posted twice" in (outcome.reason or "")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("case", "advice"),
    [
        ("channel_not_found", "/invite"),
        ("not_in_channel", "chat:write.public"),
        ("is_archived", "unarchive"),
        ("invalid_auth", "reinstall the Slack app"),
        ("msg_too_long", "shorten the route's template"),
    ],
)
async def test_permanent_api_errors_say_what_to_do(case: str, advice: str) -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        router.post(POST_URL).mock(return_value=replay(API_FIXTURES / f"{case}.json"))
        [outcome] = await deliver([item()], api_config(), pacer)
    assert outcome.status == "failed"
    assert advice in (outcome.reason or "")


@pytest.mark.anyio
async def test_invalid_blocks_reason_carries_slacks_explanation() -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        router.post(POST_URL).mock(return_value=replay(API_FIXTURES / "invalid_blocks.json"))
        [outcome] = await deliver([item()], api_config(), pacer)
    assert outcome.reason == (
        "Slack says invalid_blocks: Slack rejected the message hookhub built; please report it with the "
        "submission id [must be less than 151 characters [json-pointer:/blocks/0/text/text]]"
    )


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (slack_error("fatal_error"), "retry"),
        (slack_error("service_unavailable"), "retry"),
        (slack_error("token_revoked"), "failed"),
        (httpx.Response(200, json={"ok": False, "error": "missing_scope", "needed": "chat:write"}), "failed"),
        (slack_error("some_future_error"), "failed"),
        (httpx.Response(200, json={"ok": False}), "failed"),
        (httpx.Response(200, text="<html>captive portal</html>"), "failed"),
        (httpx.Response(200, content=b""), "failed"),
        (httpx.Response(200, json=[1, 2]), "failed"),
        (httpx.Response(200, json={"ok": "yes"}), "failed"),
        (httpx.Response(200, content=b"\xff\xfe{garbage\x80"), "failed"),
        (httpx.Response(404, text="<html>Not Found</html>"), "failed"),
        (httpx.Response(302, headers={"location": "https://elsewhere.example"}), "failed"),
        (httpx.Response(502, text="<html>Bad Gateway</html>"), "retry"),
        (httpx.Response(500, content=b"x" * 100_000), "retry"),
        (httpx.Response(200, json={"ok": True}), "delivered"),
    ],
)
async def test_odd_api_answers_are_recorded_not_raised(answer: httpx.Response, expected: str) -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        router.post(POST_URL).mock(return_value=answer)
        [outcome] = await deliver([item()], api_config(), pacer)
    assert outcome.status == expected, outcome.reason
    assert outcome.reason is None or len(outcome.reason) < 400
    if expected == "delivered":
        assert outcome.remote_id is None  # no ts, nothing to edit later


@pytest.mark.anyio
async def test_missing_scope_names_the_scope() -> None:
    pacer, _ = fake_pacer()
    answer = httpx.Response(200, json={"ok": False, "error": "missing_scope", "needed": "chat:write"})
    with respx.mock() as router:
        router.post(POST_URL).mock(return_value=answer)
        [outcome] = await deliver([item()], api_config(), pacer)
    assert outcome.reason == f"Slack says missing_scope: {API_ADVICE['missing_scope']} (needed: chat:write)"


@pytest.mark.anyio
async def test_golden_api_request() -> None:
    pacer, _ = fake_pacer()
    cfg = api_config(username="hookhub", icon_emoji=":inbox_tray:", timeout=9)
    with respx.mock() as router:
        route = router.post(POST_URL).mock(return_value=replay(API_FIXTURES / "ok.json"))
        [outcome] = await deliver([item()], cfg, pacer)
    assert outcome.status == "delivered"
    request = route.calls.last.request
    assert request.method == "POST"
    assert str(request.url) == "https://slack.com/api/chat.postMessage"
    assert request.headers["authorization"] == f"Bearer {XOXB}"
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    # What the destination sets, plus the request's own host and length; a client's defaults
    # (accept, accept-encoding, connection) are not the destination's and no longer show here.
    assert sorted(request.headers) == sorted(
        [
            "host",
            "user-agent",
            "content-length",
            "content-type",
            "authorization",
        ]
    )
    assert request.extensions["timeout"] == {"connect": 9, "read": 9, "write": 9, "pool": 9}
    expected = {
        "channel": CHANNEL,
        "text": "New submission: Contact us from Ada Lovelace (ada@example.com)",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Contact us"}},
            {
                "type": "section",
                "fields": [
                    {"type": "mrkdwn", "text": "*Name*\nAda Lovelace"},
                    {"type": "mrkdwn", "text": "*Email*\nada@example.com"},
                ],
            },
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Topic*\nSales"}]},
            {
                "type": "context",
                "elements": [
                    {
                        "type": "mrkdwn",
                        "text": (
                            f"Submitted 2026-11-23 10:15 UTC · source contact-form · <{LINK}|View in hookhub>"
                        ),
                    }
                ],
            },
        ],
        "username": "hookhub",
        "icon_emoji": ":inbox_tray:",
    }
    assert request.content == json.dumps(expected, ensure_ascii=False).encode("utf-8")
    # The same Block Kit rendering as the webhook way.
    assert {k: v for k, v in expected.items() if k != "channel"} == render_message(
        make_submission(), LINK, "hookhub", ":inbox_tray:"
    )


@pytest.mark.anyio
async def test_base_url_points_at_another_api_root() -> None:
    pacer, _ = fake_pacer()
    with respx.mock(assert_all_called=True) as router:
        route = router.post("https://slack-proxy.example.com/api/chat.postMessage").mock(
            return_value=slack_ok()
        )
        [outcome] = await deliver(
            [item()], api_config(base_url="https://slack-proxy.example.com/api/"), pacer
        )
    assert outcome.status == "delivered" and route.call_count == 1


@pytest.mark.anyio
@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
async def test_api_transport_errors_are_retried(error: Exception) -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        router.post(POST_URL).mock(side_effect=error)
        [outcome] = await deliver([item()], api_config(), pacer)
    assert outcome.status == "retry" and outcome.status_code is None
    assert XOXB not in (outcome.reason or "")
    assert ("may be posted twice" in (outcome.reason or "")) == isinstance(error, httpx.ReadTimeout)


# --- remote_id: record (channel, ts), edit instead of posting again --------------------------


@pytest.mark.anyio
async def test_a_replayed_message_is_edited_not_posted_twice() -> None:
    pacer, _ = fake_pacer()
    cfg = api_config(username="hookhub", icon_emoji=":inbox_tray:")
    with respx.mock(assert_all_called=True) as router:
        post = router.post(POST_URL).mock(return_value=replay(API_FIXTURES / "ok.json"))
        update = router.post(UPDATE_URL).mock(return_value=slack_ok())
        [first] = await deliver([item()], cfg, pacer)
        # The ledger hands the recorded id back on a replay of the same (submission, destination).
        [again] = await deliver([item(remote_id=first.remote_id)], cfg, pacer)
    assert first.remote_id == POSTED
    assert post.call_count == 1 and update.call_count == 1
    assert again.status == "delivered" and again.remote_id == POSTED
    posted = json.loads(post.calls.last.request.content)
    edited = json.loads(update.calls.last.request.content)
    assert update.calls.last.request.headers["authorization"] == f"Bearer {XOXB}"
    # chat.update takes the channel ID and ts, the same text and blocks, and no identity overrides.
    assert edited == {
        "channel": "C0123456789",
        "ts": "1763892900.000100",
        "text": posted["text"],
        "blocks": posted["blocks"],
    }


@pytest.mark.anyio
async def test_an_edit_of_a_deleted_message_posts_it_anew() -> None:
    pacer, vt = fake_pacer()
    sent: list[tuple[str, float]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent.append((request.url.path, vt.now))
        if request.url.path.endswith("chat.update"):
            return slack_error("message_not_found")
        return slack_ok(ts="1763899999.000200")

    with respx.mock() as router:
        router.post(url__startswith="https://slack.com/api/").mock(side_effect=answer)
        [outcome] = await deliver([item(remote_id=POSTED)], api_config(), pacer)
    assert [path for path, _ in sent] == ["/api/chat.update", "/api/chat.postMessage"]
    assert [t for _, t in sent] == pytest.approx([1000.0, 1000.0 + SPACING])
    assert outcome.status == "delivered" and outcome.remote_id == "C0123456789:1763899999.000200"


@pytest.mark.anyio
async def test_an_edit_slack_refuses_fails_without_posting() -> None:
    pacer, _ = fake_pacer()
    with respx.mock(assert_all_called=False) as router:
        post = router.post(POST_URL).mock(return_value=slack_ok())
        router.post(UPDATE_URL).mock(return_value=slack_error("cant_update_message"))
        [outcome] = await deliver([item(remote_id=POSTED)], api_config(), pacer)
    assert post.call_count == 0
    assert outcome.status == "failed"
    assert outcome.reason == f"Slack says cant_update_message: {API_ADVICE['cant_update_message']}"


@pytest.mark.anyio
async def test_an_edit_that_times_out_is_retried_without_a_duplicate_warning() -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        router.post(UPDATE_URL).mock(side_effect=httpx.ReadTimeout("slow"))
        [outcome] = await deliver([item(remote_id=POSTED)], api_config(), pacer)
    assert outcome.status == "retry"
    assert "twice" not in (outcome.reason or "")


@pytest.mark.anyio
@pytest.mark.parametrize("foreign", ["rec_123", "", "C0123456789", "1763892900.000100", "c01:1.2"])
async def test_a_remote_id_that_is_not_a_slack_message_is_ignored(foreign: str) -> None:
    pacer, _ = fake_pacer()
    with respx.mock(assert_all_called=True) as router:
        post = router.post(POST_URL).mock(return_value=slack_ok())
        [outcome] = await deliver([item(remote_id=foreign)], api_config(), pacer)
    assert post.call_count == 1 and outcome.status == "delivered"


# --- per-channel pacing and Retry-After, on a fake clock --------------------------------------


def _sent_at(vt: VirtualTime, answers: list[httpx.Response] | None = None):  # type: ignore[no-untyped-def]
    log_: list[tuple[str, float]] = []
    queue = list(answers or [])

    def record(request: httpx.Request) -> httpx.Response:
        log_.append((json.loads(request.content)["channel"], vt.now))
        return queue.pop(0) if queue else slack_ok()

    return log_, record


@pytest.mark.anyio
async def test_routes_posting_to_one_channel_share_its_one_per_second_budget() -> None:
    pacer, vt = fake_pacer()
    sent, record = _sent_at(vt)

    with respx.mock() as router:
        router.post(POST_URL).mock(side_effect=record)
        http = respx_sender()
        context = DeliveryContext(http=http, pacer=pacer)
        dest = SlackDestination()
        # Two routes, two destinations, two tasks: same workspace token and channel.
        a, b = api_config(), api_config(username="other route")
        other = api_config(channel="C0000000OTHER")
        await asyncio.gather(
            dest.deliver([item(1), item(2)], a, context),
            dest.deliver([item(3)], b, context),
            dest.deliver([item(4)], other, context),
        )
    same = sorted(t for channel, t in sent if channel == CHANNEL)
    assert same == pytest.approx([1000.0, 1000.0 + SPACING, 1000.0 + 2 * SPACING])
    assert [t for channel, t in sent if channel == "C0000000OTHER"] == [1000.0]  # its own budget


def test_another_workspace_token_has_its_own_budget() -> None:
    assert channel_key(api_config()) != channel_key(api_config(token="xoxb-9999999999-other-workspace"))
    assert channel_key(api_config()) != channel_key(api_config(channel="C0000000OTHER"))
    assert channel_key(api_config()) == channel_key(api_config(username="x"))
    assert XOXB not in channel_key(api_config()) and CHANNEL not in channel_key(api_config())


@pytest.mark.anyio
async def test_a_short_retry_after_queues_the_rest_of_the_batch() -> None:
    pacer, vt = fake_pacer()
    sent, record = _sent_at(vt, [replay(API_FIXTURES / "ratelimited.json")])
    with respx.mock() as router:
        router.post(POST_URL).mock(side_effect=record)
        outcomes = await deliver([item(1), item(2)], api_config(), pacer)
    assert [o.status for o in outcomes] == ["retry", "delivered"]
    assert outcomes[0].retry_after == 1.0
    assert [t for _, t in sent] == pytest.approx([1000.0, 1000.0 + SPACING])  # the pause, then spacing


@pytest.mark.anyio
@pytest.mark.parametrize("seconds", [30, 7200])
async def test_retry_after_is_honoured_exactly_by_every_route_to_the_channel(seconds: int) -> None:
    pacer, vt = fake_pacer()
    sent, record = _sent_at(vt, [slack_error("ratelimited", 429, **{"Retry-After": str(seconds)})])
    with respx.mock() as router:
        router.post(POST_URL).mock(side_effect=record)
        first = await deliver([item(1), item(2)], api_config(), pacer)
        later = await deliver([item(3)], api_config(username="another route"), pacer)
        elsewhere = await deliver([item(4)], api_config(channel="C0000000OTHER"), pacer)
    assert len(sent) == 2  # one 429, then only the other channel
    assert [o.status for o in first + later] == ["retry"] * 3
    assert [o.retry_after for o in first + later] == [float(seconds)] * 3  # never clamped
    assert "paused" in (later[0].reason or "")
    assert elsewhere[0].status == "delivered"
    assert pacer.paused_for(channel_key(api_config())) == float(seconds)
    vt.now += seconds
    with respx.mock() as router:
        router.post(POST_URL).mock(side_effect=record)
        [after] = await deliver([item(5)], api_config(), pacer)
    assert after.status == "delivered"


@pytest.mark.anyio
async def test_retry_after_as_an_http_date() -> None:
    pacer, _ = fake_pacer()
    when = email.utils.formatdate(1_795_000_000 + 90, usegmt=True)  # wall clock of deliver()
    with respx.mock() as router:
        router.post(POST_URL).mock(return_value=slack_error("ratelimited", 429, **{"Retry-After": when}))
        [outcome] = await deliver([item()], api_config(), pacer)
    assert outcome.retry_after == 90.0
    assert pacer.paused_for(channel_key(api_config())) == 90.0


# --- templates ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_route_template_replaces_the_block_kit_message_in_both_ways() -> None:
    answers = [
        Answer(key="q1", label="Terms & conditions", type="yes_no", value="yes <!channel>"),
        Answer(key="q2", label="Company", type="text", value="Engines & Co <https://evil|click>"),
    ]
    template = (
        "*New lead*: {{ name | first_name }} from {{ answers['Company'] }} "
        "(terms: {{ answers['Terms & conditions'] }}) <https://crm.example.com|open CRM>"
    )
    expected_text = (
        "*New lead*: Ada from Engines &amp; Co &lt;https://evil|click&gt; "
        "(terms: yes &lt;!channel&gt;) <https://crm.example.com|open CRM>"
    )
    submission = make_submission(answers)
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        hook = router.post(URL).mock(return_value=httpx.Response(200, text="ok"))
        api = router.post(POST_URL).mock(return_value=slack_ok())
        cfg_hook = config(icon_emoji=":inbox_tray:", template="config template, not used")
        [via_hook] = await deliver([item(submission=submission, template=template)], cfg_hook, pacer)
        [via_api] = await deliver([item(submission=submission, template=template)], api_config(), pacer)
    assert via_hook.status == via_api.status == "delivered"
    assert json.loads(hook.calls.last.request.content) == {
        "text": expected_text,
        "icon_emoji": ":inbox_tray:",
    }
    assert json.loads(api.calls.last.request.content) == {"channel": CHANNEL, "text": expected_text}


@pytest.mark.anyio
async def test_config_template_applies_when_the_route_has_none() -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        api = router.post(POST_URL).mock(return_value=slack_ok())
        await deliver([item()], api_config(template="{{ form_title }}: {{ email | upper }}"), pacer)
    assert json.loads(api.calls.last.request.content) == {
        "channel": CHANNEL,
        "text": "Contact us: ADA@EXAMPLE.COM",
    }


@pytest.mark.anyio
async def test_a_template_that_cannot_render_fails_only_that_item() -> None:
    template = "Campaign {{ hidden['campaign'] }}"
    good = make_submission(hidden={"campaign": "spring"})
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        api = router.post(POST_URL).mock(return_value=slack_ok())
        outcomes = await deliver(
            [item(1, good, template=template), item(2, template=template), item(3, good, template=template)],
            api_config(),
            pacer,
        )
    assert [o.status for o in outcomes] == ["delivered", "failed", "delivered"]
    assert (outcomes[1].reason or "").startswith("template: cannot render")
    assert "campaign" in (outcomes[1].reason or "")
    assert api.call_count == 2
    assert json.loads(api.calls.last.request.content)["text"] == "Campaign spring"


@pytest.mark.anyio
async def test_a_template_that_renders_nothing_is_not_sent() -> None:
    pacer, _ = fake_pacer()
    with respx.mock(assert_all_called=False) as router:
        hook = router.post(URL).mock(return_value=httpx.Response(200, text="ok"))
        [outcome] = await deliver([item(template="{% if false %}x{% endif %}  \n")], config(), pacer)
    assert hook.call_count == 0
    assert outcome.status == "failed"
    assert outcome.reason == "template: rendered to an empty message; Slack refuses a message without text"


@pytest.mark.anyio
async def test_a_huge_template_result_is_clipped() -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        api = router.post(POST_URL).mock(return_value=slack_ok())
        await deliver([item(template="{% for i in range(50000) %}ab{% endfor %}")], api_config(), pacer)
    text = json.loads(api.calls.last.request.content)["text"]
    assert len(text) == 40_000 and text.endswith("…")


def test_check_reports_template_syntax_before_start(tmp_path: Path) -> None:
    dest = get_destination("slack")
    assert dest.check(api_config(template="{{ name }}")) == []
    assert dest.check(api_config()) == []
    [problem] = dest.check(api_config(template="Hi {{ name "))
    assert problem.startswith("template: ") and "line 1" in problem
    path = tmp_path / "connectors.yaml"
    path.write_text(
        "destinations:\n"
        f"  s:\n    type: slack\n    token: {XOXB}\n    channel: C0123456789\n"
        "    template: 'Hi {% if name %}'\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    problems = [str(p) for p in caught.value.problems]
    assert any("destinations.s: template: " in p for p in problems), problems
    assert XOXB not in "\n".join(problems)


# --- Web API config --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"channel": "#sales"},
        {"channel": "sales-team_2"},
        {"channel": "G01234567AB"},
        {"base_url": "https://slack-proxy.example.com/api"},
        {"base_url": "http://127.0.0.1:9000/api"},
        {"username": "Forms", "icon_emoji": ":inbox_tray:", "timeout": 5, "retry": {"horizon": 3600}},
    ],
)
def test_web_api_configs_are_accepted(extra: dict[str, Any]) -> None:
    cfg = api_config(**extra)
    assert cfg.token is not None and cfg.token.get_secret_value() == XOXB
    assert cfg.webhook_url is None
    assert not cfg.base_url.endswith("/")
    assert XOXB not in repr(cfg) and XOXB not in str(cfg.model_dump())


BAD_CONFIGS = {
    "both ways": ({"webhook_url": URL, "token": XOXB, "channel": CHANNEL}, "not both"),
    "webhook and channel": ({"webhook_url": URL, "channel": CHANNEL}, "not both"),
    "token only": ({"token": XOXB}, "missing required key 'channel'"),
    "channel only": ({"channel": CHANNEL}, "missing required key 'token'"),
    "user token": ({"token": "xoxp-" + XOXB[5:], "channel": CHANNEL}, "user token (xoxp-)"),
    "not a token": ({"token": XOXB[5:], "channel": CHANNEL}, "must be a Slack bot token"),
    "header injection": ({"token": XOXB + "\r\nX-Evil: 1", "channel": CHANNEL}, "must be a Slack bot token"),
    "webhook as token": ({"token": URL, "channel": CHANNEL}, "must be a Slack bot token"),
    "channel with spaces": ({"token": XOXB, "channel": "sales team"}, "must be a channel ID"),
    "empty channel": ({"token": XOXB, "channel": ""}, "must be a channel ID"),
    "plain http base": (
        {"token": XOXB, "channel": CHANNEL, "base_url": "http://slack.example.com/api"},
        "must start with https://",
    ),
    "base_url on a webhook": (
        {"webhook_url": URL, "base_url": "https://slack.com/api"},
        "base_url applies only",
    ),
    "unknown key": ({"token": XOXB, "channel": CHANNEL, "map": {"email": "{{ email }}"}}, "Extra inputs"),
}


@pytest.mark.parametrize(("data", "message"), BAD_CONFIGS.values(), ids=BAD_CONFIGS.keys())
def test_bad_web_api_configs_are_rejected_without_echoing_secrets(data: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        SlackConfig.model_validate({"type": "slack", **data})
    text = str(caught.value)
    assert message in text
    for secret in (XOXB, XOXB[5:], TOKEN):
        assert secret not in text


def test_web_api_config_problems_are_reported_by_the_loader(tmp_path: Path) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(
        "destinations:\n"
        f"  a:\n    type: slack\n    token: {XOXB}\n"
        "  b:\n    type: slack\n    token: ${SLACK_TOKEN}\n    channel: 'sales team'\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"SLACK_TOKEN": "xoxp-" + XOXB[5:]})
    problems = [str(p) for p in caught.value.problems]
    assert any("destinations.a: missing required key 'channel'" in p for p in problems), problems
    assert any("destinations.b.token: is a user token (xoxp-)" in p for p in problems), problems
    assert any("destinations.b.channel: must be a channel ID" in p for p in problems), problems
    assert XOXB[5:] not in "\n".join(problems)


@pytest.mark.anyio
async def test_api_logs_carry_facts_and_warnings_but_no_token_or_personal_data() -> None:
    pacer, _ = fake_pacer()
    with captured_logs("hookhub.destinations.slack") as records, respx.mock() as router:
        router.post(POST_URL).mock(
            side_effect=[
                replay(API_FIXTURES / "ok_with_warning.json"),
                replay(API_FIXTURES / "not_in_channel.json"),
                replay(API_FIXTURES / "ratelimited.json"),
            ]
        )
        await deliver([item(1), item(2), item(3)], api_config(), pacer)
    dumped = " ".join(json.dumps(vars(r), default=str) for r in records)
    for secret in (XOXB, XOXB[5:], "Bearer", "ada@example.com", "Ada Lovelace", "Sales", "Contact us"):
        assert secret not in dumped
    facts = [
        (r.slack_method, r.outcome, r.slack_error, r.slack_warnings, r.levelno)
        for r in records
        if hasattr(r, "outcome")
    ]
    assert facts == [
        ("chat.postMessage", "delivered", None, ["superfluous_charset"], logging.WARNING),
        ("chat.postMessage", "failed", "not_in_channel", [], logging.ERROR),  # a dead letter
        ("chat.postMessage", "retry", "ratelimited", [], logging.WARNING),
    ]


class _WebApiLike(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, bytes]]] = []

    def do_POST(self) -> None:  # the name http.server dispatches to
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.append((self.path, self.headers.get("authorization", ""), body))
        answer = json.dumps({"ok": True, "channel": "C0123456789", "ts": "1763892901.000300"}).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json; charset=utf-8")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.anyio
async def test_posts_to_a_real_loopback_web_api() -> None:
    with loopback_server(_WebApiLike) as port:
        pacer, _ = fake_pacer()
        cfg = api_config(base_url=f"http://127.0.0.1:{port}/api")
        [outcome] = await deliver([item()], cfg, pacer)
    assert outcome.status == "delivered" and outcome.remote_id == "C0123456789:1763892901.000300"
    path, authorization, body = _WebApiLike.received[-1]
    assert (path, authorization) == ("/api/chat.postMessage", f"Bearer {XOXB}")
    assert json.loads(body)["channel"] == CHANNEL
