"""`slack`: post one Block Kit message per submission to a Slack incoming webhook.

Source: ../shared/reference/destinations.md §1.1 (incoming webhooks) and §1.3 (Block Kit limits);
recorded answers in ../shared/fixtures/destinations/slack_webhook/. A webhook answers 200 `ok`
or a status with a short error string; 429 carries Retry-After in seconds. There is no
idempotency key, so a retry after a 5xx or a timeout may post the message twice.

The webhook URL is the credential: it never reaches a log, a reason or a validation error,
and pacing keys use a hash of it.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Callable

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from flows.destinations import _http
from flows.destinations._slack_blocks import render_message
from flows.destinations.base import DeliveryContext, DeliveryItem, Destination, DestinationSettings, Outcome

log = logging.getLogger("hookhub.destinations.slack")

MIN_INTERVAL = 1.0
"""Slack's posting guidance: about one message per second per webhook (§1.1 Rate limit)."""
MAX_INLINE_PAUSE = 5.0
"""A longer pause hands the item back to the ledger instead of holding the task asleep."""

_REBUILD = "create a new incoming webhook (Slack app > Incoming Webhooks) and update webhook_url"
_HOOKHUB_BUG = "Slack rejected the message hookhub built; please report it with the submission id"
ADVICE: dict[str, str] = {
    "invalid_payload": _HOOKHUB_BUG,
    "invalid_blocks": _HOOKHUB_BUG,
    "invalid_blocks_format": _HOOKHUB_BUG,
    "no_text": _HOOKHUB_BUG,
    "missing_text_or_fallback_or_attachments": _HOOKHUB_BUG,
    "too_many_attachments": _HOOKHUB_BUG,
    "user_not_found": "the message names a user that does not exist in the workspace",
    "action_prohibited": "a workspace admin restricts posting to this channel; "
    "ask them to allow the app, or point the webhook at another channel",
    "posting_to_general_channel_denied": "only admins may post to this channel; "
    "point the webhook at another channel",
    "channel_not_found": f"the webhook's channel was deleted or is out of the app's reach; {_REBUILD}",
    "channel_is_archived": "unarchive the channel or point the webhook at another",
    "invalid_token": f"the webhook's token was revoked or the app uninstalled; {_REBUILD}",
    "no_service": f"the webhook was removed or disabled in Slack; {_REBUILD}",
    "no_service_id": f"the webhook was removed or disabled in Slack; {_REBUILD}",
    "no_active_hooks": "the app's incoming webhooks are turned off; turn them back on in the app settings",
    "no_team": f"the webhook's Slack workspace no longer exists; {_REBUILD}",
    "team_disabled": "the webhook's Slack workspace is disabled; ask a Slack admin or use another workspace",
}
_RETRY_STATUSES = frozenset({408, 429})


class SlackConfig(DestinationSettings):
    """Where and as whom to post.

    `webhook_url` is optional in the model because `token` + `channel` (chat.postMessage)
    will be the other way to name a target; for now the validator requires it.
    """

    # Validation errors must not echo the input: the URL is a credential.
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    webhook_url: SecretStr | None = Field(
        default=None, description="Slack incoming webhook URL (https://hooks.slack.com/services/...)"
    )
    username: str | None = Field(
        default=None, min_length=1, max_length=80, description="display name override"
    )
    icon_emoji: str | None = Field(default=None, description="icon override such as :inbox_tray:")

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: SecretStr | None) -> SecretStr | None:
        # Plain http only to loopback: that is how tests point the destination at a local server.
        if value is None:
            return None
        return SecretStr(_http.check_url(value.get_secret_value(), allow_http=False))

    @field_validator("icon_emoji")
    @classmethod
    def _emoji(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r":[a-z0-9_+'-]+:", value):
            raise ValueError("must be an emoji name between colons, such as :inbox_tray:")
        return value

    @model_validator(mode="after")
    def _has_target(self) -> SlackConfig:
        if self.webhook_url is None:
            raise ValueError("missing required key 'webhook_url' (the Slack incoming webhook URL)")
        return self


class SlackDestination(Destination):
    type = "slack"
    Config = SlackConfig

    def __init__(self, wall_clock: Callable[[], float] = time.time) -> None:
        self._wall_clock = wall_clock  # only to read Retry-After HTTP-dates

    async def deliver(
        self, items: list[DeliveryItem], config: BaseModel, context: DeliveryContext
    ) -> list[Outcome]:
        if not isinstance(config, SlackConfig) or config.webhook_url is None:
            raise TypeError("slack destination needs a validated SlackConfig with webhook_url")
        url = config.webhook_url.get_secret_value()
        pacing_key = _http.account_key("slack-webhook", url)
        # One after the other: the webhook takes one message per second anyway.
        return [await self._deliver_one(item, url, pacing_key, config, context) for item in items]

    async def _deliver_one(
        self, item: DeliveryItem, url: str, pacing_key: str, config: SlackConfig, context: DeliveryContext
    ) -> Outcome:
        paused = context.pacer.paused_for(pacing_key)
        if paused > MAX_INLINE_PAUSE:
            reason = f"not sent: Slack asked to slow down (429); the webhook is paused for {paused:.0f} s"
            return Outcome(key=item.key, status="retry", reason=reason, retry_after=paused)
        await context.pacer.wait_turn(pacing_key, MIN_INTERVAL)
        message = render_message(item.submission, context.record_link(item.submission.id),
                                 config.username, config.icon_emoji)
        body = json.dumps(message, ensure_ascii=False).encode("utf-8")
        headers = {"content-type": "application/json; charset=utf-8"}
        try:
            answer = await _http.post(
                context.http, url, content=body, headers=headers, timeout=config.timeout
            )
        except _http.TransportFailed as exc:
            outcome = transport_outcome(item.key, exc)
            _log(context, item, outcome, slack_error=None)
            return outcome
        outcome = classify(item.key, answer, now=self._wall_clock())
        if answer.status == 429:
            # Every task posting to this webhook must hold off, not just this one.
            wait = outcome.retry_after if outcome.retry_after is not None else MIN_INTERVAL
            context.pacer.pause(pacing_key, wait)
        _log(context, item, outcome, slack_error=error_code(answer.text))
        return outcome


def error_code(body: str) -> str | None:
    """Slack's error string when the body is one (`channel_is_archived`), else None."""
    text = body.strip()
    return text if re.fullmatch(r"[a-z][a-z0-9_]{0,63}", text) else None


def classify(key: str, answer: _http.Answer, now: float) -> Outcome:
    """Delivered / retry / failed for one webhook answer; never raises on odd bodies."""
    status = answer.status
    code = error_code(answer.text)
    if status == 200 and code == "ok":
        return Outcome(key=key, status="delivered", status_code=status)
    if status in _RETRY_STATUSES:
        retry_after = _http.parse_retry_after(answer.headers.get("retry-after"), now)
        reason = f"Slack answered HTTP {status}"
        if status == 429:
            reason = "Slack rate limit (429): too many messages to this webhook"
        return Outcome(key=key, status="retry", status_code=status, reason=reason, retry_after=retry_after)
    if status >= 500:
        what = f"Slack says {code}" if code else f"Slack server error: {_http.snippet(answer.text)}"
        reason = f"{what} (HTTP {status}); retrying, the message may be posted twice"
        return Outcome(key=key, status="retry", status_code=status, reason=reason)
    reason = _failure_reason(status, code, answer.text)
    return Outcome(key=key, status="failed", status_code=status, reason=reason)


def _failure_reason(status: int, code: str | None, body: str) -> str:
    if code and code in ADVICE:
        return f"Slack says {code}: {ADVICE[code]}"
    if code and 400 <= status < 500:
        return f"Slack says {code} (HTTP {status}): the message was refused; check the webhook in Slack"
    seen = _http.snippet(body) if body.strip() else "an empty body"
    if status == 200:
        return f"Slack answered HTTP 200 with {seen!r} instead of 'ok'; the message may or may not be posted"
    return f"unexpected answer from Slack (HTTP {status}): {seen!r}"


def transport_outcome(key: str, exc: _http.TransportFailed) -> Outcome:
    reason = f"Slack: {exc.reason}"
    if exc.sent:
        reason += "; retrying, the message may be posted twice"
    return Outcome(key=key, status="retry", reason=reason)


def _log(context: DeliveryContext, item: DeliveryItem, outcome: Outcome, slack_error: str | None) -> None:
    level = logging.DEBUG if outcome.status == "delivered" else logging.WARNING
    log.log(level, "slack delivery %s", outcome.status, extra={
        "destination": context.destination_id,
        "delivery_key": item.key,
        "outcome": outcome.status,
        "status_code": outcome.status_code,
        "slack_error": slack_error,
        "retry_after": outcome.retry_after,
    })


destination = SlackDestination()
