"""`postmark`: e-mail submissions through Postmark's Email API, many per request.

Sources: Postmark's Email API documentation (https://postmarkapp.com/developer/api/overview: error
codes; batch: https://postmarkapp.com/developer/user-guide/send-email-with-api/batch-emails), listed in
docs/destinations/postmark.md; no idempotency key (docs/destinations/email.md, "Duplicates");
recorded answers in tests/fixtures/destinations/postmark/. Auth is the
`X-Postmark-Server-Token` header; content comes from `_email_render` (shared with `smtp` and
`sendgrid`).

- One item: `POST {base_url}/email`. Several: `POST {base_url}/email/batch` (≤ BATCH_SIZE each),
  which answers 200 even when some messages fail: each result (input order) is judged on its own
  `ErrorCode`. A batch refused as a whole with 422 or 413 was not sent at all, so its messages are
  sent again one by one and each gets its own verdict.
- ErrorCode 0 → delivered (MessageID is the remote_id); 100 (maintenance) and 429 → retry; every
  other code → failed (406 inactive recipient, 300 invalid request, 400/401 sender signature, 10
  token, …). HTTP 429/5xx → retry, 401/404/413 → failed. A 429 pauses the server token for every
  task (Retry-After exactly when given).
- No idempotency key: a retry after a timeout or 5xx may send a mail twice; `Metadata` carries the
  submission id into Postmark's webhooks.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from pydantic import Field, SecretStr

from flows.destinations import _http
from flows.destinations._config import ApiRoot, api_credential
from flows.destinations._email_api import UNTIMED_PAUSE as UNTIMED_PAUSE
from flows.destinations._email_api import unanswered, wait_or_defer
from flows.destinations._email_render import EmailContent, check_email, render_email
from flows.destinations._email_settings import EmailSettings
from flows.destinations._item_guard import content_failed, send_crashed
from flows.destinations.base import DeliveryContext, DeliveryItem, Destination, Outcome
from hub.alerts.email import alert_email
from hub.alerts.model import Alert
from hub.alerts.render import post_alert
from hub.sender import Sender

DEFAULT_BASE_URL = "https://api.postmarkapp.com"
USER_AGENT = "hookhub-postmark/0.1"
BATCH_SIZE = 100
"""Postmark takes 500 (batch docs); 100 keeps a batch answer well under the 64 KiB read of `_http`."""
RETRY_CODES = frozenset({100, 429})
ADVICE = {
    10: "Postmark refused the server token: check server_token",
    300: "Postmark says the e-mail is invalid",
    400: "the `from` address is not a Sender Signature in Postmark: add and confirm it",
    401: "the `from` address is not a confirmed Sender Signature in Postmark: confirm it",
    405: "Postmark does not allow this account to send (out of credits?)",
    406: "the recipient is inactive in Postmark (hard bounce, spam complaint or manual suppression): "
    "reactivate it in Postmark, then replay",
    412: "the Postmark account is pending approval",
    413: "the Postmark account may not send",
}


class PostmarkConfig(EmailSettings):
    server_token: Annotated[SecretStr, api_credential("token")] = Field(
        description="Postmark server API token (POSTMARK_API_TEST validates only)",
        examples=["${POSTMARK_SERVER_TOKEN}"],
    )
    base_url: ApiRoot = Field(default=DEFAULT_BASE_URL, description="API root (a proxy or test server)")
    message_stream: str = Field(
        default="outbound", min_length=1, max_length=100, description="transactional message stream id"
    )
    tag: str | None = Field(default=None, min_length=1, max_length=1000, description="Postmark tag")


class PostmarkDestination(Destination[PostmarkConfig]):
    type = "postmark"
    Config = PostmarkConfig

    def check(self, config: PostmarkConfig) -> list[str]:
        return check_email(config)

    async def deliver(
        self, items: list[DeliveryItem], config: PostmarkConfig, context: DeliveryContext
    ) -> list[Outcome]:
        pacing_key = _http.account_key("postmark", config.server_token.get_secret_value())
        outcomes: list[Outcome] = []
        ready: list[tuple[DeliveryItem, dict[str, Any]]] = []
        for item in items:
            try:
                content = render_email(config, item, context.record_link(item.submission.id))
                ready.append((item, message_body(content, config)))
            except Exception as exc:  # noqa: BLE001 - whatever this submission does to the templates
                outcomes.append(content_failed(item.key, exc))
        for start in range(0, len(ready), BATCH_SIZE):
            batch = ready[start : start + BATCH_SIZE]
            try:
                outcomes += await self._send(batch, config, pacing_key, context)
            except Exception as exc:  # noqa: BLE001 - earlier batches went out: keep their outcomes
                outcomes += [send_crashed(item.key, exc) for item, _ in batch]
        return outcomes

    async def _send(
        self,
        batch: list[tuple[DeliveryItem, dict[str, Any]]],
        config: PostmarkConfig,
        pacing_key: str,
        context: DeliveryContext,
    ) -> list[Outcome]:
        keys = [item.key for item, _ in batch]
        deferred = await wait_or_defer(context, pacing_key, keys, "Postmark", "token")
        if deferred is not None:
            return deferred
        single = len(batch) == 1
        payload: Any = batch[0][1] if single else [body for _, body in batch]
        url = f"{config.base_url}/email" if single else f"{config.base_url}/email/batch"
        headers = {
            "accept": "application/json",
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            "x-postmark-server-token": config.server_token.get_secret_value(),
        }
        content = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        try:
            answer = await _http.post(
                context.http, url, content=content, headers=headers, timeout=config.timeout
            )
        except _http.TransportFailed as exc:
            return unanswered(keys, "Postmark", exc)
        if not single and answer.status in (413, 422):
            # The batch as a whole was refused, nothing went out: let each message answer for itself.
            outcomes: list[Outcome] = []
            for entry in batch:
                try:
                    outcomes += await self._send([entry], config, pacing_key, context)
                except Exception as exc:  # noqa: BLE001 - the ones before it went out
                    outcomes.append(send_crashed(entry[0].key, exc))
            return outcomes
        if single or answer.status != 200:
            outcomes = [classify(k, answer, self._wall_clock()) for k in keys]
        else:
            outcomes = classify_batch(keys, answer)
        if rate_limited(answer):
            # Every task sending with this token must hold off, not just this batch.
            retry_after = _http.parse_retry_after(answer.headers.get("retry-after"), self._wall_clock())
            context.pacer.pause(pacing_key, retry_after if retry_after is not None else UNTIMED_PAUSE)
        return outcomes

    carries_alerts = True

    async def send_alert(self, alert: Alert, config: PostmarkConfig, sender: Sender) -> None:
        """The alert as a plain-text mail (hub/alerts/email.py) through /email."""
        headers = {
            "x-postmark-server-token": config.server_token.get_secret_value(),
            "user-agent": USER_AGENT,
        }
        body = message_body(alert_email(config, alert), config)
        await post_alert(sender, f"{config.base_url}/email", body, headers, config.timeout, "Postmark")


def rate_limited(answer: _http.Answer) -> bool:
    """HTTP 429, or ErrorCode 429 for the request or any message of a batch."""
    if answer.status == 429:
        return True
    data = _parse(answer)
    results = data if isinstance(data, list) else [data]
    return any(isinstance(r, dict) and r.get("ErrorCode") == 429 for r in results)


def message_body(content: EmailContent, config: PostmarkConfig) -> dict[str, Any]:
    """One message as /email takes it (Postmark Email API); /email/batch takes a list of these."""
    body: dict[str, Any] = {
        "From": content.sender.formatted(),
        "To": ", ".join(m.formatted() for m in content.to),
    }
    if content.cc:
        body["Cc"] = ", ".join(m.formatted() for m in content.cc)
    if content.bcc:
        body["Bcc"] = ", ".join(m.formatted() for m in content.bcc)
    if content.reply_to:
        body["ReplyTo"] = content.reply_to.formatted()
    body["Subject"] = content.subject
    body["TextBody"] = content.text
    if content.html is not None:
        body["HtmlBody"] = content.html
    body["MessageStream"] = config.message_stream
    if config.tag:
        body["Tag"] = config.tag
    body["Metadata"] = {"hookhub_submission_id": content.submission_id}
    return body


def _parse(answer: _http.Answer) -> Any:
    try:
        return json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        return None


def judge(key: str, result: Any, status: int) -> Outcome:
    """One message's result object (`ErrorCode`, `Message`, `MessageID`) within an answer."""
    if not isinstance(result, dict) or not isinstance(result.get("ErrorCode"), int):
        seen = _http.snippet(json.dumps(result, ensure_ascii=False)) if result is not None else "nothing"
        reason = (
            f"Postmark answered HTTP {status} without a result for this message ({seen}); it may or may "
            "not have been sent"
        )
        return Outcome(key=key, status="failed", status_code=status, reason=reason)
    code = result["ErrorCode"]
    if code == 0 and status != 200:
        message = _http.snippet(str(result.get("Message") or "no message"), 300)
        return Outcome(
            key=key,
            status="failed",
            status_code=status,
            reason=f"Postmark refused the request (HTTP {status}): {message}",
        )
    if code == 0:
        message_id = str(result.get("MessageID") or "").strip()[:200] or None
        return Outcome(key=key, status="delivered", status_code=status, remote_id=message_id)
    message = _http.snippet(str(result.get("Message") or "no message"), 300)
    if code in RETRY_CODES:
        reason = f"Postmark says {message} (ErrorCode {code}); retrying"
        return Outcome(key=key, status="retry", status_code=status, reason=reason)
    advice = ADVICE.get(code, "Postmark refused the e-mail")
    return Outcome(
        key=key, status="failed", status_code=status, reason=f"{advice}: {message} (ErrorCode {code})"
    )


def classify(key: str, answer: _http.Answer, now: float) -> Outcome:
    """Delivered / retry / failed for an /email answer, or a batch answer that is not per item."""
    status = answer.status
    data = _parse(answer)
    if status in (200, 422) or (status == 401 and isinstance(data, dict)):
        return judge(key, data, status)
    if status == 429 or status >= 500:
        retry_after = _http.parse_retry_after(answer.headers.get("retry-after"), now)
        detail = data.get("Message") if isinstance(data, dict) else None
        what = "rate limit (429)" if status == 429 else f"server error (HTTP {status})"
        reason = f"Postmark {what}: {_http.snippet(str(detail or answer.text)) or 'empty body'}"
        if status >= 500:
            reason += "; retrying, the mail may arrive twice"
        return Outcome(key=key, status="retry", status_code=status, reason=reason, retry_after=retry_after)
    advice = {401: "check server_token", 404: "check base_url", 413: "the e-mail exceeds Postmark's 10 MB"}
    seen = _http.snippet(answer.text) if answer.body.strip() else "empty body"
    reason = f"Postmark refused the request (HTTP {status}): {seen!r}"
    if status in advice:
        reason += f"; {advice[status]}"
    return Outcome(key=key, status="failed", status_code=status, reason=reason)


def classify_batch(keys: list[str], answer: _http.Answer) -> list[Outcome]:
    """A 200 /email/batch answer: one result per message, in input order."""
    data = _parse(answer)
    if isinstance(data, dict):  # one verdict for the whole request
        return [judge(key, data, answer.status) for key in keys]
    results = data if isinstance(data, list) else []
    return [
        judge(key, results[index] if index < len(results) else None, answer.status)
        for index, key in enumerate(keys)
    ]


destination = PostmarkDestination()
