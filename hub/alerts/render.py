"""An alert shaped for each medium, and one POST that says whether the target took it.

Slack gets a short mrkdwn text (the title bold, the details as bullets, what to do last); e-mail
a subject and the plain `Alert.text()`; a webhook the alert's JSON under `type: hookhub.alert`.
"""

from __future__ import annotations

from typing import Any

from hub.alerts.model import Alert, AlertNotSent
from hub.sender import Answer, Request, Sender, TransportFailed, json_content

_SLACK_MARK = {"firing": ":rotating_light:", "recovered": ":white_check_mark:"}
# 429 and 5xx are the target's passing trouble; any other 4xx will not change by itself.
_TRANSIENT = frozenset({408, 425, 429})


def slack_text(alert: Alert) -> str:
    lines = [f"{_SLACK_MARK[alert.state]} *{_slack_escape(alert.title)}*", _slack_escape(alert.summary)]
    lines += [f"• {_slack_escape(line)}" for line in alert.details]
    if alert.action:
        lines.append(f"*What to do:* {_slack_escape(alert.action)}")
    return "\n".join(lines)


def _slack_escape(text: str) -> str:
    # Slack's mrkdwn control characters; reasons quote receivers' answers, which may hold them.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def webhook_payload(alert: Alert) -> dict[str, Any]:
    return {"type": "hookhub.alert", **alert.model_dump(mode="json")}


async def post_alert(
    sender: Sender, url: str, body: Any, headers: dict[str, str], timeout: float, target: str
) -> Answer:
    """POST `body` as JSON; the 2xx answer, or AlertNotSent saying whether a retry may help."""
    request = Request(
        "POST",
        url,
        headers={"content-type": "application/json", **headers},
        content=json_content(body),
        timeout=timeout,
    )
    try:
        answer = await sender.send(request)
    except TransportFailed as exc:
        raise AlertNotSent(f"{target}: {exc.reason}") from None
    if not 200 <= answer.status < 300:
        retry = answer.status in _TRANSIENT or answer.status >= 500
        raise AlertNotSent(f"{target} answered HTTP {answer.status}", retry=retry)
    return answer
