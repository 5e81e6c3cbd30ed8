"""`slack` destination: recorded answers, exact request body, Block Kit limits, pacing, config.

Fixtures: ../shared/fixtures/destinations/slack_webhook/*.json, replayed with respx; the retry
class of each case is the one in shared/reference/destinations.md §1.1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import ValidationError

from flows.destinations import get_destination
from flows.destinations._http import account_key
from flows.destinations._slack_blocks import render_message
from flows.destinations.base import DeliveryContext, DeliveryItem, Outcome
from flows.destinations.slack import ADVICE, SlackConfig, SlackDestination
from flows.pacing import Pacer
from hub.config.loader import ConfigError, load_config
from hub.submission import Answer, Submission
from tests.harness import DESTINATION_FIXTURES

URL = "https://hooks.slack.com/services/T0000TEST/B0000TEST/SECRETtoken0000000000000"
TOKEN = "SECRETtoken0000000000000"
LINK = "https://hub.example.com/submissions/sub_01JD4X3T0M9R8Q"
SLACK_FIXTURES = DESTINATION_FIXTURES / "slack_webhook"
CASES = sorted(SLACK_FIXTURES.glob("*.json"))
# The conclusion each recorded case demands (reference §1.1: 429/5xx transient, other 4xx permanent).
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


class VirtualTime:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        start = self.now
        await asyncio.sleep(0)
        self.now = max(self.now, start + seconds)


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


def item(n: int = 1, submission: Submission | None = None) -> DeliveryItem:
    return DeliveryItem(key=f"dlv_{n}", submission=submission or make_submission(), route="r")


def config(url: str = URL, **extra: Any) -> SlackConfig:
    return SlackConfig.model_validate({"type": "slack", "webhook_url": url, **extra})


def deliver(items: list[DeliveryItem], cfg: SlackConfig, pacer: Pacer,
            link: str | None = LINK) -> list[Outcome]:
    async def main() -> list[Outcome]:
        async with httpx.AsyncClient() as http:
            context = DeliveryContext(http=http, pacer=pacer, destination_id="team-slack",
                                      record_link=lambda _id: link)
            return await SlackDestination(wall_clock=lambda: 1_795_000_000.0).deliver(items, cfg, context)

    return asyncio.run(main())


def fake_pacer() -> tuple[Pacer, VirtualTime]:
    vt = VirtualTime()
    return Pacer(clock=vt, sleep=vt.sleep), vt


def replay(path: Path) -> httpx.Response:
    recorded = json.loads(path.read_text(encoding="utf-8"))
    body = recorded["body"]
    if body is None:
        return httpx.Response(recorded["status"], headers=recorded["headers"])
    content = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    return httpx.Response(recorded["status"], headers=recorded["headers"], content=content)


# --- recorded answers ---------------------------------------------------------------------------


def test_fixture_folder_is_there() -> None:
    assert CASES, f"no fixtures under {SLACK_FIXTURES}"


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_recorded_answer_is_classified(path: Path) -> None:
    case = path.stem
    status = json.loads(path.read_text())["status"]
    # A case added later without an entry above is judged by the reference's status rule.
    expected = EXPECTED.get(case) or ("retry" if status == 429 or status >= 500 else "failed")
    pacer, _ = fake_pacer()
    with respx.mock(assert_all_called=True) as router:
        route = router.post(URL).mock(return_value=replay(path))
        [outcome] = deliver([item()], config(), pacer)
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


def test_archived_channel_reason_is_actionable() -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        router.post(URL).mock(return_value=replay(SLACK_FIXTURES / "channel_is_archived.json"))
        [outcome] = deliver([item()], config(), pacer)
    assert outcome.reason == (
        "Slack says channel_is_archived: unarchive the channel or point the webhook at another"
    )


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
def test_garbage_answers_are_recorded_not_raised(status: int, content: bytes, expected: str) -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        router.post(URL).mock(return_value=httpx.Response(status, content=content))
        [outcome] = deliver([item()], config(), pacer)
    assert outcome.status == expected
    assert outcome.reason and len(outcome.reason) < 400


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"),
                                   httpx.RemoteProtocolError("eof")])
def test_transport_errors_are_retried(error: Exception) -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        router.post(URL).mock(side_effect=error)
        [outcome] = deliver([item()], config(), pacer)
    assert outcome.status == "retry"
    assert outcome.status_code is None
    assert TOKEN not in (outcome.reason or "")


def test_request_uses_the_configured_timeout() -> None:
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        route = router.post(URL).mock(return_value=httpx.Response(200, text="ok"))
        deliver([item()], config(timeout=7), pacer)
    assert route.calls.last.request.extensions["timeout"] == {"connect": 7, "read": 7, "write": 7, "pool": 7}


# --- exact body and Block Kit limits ------------------------------------------------------------


def test_golden_body_escapes_user_text() -> None:
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
        [outcome] = deliver([item(submission=submission)], cfg, pacer)
    assert outcome.status == "delivered"
    request = route.calls.last.request
    assert request.headers["content-type"] == "application/json; charset=utf-8"
    expected = {
        "text": "New submission: Contact us from Ada &lt;Lovelace&gt; (ada@example.com)",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "Contact us"}},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": "*Name*\nAda &lt;Lovelace&gt;"},
                {"type": "mrkdwn", "text": "*Email*\nada@example.com"},
            ]},
            {"type": "section", "fields": [
                {"type": "mrkdwn", "text": "*Company*\nEngines &amp; Co &lt;Ltd&gt; &lt;!channel&gt;"},
                {"type": "mrkdwn", "text": "*Topics*\nSales, Support"},
                {"type": "mrkdwn", "text": "*Newsletter*\nYes"},
                {"type": "mrkdwn", "text": "*Tickets*\n3"},
                {"type": "mrkdwn", "text": "*Comments*\n(no answer)"},
            ]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": (
                f"Submitted 2026-11-23 10:15 UTC · source contact-form · <{LINK}|View in hookhub>")}]},
        ],
        "username": "hookhub",
        "icon_emoji": ":inbox_tray:",
    }
    assert json.loads(request.content) == expected
    assert request.content == json.dumps(expected, ensure_ascii=False).encode("utf-8")


def test_golden_body_with_60_answers_and_a_5000_char_answer() -> None:
    answers = [
        Answer(key=f"q{i}", label=f"Question {i}", type="text", value=f"Answer {i}") for i in range(1, 61)
    ]
    answers[29] = Answer(key="q30", label="Question 30", type="long_text", value="A" * 5000)
    submission = make_submission(answers, name=None, form_title=None)
    pacer, _ = fake_pacer()
    with respx.mock() as router:
        route = router.post(URL).mock(return_value=httpx.Response(200, text="ok"))
        deliver([item(submission=submission)], config(), pacer, link=None)

    def fields(first: int, last: int) -> dict[str, Any]:
        return {"type": "section", "fields": [
            {"type": "mrkdwn", "text": f"*Question {i}*\nAnswer {i}"} for i in range(first, last + 1)]}

    long_head = "*Question 30*\n"
    expected = {
        "text": "New submission: frm_contact from ada@example.com",
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "frm_contact"}},
            {"type": "section", "fields": [{"type": "mrkdwn", "text": "*Email*\nada@example.com"}]},
            fields(1, 10), fields(11, 20), fields(21, 29),
            {"type": "section", "text": {"type": "mrkdwn",
                                         "text": long_head + "A" * (3000 - len(long_head) - 1) + "…"}},
            fields(31, 40), fields(41, 50), fields(51, 60),
            {"type": "context", "elements": [
                {"type": "mrkdwn", "text": "Submitted 2026-11-23 10:15 UTC · source contact-form"}]},
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
    assert blocks[-2] == {"type": "context", "elements": [{"type": "mrkdwn", "text": (
        f"…and 14 more answers not shown here: <{LINK}|see the full submission>")}]}


PATHOLOGICAL = {
    "600 short answers": dict(answers=[Answer(key=f"k{i}", label=f"L{i}", type="t", value=i)
                                       for i in range(600)]),
    "huge title": dict(form_title="T" * 5000),
    "huge label": dict(answers=[Answer(key="k", label="L" * 5000, type="t", value="v")]),
    "ampersands": dict(answers=[Answer(key="k", label="&" * 3000, type="t", value="&" * 5000)]),
    "field ampersands": dict(answers=[Answer(key="k", label="x", type="t", value="<&>" * 40)]),
    "emoji": dict(answers=[Answer(key="k", label="😀" * 300, type="t", value="😀" * 5000)],
                  form_title="😀" * 200),
    "huge respondent": dict(name="N" * 5000, email="e" * 5000 + "@example.com"),
    "no answers, no title": dict(answers=[], form_title=None, form_id=None, name=None, email=None),
    "empty strings": dict(answers=[Answer(key="", label="", type="t", value="")], form_title="", form_id=""),
    "many lists": dict(answers=[Answer(key="k", label="Pick", type="t", value=["x" * 100] * 100)] * 80),
}


@pytest.mark.parametrize("changes", PATHOLOGICAL.values(), ids=PATHOLOGICAL.keys())
def test_every_message_stays_within_slack_limits(changes: dict[str, Any]) -> None:
    answers = changes.pop("answers", None)
    for link in (LINK, None, "https://hub.example.com/" + "x" * 5000):
        assert_within_slack_limits(render_message(make_submission(answers, **changes), link))


def assert_within_slack_limits(message: dict[str, Any]) -> None:
    """shared/reference/destinations.md §1.3, checked independently of the renderer."""

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


def test_two_deliveries_to_one_webhook_are_a_second_apart() -> None:
    pacer, vt = fake_pacer()
    sent_at: list[float] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent_at.append(vt.now)
        return httpx.Response(200, text="ok")

    async def main() -> None:
        async with httpx.AsyncClient() as http:
            context = DeliveryContext(http=http, pacer=pacer)
            dest = SlackDestination()
            # Two independent deliveries (two tasks) to the same webhook, at the same moment.
            await asyncio.gather(dest.deliver([item(1)], config(), context),
                                 dest.deliver([item(2)], config(), context))

    with respx.mock() as router:
        router.post(URL).mock(side_effect=record)
        asyncio.run(main())
    assert len(sent_at) == 2
    assert sent_at[1] - sent_at[0] >= 1.0


def test_a_batch_is_paced_one_per_second() -> None:
    pacer, vt = fake_pacer()
    sent_at: list[float] = []

    def record(request: httpx.Request) -> httpx.Response:
        sent_at.append(vt.now)
        return httpx.Response(200, text="ok")

    with respx.mock() as router:
        router.post(URL).mock(side_effect=record)
        outcomes = deliver([item(i) for i in range(3)], config(), pacer)
    assert [o.status for o in outcomes] == ["delivered"] * 3
    assert sent_at == [1000.0, 1001.0, 1002.0]


def test_rate_limit_pauses_the_webhook_for_every_later_delivery() -> None:
    pacer, _ = fake_pacer()
    limited = SLACK_FIXTURES / "rate_limited.json"
    with respx.mock() as router:
        route = router.post(URL).mock(side_effect=[replay(limited)])
        first = deliver([item(1), item(2)], config(), pacer)
        later = deliver([item(3)], config(), pacer)
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
    missing = "missing required key 'webhook_url' (the Slack incoming webhook URL)"
    assert f"{path}:3:5: destinations.a: {missing}" in problems
    assert any("destinations.b.webhook_url: must start with https://" in p for p in problems)
    assert any("destinations.b.icon_emoji: must be an emoji name" in p for p in problems)
    assert TOKEN not in "\n".join(problems)
    assert TOKEN not in repr(config())


@contextmanager
def captured_logs() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []
    handler = logging.Handler(level=logging.DEBUG)
    handler.emit = records.append  # type: ignore[method-assign]
    loggers = [logging.getLogger("hookhub.destinations.slack"), logging.getLogger("hookhub.pacing")]
    saved = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(handler)
        lg.setLevel(logging.DEBUG)
    try:
        yield records
    finally:
        for lg, level in zip(loggers, saved):
            lg.removeHandler(handler)
            lg.setLevel(level)


def test_logs_carry_facts_but_no_url_or_personal_data() -> None:
    pacer, _ = fake_pacer()
    with captured_logs() as records, respx.mock() as router:
        router.post(URL).mock(
            side_effect=[httpx.Response(200, text="ok"), replay(SLACK_FIXTURES / "rate_limited.json")]
        )
        deliver([item(1), item(2)], config(), pacer)
    assert records
    dumped = " ".join(json.dumps(vars(r), default=str) for r in records)
    for secret in (TOKEN, "hooks.slack.com", "ada@example.com", "Ada Lovelace", "Sales"):
        assert secret not in dumped
    outcomes = [(r.outcome, r.status_code) for r in records if hasattr(r, "outcome")]
    assert outcomes == [("delivered", 200), ("retry", 429)]


class _SlackLike(BaseHTTPRequestHandler):
    received: list[tuple[str, bytes]] = []

    def do_POST(self) -> None:  # noqa: N802 (http.server API)
        body = self.rfile.read(int(self.headers.get("content-length", "0")))
        self.received.append((self.path, body))
        self.send_response(200)
        self.send_header("content-type", "text/plain; charset=utf-8")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


def test_posts_to_a_real_loopback_server() -> None:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlackLike)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        pacer, _ = fake_pacer()
        url = f"http://127.0.0.1:{server.server_address[1]}/services/T/B/{TOKEN}"
        [outcome] = deliver([item()], config(url), pacer)
    finally:
        server.shutdown()
        server.server_close()
    assert outcome.status == "delivered"
    path, body = _SlackLike.received[-1]
    assert path == f"/services/T/B/{TOKEN}"
    header = {"type": "header", "text": {"type": "plain_text", "text": "Contact us"}}
    assert json.loads(body)["blocks"][0] == header
