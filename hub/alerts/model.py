"""What an alert says, independent of where it goes.

Destinations shape it for their medium (flows/destinations/*: `send_alert`): Slack a short
mrkdwn text, e-mail a subject and a text, a webhook the JSON of this model. `text()` and
`subject()` are the shared plain renderings so every medium says the same words.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from hub.config.models import AlertKind

AlertState = Literal["firing", "recovered"]


class Alert(BaseModel):
    """One message to the admin on call: what happened, how much, what to do."""

    kind: AlertKind
    key: str = Field(description="what it is about: a destination, a source, `delivery`, `config`")
    state: AlertState = "firing"
    title: str
    summary: str
    details: list[str] = Field(default_factory=list, description="one line each: reasons, counts")
    action: str = Field(default="", description="what to do, with the commands to run")
    count: int | None = None
    at: float = Field(description="unix time the rule decided it")
    hub: str = Field(default="hookhub", description="which hub (its public URL when configured)")

    def subject(self) -> str:
        mark = "resolved" if self.state == "recovered" else "alert"
        return f"[{self.hub} {mark}] {self.title}"

    def text(self) -> str:
        lines = [self.summary, *(f"- {line}" for line in self.details)]
        if self.action:
            lines += ["", f"What to do: {self.action}"]
        return "\n".join(lines)


class AlertNotSent(Exception):
    """An alert destination did not take an alert; `retry` says whether trying again may help."""

    def __init__(self, reason: str, retry: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


class AlertsUnsupported(AlertNotSent):
    """The destination type cannot carry alerts (`hookhub check` refuses it in `alerts.to`)."""

    def __init__(self, type_name: str) -> None:
        super().__init__(
            f"destination type {type_name!r} cannot carry alerts"
            " (slack, webhook, smtp, sendgrid and postmark can)",
            retry=False,
        )
