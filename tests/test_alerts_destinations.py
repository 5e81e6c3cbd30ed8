"""Each destination type that carries alerts, sending one to a real loopback server: Slack (incoming
webhook and Web API), webhook (signed), SendGrid and Postmark (their HTTP APIs played by the loopback
destination), SMTP (aiosmtpd); and what a refusal means for a retry."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from connectors._schemes import sign_standard_webhooks
from flows.destinations import get_destination
from hub.alerts import messages
from hub.alerts.model import Alert, AlertNotSent, AlertsUnsupported
from hub.sender import AiohttpSender
from tests.fake_destination import FakeDestination
from tests.test_alerts_support import WHSEC
from tests.test_destination_smtp import smtp_server

pytestmark = pytest.mark.anyio
NOW = 1_800_000_000.0
ALERT = messages.dead_letters("crm", 3, {"receiver answered HTTP 500 <b>": 3}, ["demo"], 3, NOW)


@pytest.fixture
def fake() -> Iterator[FakeDestination]:
    destination = FakeDestination().start()
    yield destination
    destination.stop()


@pytest.fixture
async def sender() -> AsyncIterator[AiohttpSender]:
    async with aiohttp.ClientSession() as session:
        yield AiohttpSender(session)


async def send(type_name: str, settings: dict[str, Any], sender: AiohttpSender, alert: Alert = ALERT) -> None:
    destination = get_destination(type_name)
    config = destination.Config.model_validate({"type": type_name, **settings})
    await destination.send_alert(alert, config, sender)


def body_of(fake: FakeDestination, path: str) -> Any:
    (received,) = fake.received(path)
    return json.loads(received.body)


async def test_slack_incoming_webhook_gets_one_mrkdwn_text(fake: FakeDestination, sender) -> None:
    await send("slack", {"webhook_url": fake.url("/services/T/B/x")}, sender)
    assert body_of(fake, "/services/T/B/x") == {
        "text": ":rotating_light: *3 submissions failed for good to crm*\n"
        "3 submissions to `crm` became dead letters: they are not retried on their own.\n"
        "• 3x receiver answered HTTP 500 &lt;b&gt;\n"
        "*What to do:* see `hookhub deadletters`; fix what the reasons say; once it is fixed, "
        "`hookhub replay --source demo` sends them again"
    }


async def test_slack_web_api_posts_to_the_channel_and_reads_ok_false(fake: FakeDestination, sender) -> None:
    settings = {"token": "xoxb-1234-abcdefgh", "channel": "C0123456789", "base_url": fake.url("/api")}
    fake.script(
        "/api/chat.postMessage",
        (200, {}, '{"ok": true}'),
        (200, {}, '{"ok": false, "error": "not_in_channel"}'),
    )
    await send("slack", settings, sender)
    with pytest.raises(AlertNotSent) as refused:
        await send("slack", settings, sender)
    assert refused.value.reason == "Slack says not_in_channel" and refused.value.retry is False
    first = json.loads(fake.received("/api/chat.postMessage")[0].body)
    assert first["channel"] == "C0123456789" and first["text"].startswith(":rotating_light:")
    assert fake.received("/api/chat.postMessage")[0].headers["authorization"] == "Bearer xoxb-1234-abcdefgh"


async def test_webhook_gets_the_alert_json_signed_like_a_delivery(fake: FakeDestination, sender) -> None:
    await send("webhook", {"url": fake.url("/hook"), "secret": WHSEC}, sender)
    (received,) = fake.received("/hook")
    payload = json.loads(received.body)
    assert payload["type"] == "hookhub.alert" and payload["kind"] == "dead_letters" and payload["count"] == 3
    ts = int(received.headers["webhook-timestamp"])
    assert (
        sign_standard_webhooks(WHSEC, received.webhook_id, ts, received.body)["webhook-signature"]
        == (received.headers["webhook-signature"])
    )
    assert received.webhook_id.startswith("alert_")


async def test_sendgrid_and_postmark_send_subject_and_text_to_the_fixed_recipients(
    fake: FakeDestination, sender
) -> None:
    mail = {"from": "Hub <hub@example.com>", "to": ["ops@example.com", "{{ answers.email }}"]}
    await send("sendgrid", {**mail, "api_key": "SG.test-key", "base_url": fake.url("/sg")}, sender)
    await send("postmark", {**mail, "server_token": "pm-token", "base_url": fake.url("/pm")}, sender)
    grid = body_of(fake, "/sg/v3/mail/send")
    assert grid["personalizations"][0]["to"] == [{"email": "ops@example.com"}]
    assert grid["subject"] == "[hookhub alert] 3 submissions failed for good to crm"
    assert grid["content"][0]["value"].startswith("3 submissions to `crm` became dead letters")
    mark = body_of(fake, "/pm/email")
    assert mark["To"] == "ops@example.com" and mark["Subject"] == grid["subject"]
    assert "What to do: see `hookhub deadletters`" in mark["TextBody"]


async def test_smtp_mails_the_alert(sender) -> None:
    with smtp_server() as (port, mailbox):
        settings = {"host": "127.0.0.1", "port": port, "security": "none"}
        await send("smtp", {**settings, "from": "hub@example.com", "to": ["ops@example.com"]}, sender)
    (message,) = mailbox.messages()
    assert message["Subject"] == "[hookhub alert] 3 submissions failed for good to crm"
    assert message["Auto-Submitted"] == "auto-generated"
    assert "hookhub replay --source demo" in message.get_content()


@pytest.mark.parametrize(("status", "retry"), [(503, True), (429, True), (400, False), (404, False)])
async def test_what_an_answer_means_for_a_retry(
    fake: FakeDestination, sender, status: int, retry: bool
) -> None:
    fake.script("/hook", (status, {}, "no"))
    with pytest.raises(AlertNotSent) as refused:
        await send("webhook", {"url": fake.url("/hook"), "secret": WHSEC}, sender)
    assert refused.value.retry is retry and f"HTTP {status}" in refused.value.reason


async def test_an_unreachable_target_is_retried(sender) -> None:
    with pytest.raises(AlertNotSent) as refused:
        await send("slack", {"webhook_url": "http://127.0.0.1:9/services/T/B/x"}, sender)
    assert refused.value.retry is True and "http://" not in refused.value.reason


async def test_a_file_destination_cannot_carry_alerts(tmp_path, sender) -> None:
    with pytest.raises(AlertsUnsupported):
        await send("file", {"path": str(tmp_path / "x.jsonl")}, sender)
