"""`sendgrid`: e-mail each submission through SendGrid's v3 Mail Send API.

Sources: SendGrid's v3 Mail Send documentation
(https://www.twilio.com/docs/sendgrid/api-reference/mail-send.md), listed in docs/destinations/sendgrid.md;
no idempotency key (docs/destinations/email.md, "Duplicates"); recorded answers in
tests/fixtures/destinations/sendgrid/. One request per submission:
`POST {base_url}/v3/mail/send` with `Authorization: Bearer <api_key>`; content (subject, text and
HTML bodies, recipients, Reply-To) from `_email_render`, shared with `smtp` and `postmark`.

- 202 (empty body) → delivered; the `X-Message-Id` header is the remote_id. Any other 2xx is not
  Mail Send's answer (a proxy, a portal) → failed, not retried: the mail may have gone out.
- 429 → retry after `Retry-After`, else after `X-RateLimit-Reset` (epoch seconds), exactly; the
  whole API key is paused in the process-wide pacer. `X-RateLimit-Remaining: 0` on any answer
  pauses it until the reset too, so a burst queues instead of collecting 429s.
- 408 and 5xx → retry (no idempotency key: after an ambiguous failure the mail may arrive twice);
  every other status (400 validation, 401 key, 403 sender identity, 413 size, 3xx) → failed with
  SendGrid's own error messages.
- `custom_args.hookhub_submission_id` ties SendGrid's event webhooks back to the submission.
"""

from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any

from pydantic import Field, SecretStr

from flows.destinations import _http
from flows.destinations._config import ApiRoot, api_credential
from flows.destinations._email_api import UNTIMED_PAUSE as UNTIMED_PAUSE
from flows.destinations._email_api import unanswered, wait_or_defer
from flows.destinations._email_render import EmailContent, check_email, render_email
from flows.destinations._email_settings import EmailSettings, Mailbox
from flows.destinations._item_guard import content_failed, send_crashed
from flows.destinations.base import DeliveryContext, DeliveryItem, Destination, Outcome
from hub.alerts.email import alert_email
from hub.alerts.model import Alert
from hub.alerts.render import post_alert
from hub.sender import Sender

DEFAULT_BASE_URL = "https://api.sendgrid.com"
USER_AGENT = "hookhub-sendgrid/0.1"
RETRY_STATUSES = frozenset({408, 429})
ADVICE = {
    401: "check api_key (revoked, mistyped, or missing the Mail Send permission)",
    403: "verify the `from` address as a Sender Identity in SendGrid, or check the key's permissions",
    413: "the message is too large for SendGrid; shorten the templates",
}


class SendgridConfig(EmailSettings):
    api_key: Annotated[SecretStr, api_credential("API key")] = Field(
        description="SendGrid API key (SG.…) with the Mail Send permission", examples=["${SENDGRID_API_KEY}"]
    )
    base_url: ApiRoot = Field(
        default=DEFAULT_BASE_URL, description="API root; https://api.eu.sendgrid.com for EU subusers"
    )
    concurrency: int = Field(default=4, ge=1, le=50, description="requests in flight at once per batch")


class SendgridDestination(Destination[SendgridConfig]):
    type = "sendgrid"
    Config = SendgridConfig

    def check(self, config: SendgridConfig) -> list[str]:
        return check_email(config)

    async def deliver(
        self, items: list[DeliveryItem], config: SendgridConfig, context: DeliveryContext
    ) -> list[Outcome]:
        pacing_key = _http.account_key("sendgrid", config.api_key.get_secret_value())
        # Created here, not at import: a semaphore belongs to the event loop of the calling task.
        slots = asyncio.Semaphore(config.concurrency)

        async def one(item: DeliveryItem) -> Outcome:
            async with slots:
                try:
                    outcome = await self._deliver_one(item, config, pacing_key, context)
                except Exception as exc:  # noqa: BLE001 - gather would drop the others' outcomes
                    outcome = send_crashed(item.key, exc)
            return outcome

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def _deliver_one(
        self, item: DeliveryItem, config: SendgridConfig, pacing_key: str, context: DeliveryContext
    ) -> Outcome:
        try:
            content = render_email(config, item, context.record_link(item.submission.id))
            body = json.dumps(mail_body(content), ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - whatever this submission does to the templates
            return content_failed(item.key, exc)
        deferred = await wait_or_defer(context, pacing_key, [item.key], "SendGrid", "API key")
        if deferred is not None:
            return deferred[0]
        headers = {
            "authorization": f"Bearer {config.api_key.get_secret_value()}",
            "content-type": "application/json",
            "user-agent": USER_AGENT,
        }
        try:
            answer = await _http.post(
                context.http,
                f"{config.base_url}/v3/mail/send",
                content=body,
                headers=headers,
                timeout=config.timeout,
            )
        except _http.TransportFailed as exc:
            return unanswered([item.key], "SendGrid", exc)[0]
        now = self._wall_clock()
        outcome = classify(item.key, answer, now)
        pause = budget_pause(answer, now)
        if outcome.status == "retry" and outcome.retry_after is not None:
            pause = max(pause, outcome.retry_after)  # exactly what SendGrid asked, never clamped
        elif answer.status == 429:
            pause = max(pause, UNTIMED_PAUSE)
        if pause:
            context.pacer.pause(pacing_key, pause)
        return outcome

    carries_alerts = True

    async def send_alert(self, alert: Alert, config: SendgridConfig, sender: Sender) -> None:
        """The alert as a plain-text mail (hub/alerts/email.py) through /v3/mail/send."""
        headers = {"authorization": f"Bearer {config.api_key.get_secret_value()}", "user-agent": USER_AGENT}
        body = mail_body(alert_email(config, alert))
        await post_alert(sender, f"{config.base_url}/v3/mail/send", body, headers, config.timeout, "SendGrid")


def _person(mailbox: Mailbox) -> dict[str, str]:
    return {"email": mailbox.address, "name": mailbox.name} if mailbox.name else {"email": mailbox.address}


def mail_body(content: EmailContent) -> dict[str, Any]:
    """The Mail Send request body (SendGrid v3): one personalization, text/plain before text/html."""
    personalization: dict[str, Any] = {"to": [_person(m) for m in content.to]}
    if content.cc:
        personalization["cc"] = [_person(m) for m in content.cc]
    if content.bcc:
        personalization["bcc"] = [_person(m) for m in content.bcc]
    body: dict[str, Any] = {"personalizations": [personalization], "from": _person(content.sender)}
    if content.reply_to:
        body["reply_to"] = _person(content.reply_to)
    body["subject"] = content.subject
    body["content"] = [{"type": "text/plain", "value": content.text}]
    if content.html is not None:
        body["content"].append({"type": "text/html", "value": content.html})
    body["custom_args"] = {"hookhub_submission_id": content.submission_id}
    return body


def classify(key: str, answer: _http.Answer, now: float) -> Outcome:
    """Delivered / retry / failed for one Mail Send answer; never raises on odd bodies."""
    status = answer.status
    if status == 202:
        message_id = (answer.headers.get("x-message-id") or "").strip()[:200] or None
        return Outcome(key=key, status="delivered", status_code=status, remote_id=message_id)
    if 200 <= status < 300:
        # Mail Send answers 202; another 2xx is something else talking (a proxy, a portal).
        reason = (
            f"unexpected answer for SendGrid (HTTP {status}): {errors_text(answer)}; the mail may or "
            "may not have been sent: check base_url"
        )
        return Outcome(key=key, status="failed", status_code=status, reason=reason)
    if status in RETRY_STATUSES or status >= 500:
        retry_after = _http.parse_retry_after(answer.headers.get("retry-after"), now)
        if retry_after is None and status == 429:
            retry_after = _until_reset(answer, now)
        what = "rate limit (429)" if status == 429 else f"HTTP {status}"
        reason = f"SendGrid {what}: {errors_text(answer)}"
        if status >= 500:
            reason += "; retrying, the mail may arrive twice"
        return Outcome(key=key, status="retry", status_code=status, reason=reason, retry_after=retry_after)
    reason = f"SendGrid refused the mail (HTTP {status}): {errors_text(answer)}"
    if status in ADVICE:
        reason += f"; {ADVICE[status]}"
    elif 300 <= status < 400:
        reason += "; SendGrid redirects are not followed: check base_url"
    return Outcome(key=key, status="failed", status_code=status, reason=reason)


def _until_reset(answer: _http.Answer, now: float) -> float | None:
    """Seconds until `X-RateLimit-Reset` (epoch seconds), None when absent or unreadable."""
    try:
        reset = float(answer.headers.get("x-ratelimit-reset", ""))
    except ValueError:
        return None
    # A reset already past says nothing usable (clocks differ): the caller falls back.
    return reset - now if reset > now else None


def budget_pause(answer: _http.Answer, now: float) -> float:
    """How long the key must rest because its budget is spent (`X-RateLimit-Remaining: 0`)."""
    if (answer.headers.get("x-ratelimit-remaining") or "").strip() != "0":
        return 0.0
    return _until_reset(answer, now) or 0.0


def errors_text(answer: _http.Answer) -> str:
    """SendGrid's `errors[]` as `field: message; …`, or the start of whatever came instead."""
    try:
        data = json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        data = None
    errors = data.get("errors") if isinstance(data, dict) else None
    if isinstance(errors, list) and errors:
        parts = []
        for error in errors[:5]:
            if isinstance(error, dict):
                field = error.get("field")
                message = str(error.get("message") or "").strip()
                parts.append(f"{field}: {message}" if field else message)
        return _http.snippet("; ".join(p for p in parts if p), 400) or "no error message"
    return repr(_http.snippet(answer.text)) if answer.body.strip() else "empty body"


destination = SendgridDestination()
