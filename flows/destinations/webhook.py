"""`webhook`: POST each Submission as JSON to any URL, signed the Standard Webhooks way.

Source: the Standard Webhooks spec
(https://github.com/standard-webhooks/standard-webhooks/blob/main/spec/standard-webhooks.md) and the
recorded answers in tests/fixtures/destinations/webhook/. The body is exactly
`Submission.model_dump(mode="json")`, the public field names. `webhook-id` is the delivery key,
the same on every attempt for one (submission, destination), so receivers dedupe on it;
`webhook-timestamp` is the time of this attempt.

Answers: 2xx delivered; 410 stop sending (disable); 429, 408, 409, 425 and 5xx retry, after
Retry-After when given; redirects are not followed (the URL must be updated); any other 4xx
is a permanent failure carrying the status and the start of the body.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import json
import re
import time
from collections.abc import Callable

from pydantic import Field, SecretStr, field_validator

from connectors._schemes import sign_standard_webhooks
from flows.destinations import _http
from flows.destinations._item_guard import send_crashed
from flows.destinations.base import DeliveryContext, DeliveryItem, Destination, DestinationSettings, Outcome
from hub.alerts.model import Alert
from hub.alerts.render import post_alert, webhook_payload
from hub.sender import Sender, json_content

USER_AGENT = "hookhub-webhook/0.1"
MIN_SECRET_BYTES = 24
"""The Standard Webhooks spec asks for at least 192 bits of random key."""
RETRY_STATUSES = frozenset({408, 409, 425, 429})
_RESERVED_HEADER = re.compile(r"^(webhook-.*|content-type|content-length)$", re.IGNORECASE)
_TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


class WebhookConfig(DestinationSettings):
    url: str = Field(
        description="receiver URL, https:// (or http://)", examples=["https://crm.example.com/hooks/forms"]
    )
    secret: SecretStr = Field(
        description="Standard Webhooks secret: whsec_ followed by base64 of ≥24 random bytes",
        examples=["${CRM_WEBHOOK_SECRET}"],
    )
    headers: dict[str, SecretStr] = Field(
        default_factory=dict,
        description="extra request headers, e.g. Authorization; not webhook-* or content-type",
        examples=[{"Authorization": "Bearer ${CRM_API_TOKEN}"}],
    )
    concurrency: int = Field(default=10, ge=1, le=100, description="requests in flight at once per batch")

    @field_validator("url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        return _http.check_url(value, allow_http=True)

    @field_validator("secret")
    @classmethod
    def _whsec(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip()
        if not text.startswith("whsec_"):
            raise ValueError("must start with whsec_ (a Standard Webhooks secret)")
        try:
            key = base64.b64decode(text.removeprefix("whsec_"), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("the part after whsec_ is not valid base64") from None
        if len(key) < MIN_SECRET_BYTES:
            raise ValueError(
                f"too short: decodes to {len(key)} bytes, at least {MIN_SECRET_BYTES} are needed"
            )
        return SecretStr(text)

    @field_validator("headers")
    @classmethod
    def _own_headers(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        # Values are SecretStr because they usually carry credentials (Authorization, API keys).
        for name, header_value in value.items():
            if not _TOKEN.match(name):
                raise ValueError(f"{name!r} is not a valid header name")
            if _RESERVED_HEADER.match(name):
                raise ValueError(
                    f"{name!r} is set by hookhub (signature and JSON body) and cannot be overridden"
                )
            if any(char in header_value.get_secret_value() for char in "\r\n\0"):
                raise ValueError(f"the value of {name!r} must be one line")
        return {name.lower(): header_value for name, header_value in value.items()}


class WebhookDestination(Destination[WebhookConfig]):
    type = "webhook"
    Config = WebhookConfig
    any_process = True  # no send budget; a 429's Retry-After pauses each process that sees it
    reads_submission = False  # sends the stored Submission JSON as it is

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock  # unix time: webhook-timestamp and Retry-After dates

    async def deliver(
        self, items: list[DeliveryItem], config: WebhookConfig, context: DeliveryContext
    ) -> list[Outcome]:
        pacing_key = _http.account_key("webhook", config.url)
        # Created here, not at import: a semaphore belongs to the event loop of the calling task.
        slots = asyncio.Semaphore(config.concurrency)

        async def one(item: DeliveryItem) -> Outcome:
            async with slots:
                try:
                    return await self._deliver_one(item, config, pacing_key, context)
                except Exception as exc:  # noqa: BLE001 - gather would drop the others' outcomes
                    return send_crashed(item.key, exc)

        return list(await asyncio.gather(*(one(item) for item in items)))

    async def _deliver_one(
        self, item: DeliveryItem, config: WebhookConfig, pacing_key: str, context: DeliveryContext
    ) -> Outcome:
        paused = context.pacer.paused_for(pacing_key)
        if paused > 0:
            # Another attempt was told to wait; sending now would only earn another 429. Not an
            # attempt: the ledger holds it until the pause ends, without counting it.
            reason = f"not sent: the receiver asked to wait (Retry-After), {paused:.0f} s left"
            return Outcome(key=item.key, status="retry", reason=reason, retry_after=paused, deferred=True)
        body = item.submission_json()
        headers = {
            "content-type": "application/json",
            "user-agent": USER_AGENT,
            **{name: value.get_secret_value() for name, value in config.headers.items()},
            **sign_standard_webhooks(config.secret.get_secret_value(), item.key, int(self._clock()), body),
        }
        try:
            answer = await _http.post(
                context.http, config.url, content=body, headers=headers, timeout=config.timeout
            )
        except _http.TransportFailed as exc:
            outcome = Outcome(key=item.key, status="retry", reason=f"receiver: {exc.reason}")
        else:
            outcome = classify(item.key, answer, now=self._clock())
            if outcome.status == "retry" and outcome.retry_after:
                context.pacer.pause(pacing_key, outcome.retry_after)
        return outcome

    carries_alerts = True

    async def send_alert(self, alert: Alert, config: WebhookConfig, sender: Sender) -> None:
        """The alert's JSON (`type: hookhub.alert`), signed like deliveries; its `webhook-id` is a
        hash of the alert, the same on every try, so the receiver can drop repeats."""
        body = json_content(webhook_payload(alert))
        alert_id = "alert_" + hashlib.sha256(body).hexdigest()[:32]
        headers = {
            "user-agent": USER_AGENT,
            **{name: value.get_secret_value() for name, value in config.headers.items()},
            **sign_standard_webhooks(config.secret.get_secret_value(), alert_id, int(self._clock()), body),
        }
        await post_alert(sender, config.url, webhook_payload(alert), headers, config.timeout, "the receiver")


def classify(key: str, answer: _http.Answer, now: float) -> Outcome:
    """Delivered / retry / failed for one receiver answer; never raises on odd bodies."""
    status = answer.status
    if 200 <= status < 300:
        return Outcome(key=key, status="delivered", status_code=status, remote_id=remote_id(answer))
    if status == 410:
        reason = "the receiver answered 410 Gone: it asked hookhub to stop sending"
        return Outcome(key=key, status="failed", status_code=status, reason=reason, disable=True)
    if status in RETRY_STATUSES or 500 <= status < 600:
        retry_after = _http.parse_retry_after(answer.headers.get("retry-after"), now)
        reason = f"the receiver answered HTTP {status}: {_body(answer)}"
        return Outcome(key=key, status="retry", status_code=status, reason=reason, retry_after=retry_after)
    if 300 <= status < 400:
        location = _http.snippet(answer.headers.get("location", "(no Location header)"))
        reason = (
            f"the receiver redirects (HTTP {status}) to {location}; redirects are not followed: update url"
        )
        return Outcome(key=key, status="failed", status_code=status, reason=reason)
    reason = f"the receiver refused the request (HTTP {status}): {_body(answer)}"
    return Outcome(key=key, status="failed", status_code=status, reason=reason)


def _body(answer: _http.Answer) -> str:
    return repr(_http.snippet(answer.text)) if answer.body.strip() else "empty body"


def remote_id(answer: _http.Answer) -> str | None:
    """The receiver's id for what it created, when it answers a JSON object with `id`."""
    try:
        data = json.loads(answer.body)
    except (ValueError, UnicodeDecodeError):
        return None
    value = data.get("id") if isinstance(data, dict) else None
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text[:200] or None


destination = WebhookDestination()
