"""Incoming-webhook answers of `slack` (helper of `slack`, not a destination type).

Sources: Slack's incoming-webhook docs (https://docs.slack.dev/tools/python-slack-sdk/webhook,
https://api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks) and rate limits
(https://api.slack.com/docs/rate-limits), listed in docs/destinations/slack.md. A webhook answers
200 `ok` or a status with a short plain-text error string; 429 carries Retry-After in seconds.
Rule: any non-200 is a failure, 429 and 5xx are transient, other 4xx permanent. There is no
idempotency key, so a retry after a 5xx or a timeout may post the message twice.
"""

from __future__ import annotations

import re

from flows.destinations import _http
from flows.destinations.base import Outcome

_REBUILD = "create a new incoming webhook (Slack app > Incoming Webhooks) and update webhook_url"
HOOKHUB_BUG = "Slack rejected the message hookhub built; please report it with the submission id"
ADVICE: dict[str, str] = {
    "invalid_payload": HOOKHUB_BUG,
    "invalid_blocks": HOOKHUB_BUG,
    "invalid_blocks_format": HOOKHUB_BUG,
    "no_text": HOOKHUB_BUG,
    "missing_text_or_fallback_or_attachments": HOOKHUB_BUG,
    "too_many_attachments": HOOKHUB_BUG,
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
