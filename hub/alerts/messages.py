"""The words of each alert: what happened and what to do (README "### Alerts" explains them).

Never personal data: reasons come from the ledger, which holds the destination's answer and
hookhub's own words, never answers or addresses; counts, ids and commands otherwise.
"""

from __future__ import annotations

from hub.alerts.durations import format_duration
from hub.alerts.model import Alert
from hub.config.models import AlertKind

_REPLAY = "once it is fixed, `hookhub replay --source {source}` sends them again"


def _replay_hint(sources: list[str]) -> str:
    if not sources:
        return "once it is fixed, `hookhub replay --all` sends them again"
    return "; ".join(_REPLAY.format(source=s) for s in sorted(sources)[:3])


def dead_letters(
    destination: str, count: int, reasons: dict[str, int], sources: list[str], top: int, now: float
) -> Alert:
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:top]
    noun = "submission" if count == 1 else "submissions"
    return Alert(
        kind="dead_letters",
        key=destination,
        title=f"{count} {noun} failed for good to {destination}",
        summary=f"{count} {noun} to `{destination}` became dead letters: they are not retried on their own.",
        details=[f"{n}x {reason}" for reason, n in ranked],
        action=f"see `hookhub deadletters`; fix what the reasons say; {_replay_hint(sources)}",
        count=count,
        at=now,
    )


def dead_letters_recovered(destination: str, waiting: int, now: float) -> Alert:
    return Alert(
        kind="dead_letters",
        key=destination,
        state="recovered",
        title=f"deliveries to {destination} succeed again",
        summary=f"Submissions reach `{destination}` again; {waiting} dead letters are still waiting.",
        action="`hookhub replay --all` (or --source/--id) sends the dead letters again" if waiting else "",
        count=waiting,
        at=now,
    )


def failing(destination: str, in_a_row: int, reasons: list[str], now: float) -> Alert:
    return Alert(
        kind="failing",
        key=destination,
        title=f"{destination} failed {in_a_row} times in a row",
        summary=f"The last {in_a_row} attempts to deliver to `{destination}` failed; they are retried.",
        details=sorted(set(reasons))[:3],
        action=f"check `{destination}` (is it up, are its credentials valid?); see `hookhub status`",
        count=in_a_row,
        at=now,
    )


def disabled(destination: str, reason: str, now: float) -> Alert:
    return Alert(
        kind="disabled",
        key=destination,
        title=f"{destination} is disabled",
        summary=f"`{destination}` said it is gone for good (410); nothing is sent to it any more.",
        details=[reason] if reason else [],
        action=f"fix or replace `{destination}` in connectors.yaml, then replay its dead letters",
        at=now,
    )


def stalled(key: str, detail: str, after: float, now: float) -> Alert:
    what = {
        "prefect": "Prefect's API does not answer: nothing is delivered",
        "dispatcher": "the dispatcher has stopped turning: nothing is delivered",
    }.get(key, f"submissions have waited more than {format_duration(after)} to be delivered")
    return Alert(
        kind="stalled",
        key=key,
        title=f"delivery stalled ({key})",
        summary=f"Delivery is stalled: {what}. Webhooks are still accepted and kept.",
        details=[detail] if detail else [],
        action="check `hookhub status` and the hub's log (Prefect, dispatcher); restart it if this persists",
        at=now,
    )


def silent(source: str, expect_every: float, last: float | None, now: float) -> Alert:
    seen = "never since the hub started" if last is None else f"last {format_duration(round(now - last))} ago"
    return Alert(
        kind="silent",
        key=source,
        title=f"{source} went silent",
        summary=f"No submission from `{source}` in {format_duration(expect_every)} ({seen}).",
        action="check the form is live and its webhook still points at this hub (the provider's webhook log)",
        at=now,
    )


def reload_rejected(reason: str, now: float) -> Alert:
    return Alert(
        kind="reload_rejected",
        key="config",
        title="connectors.yaml reload rejected",
        summary="A changed connectors.yaml was rejected; the previous configuration keeps serving.",
        details=reason.splitlines()[:10],
        action="fix the problems listed (`hookhub check` shows them); the hub reloads on save",
        at=now,
    )


_RESOLVED = {
    "failing": "deliveries to {key} succeed again",
    "disabled": "{key} is enabled again",
    "stalled": "delivery moves again ({key})",
    "silent": "{key} sends submissions again",
    "reload_rejected": "connectors.yaml reloaded",
}


def recovered(kind: AlertKind, key: str, now: float) -> Alert:
    """The all-clear of a firing level alert (failing, disabled, stalled, silent, reload)."""
    title = _RESOLVED.get(kind, "{key} recovered").format(key=key)
    return Alert(kind=kind, key=key, state="recovered", title=title, summary=f"Resolved: {title}.", at=now)
