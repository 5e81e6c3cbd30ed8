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


def _alert(
    kind: AlertKind,
    key: str,
    now: float,
    words: tuple[str, str, str],
    details: list[str],
    count: int | None = None,
) -> Alert:
    """An alert saying `words`: its title, its summary and what to do."""
    title, summary, action = words
    return Alert(
        kind=kind, key=key, title=title, summary=summary, details=details, action=action, count=count, at=now
    )


def dead_letters(
    destination: str, count: int, reasons: dict[str, int], sources: list[str], top: int, now: float
) -> Alert:
    ranked = sorted(reasons.items(), key=lambda item: (-item[1], item[0]))[:top]
    noun = "submission" if count == 1 else "submissions"
    words = (
        f"{count} {noun} failed for good to {destination}",
        f"{count} {noun} to `{destination}` became dead letters: they are not retried on their own.",
        f"see `hookhub deadletters`; fix what the reasons say; {_replay_hint(sources)}",
    )
    return _alert("dead_letters", destination, now, words, [f"{n}x {reason}" for reason, n in ranked], count)


def dead_letters_recovered(destination: str, waiting: int, now: float) -> Alert:
    replay = "`hookhub replay --all` (or --source/--id) sends the dead letters again" if waiting else ""
    summary = f"Submissions reach `{destination}` again; {waiting} dead letters are still waiting."
    alert = _alert(
        "dead_letters", destination, now, (f"deliveries to {destination} succeed again", summary, replay), []
    )
    return alert.model_copy(update={"state": "recovered", "count": waiting})


def failing(destination: str, in_a_row: int, reasons: list[str], now: float) -> Alert:
    title = f"{destination} failed {in_a_row} times in a row"
    summary = f"The last {in_a_row} attempts to deliver to `{destination}` failed; they are retried."
    action = f"check `{destination}` (is it up, are its credentials valid?); see `hookhub status`"
    return _alert("failing", destination, now, (title, summary, action), sorted(set(reasons))[:3], in_a_row)


def disabled(destination: str, reason: str, now: float) -> Alert:
    summary = f"`{destination}` said it is gone for good (410); nothing is sent to it any more."
    action = f"fix or replace `{destination}` in connectors.yaml, then replay its dead letters"
    details = [reason] if reason else []
    return _alert("disabled", destination, now, (f"{destination} is disabled", summary, action), details)


_STALLED = {
    "prefect": "Prefect's API does not answer: nothing is delivered",
    "dispatcher": "the dispatcher has stopped turning: nothing is delivered",
}
_STALLED_ACTION = (
    "check `hookhub status` and the hub's log (Prefect, dispatcher); restart it if this persists"
)
_STALLED_ACTIONS = {
    "prefect": "check that the Prefect server PREFECT_API_URL names is up and reachable from the hub"
    " (`hookhub status` shows the error); nothing needs replaying: delivery resumes once it answers",
}


def stalled(key: str, detail: str, after: float, now: float) -> Alert:
    what = _STALLED.get(key, f"submissions have waited more than {format_duration(after)} to be delivered")
    summary = f"Delivery is stalled: {what}. Webhooks are still accepted and kept."
    words = (f"delivery stalled ({key})", summary, _STALLED_ACTIONS.get(key, _STALLED_ACTION))
    return _alert("stalled", key, now, words, [detail] if detail else [])


def silent(source: str, expect_every: float, last: float | None, now: float) -> Alert:
    seen = "never since the hub started" if last is None else f"last {format_duration(round(now - last))} ago"
    summary = f"No submission from `{source}` in {format_duration(expect_every)} ({seen})."
    action = "check the form is live and its webhook still points at this hub (the provider's webhook log)"
    return _alert("silent", source, now, (f"{source} went silent", summary, action), [])


def reload_rejected(reason: str, now: float) -> Alert:
    words = (
        "connectors.yaml reload rejected",
        "A changed connectors.yaml was rejected; the previous configuration keeps serving.",
        "fix the problems listed (`hookhub check` shows them); the hub reloads on save",
    )
    return _alert("reload_rejected", "config", now, words, reason.splitlines()[:10])


_WEBHOOK_STATES = {
    "disabled": "is disabled at the provider",
    "missing": "no longer exists at the provider",
    "elsewhere": "points at another URL",
}


def webhook(source: str, provider: str, state: str, detail: str, now: float) -> Alert:
    how = _WEBHOOK_STATES.get(state, f"is {state}")
    summary = (
        f"The {provider} webhook of `{source}` {how}: new submissions reach the hub only through"
        " reconciliation, up to `reconcile.every` late."
    )
    action = (
        "turn the webhook back on (or point it at this hub's /hooks/" + source + ") in the provider's"
        " settings; `hookhub reconcile " + source + "` checks it again"
    )
    return _alert("webhook", source, now, (f"{source}: webhook {state}", summary, action), [detail])


def reconciled(source: str, count: int, window: float, now: float) -> Alert:
    summary = (
        f"{count} submission(s) of `{source}` arrived only through reconciliation in the last"
        f" {format_duration(window)}: the webhook may be failing."
    )
    action = (
        "look at the provider's webhook log (deliveries failing, disabled) and at `hookhub status`;"
        " the submissions themselves were delivered"
    )
    return _alert("reconciled", source, now, (f"{source}: webhooks missed", summary, action), [], count)


_RESOLVED = {
    "failing": "deliveries to {key} succeed again",
    "disabled": "{key} is enabled again",
    "stalled": "delivery moves again ({key})",
    "silent": "{key} sends submissions again",
    "reload_rejected": "connectors.yaml reloaded",
    "webhook": "the webhook of {key} sends to this hub again",
    "reconciled": "{key}: no submission needed reconciliation in the last hour",
}


def recovered(kind: AlertKind, key: str, now: float) -> Alert:
    """The all-clear of a firing level alert (failing, disabled, stalled, silent, reload)."""
    title = _RESOLVED.get(kind, "{key} recovered").format(key=key)
    return Alert(kind=kind, key=key, state="recovered", title=title, summary=f"Resolved: {title}.", at=now)
