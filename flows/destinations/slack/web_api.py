"""Web API answers of `slack` (chat.postMessage, chat.update; helper of `slack`, not a type).

Source: Slack's `chat.postMessage` reference
(https://docs.slack.dev/reference/methods/chat.postMessage; docs/destinations/slack.md lists the
error-code sources): Slack answers HTTP 200
with `{"ok": true, "channel", "ts", ...}` or `{"ok": false, "error": "<code>"}`, so the HTTP
status alone says nothing. Retryable: HTTP 429 (after Retry-After), HTTP 5xx, `internal_error`;
`fatal_error` is ambiguous (part of the operation may have happened). Permanent: the auth,
channel and message errors listed there. A request Slack had to interpret comes back ok with
`warning` / `response_metadata.warnings`. There is no idempotency key: `(channel, ts)` of a
posted message is what lets a replay edit it (chat.update) instead of posting it twice.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from flows.destinations import _http
from flows.destinations.base import Outcome
from flows.destinations.slack.incoming_webhook import HOOKHUB_BUG

_CODE = re.compile(r"[a-z][a-z0-9_]{0,63}")
_SCOPES = re.compile(r"[a-z][a-z0-9_.:,]{0,200}")
_REINSTALL = "reinstall the Slack app to the workspace and update token with its Bot User OAuth Token"
_CHANNEL_HINT = "check channel (prefer the channel ID, e.g. C0123456789)"

ADVICE: dict[str, str] = {
    "channel_not_found": "the channel does not exist or the bot cannot see it (a private channel "
    f"needs the app invited: /invite @your-app); {_CHANNEL_HINT}",
    "not_in_channel": "the bot is not a member of the channel: invite the app (/invite @your-app), "
    "or give it the chat:write.public scope to post in public channels without joining",
    "is_archived": "the channel is archived: unarchive it or set channel to another one",
    "invalid_auth": f"Slack does not accept the token; {_REINSTALL}",
    "not_authed": f"Slack received no token; {_REINSTALL}",
    "token_revoked": f"the token was revoked (the app was uninstalled?); {_REINSTALL}",
    "account_inactive": f"the token belongs to a deleted user or disabled app; {_REINSTALL}",
    "missing_scope": "the token lacks the chat:write scope: add it under OAuth & Permissions, "
    "reinstall the app and update token",
    "restricted_action": "a workspace admin restricts posting to this channel; "
    "ask them to allow the app, or set channel to another one",
    "msg_too_long": "the message text is too long for Slack: shorten the route's template "
    "(hookhub clips its own Block Kit messages; report it if no template is set)",
    "invalid_blocks": HOOKHUB_BUG,
    "invalid_blocks_format": HOOKHUB_BUG,
    "no_text": HOOKHUB_BUG,
    "too_many_attachments": HOOKHUB_BUG,
    "invalid_arguments": HOOKHUB_BUG,
    "cant_update_message": "Slack refuses to edit the earlier message (it was not posted by this "
    "app's token); clear it from the ledger or post under the original app",
    "edit_window_closed": "the earlier message can no longer be edited in this workspace",
}
RATE_LIMITED = frozenset({"ratelimited", "rate_limited"})
RETRY_ERRORS = RATE_LIMITED | {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
AMBIGUOUS = frozenset({"fatal_error", "request_timeout"})
"""Slack may have done part of the work: a retry of a post may show the message twice."""
REPOST_ERRORS = frozenset({"message_not_found"})
"""chat.update target is gone (deleted in Slack): posting anew cannot duplicate it."""


@dataclass(frozen=True)
class ApiResult:
    outcome: Outcome
    error: str | None = None
    warnings: tuple[str, ...] = ()


def remote_id(channel: str, ts: str) -> str:
    """The ledger's id of a posted message: both parts are needed to edit it later."""
    return f"{channel}:{ts}"


def parse_remote_id(value: str | None) -> tuple[str, str] | None:
    """(channel ID, ts) from `remote_id`, or None when `value` is not one of ours."""
    match = re.fullmatch(r"([A-Z0-9]{2,40}):(\d{1,12}\.\d{1,9})", value or "")
    return (match.group(1), match.group(2)) if match else None


def classify(key: str, answer: _http.Answer, now: float, posting: bool) -> ApiResult:
    """Delivered / retry / failed for one Web API answer; never raises on odd bodies.

    `posting`: chat.postMessage (a retry after an unclear answer may post twice), not chat.update.
    """
    status = answer.status
    data = _json_object(answer.body)
    error = _code(data.get("error")) if data else None
    warnings = _warnings(data) if data else ()
    twice = "; retrying, the message may be posted twice" if posting else "; retrying"
    if status == 429:
        retry_after = _http.parse_retry_after(answer.headers.get("retry-after"), now)
        reason = "Slack rate limit (429): too many messages to this channel"
        outcome = Outcome(key=key, status="retry", status_code=status, reason=reason, retry_after=retry_after)
        return ApiResult(outcome, error, warnings)
    if status == 408 or status >= 500:
        what = f"Slack says {error}" if error else f"Slack server error: {_seen(answer)}"
        outcome = Outcome(
            key=key, status="retry", status_code=status, reason=f"{what} (HTTP {status}){twice}"
        )
        return ApiResult(outcome, error, warnings)
    if not 200 <= status < 300:
        reason = f"unexpected answer from Slack (HTTP {status}): {_seen(answer)}; check base_url"
        return ApiResult(
            Outcome(key=key, status="failed", status_code=status, reason=reason), error, warnings
        )
    if data is None or not isinstance(data.get("ok"), bool):
        reason = (
            f"Slack answered HTTP {status} with {_seen(answer)}, not a Web API answer; "
            "the message may or may not be posted; check base_url"
        )
        return ApiResult(Outcome(key=key, status="failed", status_code=status, reason=reason), None, ())
    if data["ok"]:
        outcome = Outcome(key=key, status="delivered", status_code=status, remote_id=_posted_id(data))
        return ApiResult(outcome, None, warnings)
    return ApiResult(_refused(key, status, error, data, answer, now, twice), error, warnings)


def _refused(
    key: str,
    status: int,
    error: str | None,
    data: dict[str, object],
    answer: _http.Answer,
    now: float,
    twice: str,
) -> Outcome:
    """The outcome of `ok: false`."""
    if error in RETRY_ERRORS:
        retry_after = _http.parse_retry_after(answer.headers.get("retry-after"), now)
        note = " (Slack may have done part of it)" if error in AMBIGUOUS else ""
        reason = f"Slack says {error}{note}{twice}"
        return Outcome(key=key, status="retry", status_code=status, reason=reason, retry_after=retry_after)
    code = error or "an unnamed error"
    advice = ADVICE.get(
        error or "", "the message was refused; look the error code up in Slack's Web API docs"
    )
    reason = f"Slack says {code}: {advice}"
    needed = data.get("needed")
    if error == "missing_scope" and isinstance(needed, str) and _SCOPES.fullmatch(needed):
        reason += f" (needed: {needed})"
    detail = _detail(data)
    if detail:
        reason += f" [{detail}]"
    return Outcome(key=key, status="failed", status_code=status, reason=reason)


def _json_object(body: bytes) -> dict[str, object] | None:
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _code(value: object) -> str | None:
    # Only code-shaped strings reach reasons and logs: a proxy could put anything here.
    return value if isinstance(value, str) and _CODE.fullmatch(value) else None


def _warnings(data: dict[str, object]) -> tuple[str, ...]:
    found: list[str] = []
    if isinstance(data.get("warning"), str):
        found += str(data["warning"]).split(",")
    metadata = data.get("response_metadata")
    if isinstance(metadata, dict) and isinstance(metadata.get("warnings"), list):
        found += [w for w in metadata["warnings"] if isinstance(w, str)]
    return tuple(dict.fromkeys(code for code in (_code(w.strip()) for w in found) if code))


def _detail(data: dict[str, object]) -> str | None:
    """Slack's first explanation (`errors` of invalid_blocks) for the report, clipped."""
    errors = data.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], str):
        return _http.snippet(errors[0], 160)
    return None


def _posted_id(data: dict[str, object]) -> str | None:
    channel, ts = data.get("channel"), data.get("ts")
    if isinstance(channel, str) and isinstance(ts, str) and parse_remote_id(remote_id(channel, ts)):
        return remote_id(channel, ts)
    return None


def _seen(answer: _http.Answer) -> str:
    return repr(_http.snippet(answer.text)) if answer.body.strip() else "an empty body"
