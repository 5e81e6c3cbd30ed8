"""`slack`: post one message per submission, through an incoming webhook or the Web API.

Sources: Slack's docs on incoming webhooks, `chat.postMessage`
(https://docs.slack.dev/reference/methods/chat.postMessage) and Block Kit limits, listed in
docs/destinations/slack.md; recorded answers in tests/fixtures/destinations/slack_webhook/
and slack_chat_postmessage/. Two ways to name the target, exactly one per destination:

- `webhook_url`: the URL is the credential; answers are classified in `incoming_webhook.py`.
- `token` (bot token, `xoxb-`, scope chat:write) + `channel`: POST {base_url}/chat.postMessage;
  answers (HTTP 200 with `ok: false` for errors) are classified in `web_api.py`. The answer's
  channel and `ts` become the Outcome's remote_id, and a delivery that already has one (a replay
  of a posted message) edits that message with chat.update instead of posting a second copy.

The body is the Block Kit rendering of `blocks.py`, or plain text from a Jinja template
(the route's, else the config's). Pacing: one message per second per webhook, or per
(token, channel) — Slack's per-channel limit — shared by every route and task through the
process-wide pacer; a 429 pauses that key for exactly its Retry-After. Secrets (the webhook
URL, the token) never reach a log, a reason or a validation error; pacing keys hash them.
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from flows.destinations import _http
from flows.destinations._config import ApiRoot
from flows.destinations._item_guard import content_failed, send_crashed
from flows.destinations._pause import inline_turns, turn_or_later
from flows.destinations.base import DeliveryContext, DeliveryItem, Destination, DestinationSettings, Outcome
from flows.destinations.slack import incoming_webhook, web_api
from flows.destinations.slack.blocks import render_message, render_template_message
from flows.mapping import check_template
from hub.alerts.model import Alert, AlertNotSent
from hub.alerts.render import post_alert, slack_text
from hub.sender import Sender

DEFAULT_BASE_URL = "https://slack.com/api"
MIN_INTERVAL = 1.0
"""Slack's posting limit: about one message per second per webhook / per channel (rate limits)."""
SPACING = MIN_INTERVAL + 0.05
"""Between two posts to one channel: turns are 1 s apart when taken, but a post reaches Slack a
little after its turn, by a delay that varies (posts from two workers arrived 0.978 s apart on
this loaded machine: tests/test_cluster.py); the margin keeps them 1 s apart where Slack counts."""
ADVICE = incoming_webhook.ADVICE  # webhook error strings; Web API codes are in web_api.ADVICE
_CHANNEL_ID = re.compile(r"[A-Z][A-Z0-9]{8,}")
_CHANNEL_NAME = re.compile(r"#?[^\sA-Z#,<>@|]{1,80}")


class SlackConfig(DestinationSettings):
    """Where and as whom to post: `webhook_url`, or `token` + `channel`."""

    webhook_url: SecretStr | None = Field(
        default=None, description="Slack incoming webhook URL (https://hooks.slack.com/services/...)"
    )
    token: SecretStr | None = Field(
        default=None, description="bot token (xoxb-…) with chat:write, with channel"
    )
    channel: str | None = Field(default=None, description="channel ID (C0123456789) or #name, with token")
    base_url: ApiRoot = Field(default=DEFAULT_BASE_URL, description="Web API root (a proxy or test server)")
    username: str | None = Field(
        default=None, min_length=1, max_length=80, description="display name override"
    )
    icon_emoji: str | None = Field(default=None, description="icon override such as :inbox_tray:")
    template: str | None = Field(
        default=None, description="Jinja template of the message text, instead of the Block Kit message"
    )

    @field_validator("webhook_url")
    @classmethod
    def _https(cls, value: SecretStr | None) -> SecretStr | None:
        # Plain http only to loopback: that is how tests point the destination at a local server.
        if value is None:
            return None
        return SecretStr(_http.check_url(value.get_secret_value(), allow_http=False))

    @field_validator("token")
    @classmethod
    def _bot_token(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value().strip()
        if text.startswith("xoxp-"):
            raise ValueError("is a user token (xoxp-); use the app's Bot User OAuth Token (xoxb-)")
        if not re.fullmatch(r"xoxb-[A-Za-z0-9-]{8,}", text):
            raise ValueError(
                "must be a Slack bot token: xoxb- followed by letters, digits and dashes "
                "(Slack app > OAuth & Permissions > Bot User OAuth Token)"
            )
        return SecretStr(text)

    @field_validator("channel")
    @classmethod
    def _channel(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = value.strip()
        if "{" in value:
            # A channel chosen by a template would let a respondent's answer pick where to post.
            raise ValueError(
                "is not a template: name one channel (ID such as C0123456789, or #name); to "
                "post elsewhere by answer, add a destination per channel and route with `when`"
            )
        if not (_CHANNEL_ID.fullmatch(value) or _CHANNEL_NAME.fullmatch(value)):
            raise ValueError(
                "must be a channel ID such as C0123456789 (preferred: it survives renames) "
                "or a channel name such as #sales (lower case, no spaces)"
            )
        return value

    @field_validator("icon_emoji")
    @classmethod
    def _emoji(cls, value: str | None) -> str | None:
        if value is not None and not re.fullmatch(r":[a-z0-9_+'-]+:", value):
            raise ValueError("must be an emoji name between colons, such as :inbox_tray:")
        return value

    @model_validator(mode="after")
    def _one_target(self) -> SlackConfig:
        api = self.token is not None or self.channel is not None
        if self.webhook_url is not None and api:
            raise ValueError(
                "give either webhook_url (incoming webhook) or token + channel (Web API), not both"
            )
        if self.webhook_url is None and not api:
            raise ValueError(
                "missing the Slack target: set webhook_url (an incoming webhook URL), "
                "or token (a bot token, xoxb-…) + channel (where to post)"
            )
        if self.webhook_url is None and self.token is None:
            raise ValueError(
                "missing required key 'token' (a bot token, xoxb-…, with the chat:write "
                "scope): channel needs it"
            )
        if self.webhook_url is None and self.channel is None:
            raise ValueError(
                "missing required key 'channel' (the channel ID such as C0123456789, "
                "or #name): token needs it"
            )
        if self.webhook_url is not None and "base_url" in self.model_fields_set:
            raise ValueError("base_url applies only to token + channel; a webhook posts to webhook_url as is")
        return self


class SlackDestination(Destination[SlackConfig]):
    type = "slack"
    Config = SlackConfig

    def check(self, config: SlackConfig) -> list[str]:
        problem = check_template(config.template) if config.template else None
        return [f"template: {problem}"] if problem else []

    async def deliver(
        self, items: list[DeliveryItem], config: SlackConfig, context: DeliveryContext
    ) -> list[Outcome]:
        # One after the other: Slack takes one message per second per channel anyway.
        outcomes: list[Outcome] = []
        with inline_turns(SPACING):
            for item in items:
                try:
                    outcome = await self._deliver_one(item, config, context)
                except Exception as exc:  # noqa: BLE001 - one item's crash must not re-send the others
                    outcome = send_crashed(item.key, exc)
                    _note(context, item, method=None)
                outcomes.append(outcome)
        return outcomes

    async def _deliver_one(
        self, item: DeliveryItem, config: SlackConfig, context: DeliveryContext
    ) -> Outcome:
        template = item.template if item.template is not None else config.template
        try:
            if template is not None:
                message = render_template_message(
                    template, item.submission, config.username, config.icon_emoji
                )
            else:
                link = context.record_link(item.submission.id)
                message = render_message(item.submission, link, config.username, config.icon_emoji)
        except Exception as exc:  # noqa: BLE001 - whatever this submission does to the template
            # The template cannot render this submission: only this item fails, nothing is sent.
            outcome = content_failed(item.key, exc, "template" if template is not None else "message")
            _note(context, item, method=None)
            return outcome
        if config.webhook_url is not None:
            return await self._via_webhook(
                item, message, config.webhook_url.get_secret_value(), config, context
            )
        return await self._via_api(item, message, config, context)

    async def _via_webhook(
        self,
        item: DeliveryItem,
        message: dict[str, Any],
        url: str,
        config: SlackConfig,
        context: DeliveryContext,
    ) -> Outcome:
        key = _http.account_key("slack-webhook", url)
        outcome, code = await _held(item, key, context), None
        if outcome is None:
            try:
                answer = await _http.post(
                    context.http, url, content=_json(message), headers=_JSON, timeout=config.timeout
                )
            except _http.TransportFailed as exc:
                outcome = transport_outcome(item.key, exc, posting=True)
            else:
                outcome = incoming_webhook.classify(item.key, answer, now=self._wall_clock())
                code = incoming_webhook.error_code(answer.text)
                if answer.status == 429:
                    # Every task posting to this webhook must hold off, not just this one.
                    context.pacer.pause(key, outcome.retry_after or MIN_INTERVAL)
        _note(context, item, method="webhook", slack_error=code)
        return outcome

    async def _via_api(
        self, item: DeliveryItem, message: dict[str, Any], config: SlackConfig, context: DeliveryContext
    ) -> Outcome:
        key = channel_key(config)
        earlier = web_api.parse_remote_id(item.remote_id)
        if earlier is not None:
            # Already posted once: edit that message, so a replay never shows it twice.
            edit = {k: v for k, v in message.items() if k not in ("username", "icon_emoji")}
            body = {"channel": earlier[0], "ts": earlier[1], **edit}
            result = await self._call("chat.update", body, key, item, config, context)
            if result.error not in web_api.REPOST_ERRORS:
                return result.outcome
        body = {"channel": config.channel, **message}
        outcome = (await self._call("chat.postMessage", body, key, item, config, context)).outcome
        # After an update that was sent (and refused), a held repost is part of a real attempt.
        return outcome.model_copy(update={"deferred": False}) if earlier is not None else outcome

    async def _call(
        self,
        method: str,
        body: dict[str, Any],
        key: str,
        item: DeliveryItem,
        config: SlackConfig,
        context: DeliveryContext,
    ) -> web_api.ApiResult:
        posting = method == "chat.postMessage"
        held = await _held(item, key, context)
        if held is not None:
            result = web_api.ApiResult(held)
        else:
            headers = {**_JSON, "authorization": f"Bearer {_token(config)}"}
            try:
                answer = await _http.post(
                    context.http,
                    f"{config.base_url}/{method}",
                    content=_json(body),
                    headers=headers,
                    timeout=config.timeout,
                )
            except _http.TransportFailed as exc:
                result = web_api.ApiResult(transport_outcome(item.key, exc, posting=posting))
            else:
                result = web_api.classify(item.key, answer, now=self._wall_clock(), posting=posting)
                if answer.status == 429 or result.error in web_api.RATE_LIMITED:
                    # The channel's budget is shared: every route and task posting there waits.
                    context.pacer.pause(key, result.outcome.retry_after or MIN_INTERVAL)
        _note(context, item, method=method, slack_error=result.error, warnings=result.warnings)
        return result

    carries_alerts = True

    async def send_alert(self, alert: Alert, config: SlackConfig, sender: Sender) -> None:
        """The alert as one mrkdwn text (hub/alerts/render.py), through the webhook or the Web API."""
        message: dict[str, Any] = {"text": slack_text(alert)}
        if config.webhook_url is not None:
            await post_alert(
                sender, config.webhook_url.get_secret_value(), message, _JSON, config.timeout, "Slack"
            )
            return
        headers = {**_JSON, "authorization": f"Bearer {_token(config)}"}
        answer = await post_alert(
            sender,
            f"{config.base_url}/chat.postMessage",
            {**message, "channel": config.channel},
            headers,
            config.timeout,
            "Slack",
        )
        try:
            error = None if answer.json().get("ok") else str(answer.json().get("error"))
        except (ValueError, AttributeError):
            error = "an answer that is not Slack's JSON"
        if error is not None:
            raise AlertNotSent(f"Slack says {error}", retry=error in web_api.RATE_LIMITED)


# Our own User-Agent, as every other destination sends: Slack support asks for it, and the
# HTTP library's default would change with each of its releases.
USER_AGENT = "hookhub-slack/0.1"
_JSON = {"content-type": "application/json; charset=utf-8", "user-agent": USER_AGENT}


def _json(message: dict[str, Any]) -> bytes:
    return json.dumps(message, ensure_ascii=False).encode("utf-8")


def _token(config: SlackConfig) -> str:
    if config.token is None:  # SlackConfig._one_target rules this out for validated configs
        raise TypeError("the Slack Web API needs a token")
    return config.token.get_secret_value()


def channel_key(config: SlackConfig) -> str:
    """The pacing key of one channel of one workspace token; reveals neither."""
    return _http.account_key("slack-channel", f"{_token(config)}\n{config.channel}")


async def _held(item: DeliveryItem, key: str, context: DeliveryContext) -> Outcome | None:
    """A retry outcome when `key` is paused for long, else None once it is this item's turn."""
    hold = await turn_or_later(context, key, SPACING)
    if hold is None:
        return None
    reason = hold.reason("Slack asked to slow down (429)")
    return Outcome(key=item.key, status="retry", reason=reason, retry_after=hold.seconds, deferred=True)


def transport_outcome(key: str, exc: _http.TransportFailed, posting: bool = True) -> Outcome:
    reason = f"Slack: {exc.reason}"
    if exc.sent and posting:
        reason += "; retrying, the message may be posted twice"
    return Outcome(key=key, status="retry", reason=reason)


def _note(
    context: DeliveryContext,
    item: DeliveryItem,
    method: str | None,
    slack_error: str | None = None,
    warnings: tuple[str, ...] = (),
) -> None:
    """Slack's facts for the log line of this item's outcome (flows/delivery.py): a delivered
    message that Slack warned about is logged as a warning."""
    context.note(
        item.key,
        slack_method=method,
        slack_error=slack_error,
        slack_warnings=list(warnings),
        warn=bool(warnings),
    )


destination = SlackDestination()
