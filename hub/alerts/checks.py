"""`hookhub check` for the `alerts:` section: alert destinations exist and can carry an alert.

Durations, numbers and rule names are checked by the models (hub/config/models.py); this adds
what needs the other sections and the destination registry. Runs on the plain data like the
other semantic checks (hub/config/semantic.py), so a typo elsewhere does not hide it.
"""

from __future__ import annotations

from typing import Any

from hub.config.positions import KeyPath
from hub.config.problems import Reporter


def alert_refs(alerts: Any) -> list[tuple[KeyPath, str]]:
    """Every destination id `alerts:` names (in `to` and the rules' `to`), with its key path."""
    if not isinstance(alerts, dict):
        return []
    lists: list[tuple[KeyPath, Any]] = [(("alerts", "to"), alerts.get("to"))]
    rules = alerts.get("rules")
    if isinstance(rules, dict):
        lists += [
            (("alerts", "rules", name, "to"), rule.get("to"))
            for name, rule in rules.items()
            if isinstance(rule, dict)
        ]
    return [
        ((*path, index), ref)
        for path, value in lists
        if isinstance(value, list)
        for index, ref in enumerate(value)
        if isinstance(ref, str)
    ]


def check_alerts(reporter: Reporter, data: dict[str, Any]) -> None:
    destinations = data.get("destinations") or {}
    if isinstance(destinations, dict):
        for path, ref in alert_refs(data.get("alerts")):
            _check_target(reporter, path, ref, destinations)


def _check_target(reporter: Reporter, path: KeyPath, ref: str, destinations: dict[str, Any]) -> None:
    from flows.destinations import UnknownDestinationType, get_destination

    if ref not in destinations:
        defined = ", ".join(map(str, destinations)) or "none"
        reporter.error(path, f"unknown destination {ref!r} for alerts; defined destinations: {defined}")
        return
    raw = destinations[ref]
    type_name = raw.get("type") if isinstance(raw, dict) else None
    if not isinstance(type_name, str):
        return  # reported with the destination
    try:
        destination = get_destination(type_name)
    except UnknownDestinationType:
        return  # reported with the destination
    if not destination.carries_alerts:
        reporter.error(
            path,
            f"destination {ref!r} (type {type_name}) cannot carry alerts; "
            "use a slack, webhook, smtp, sendgrid or postmark destination",
        )
    elif _only_templates(raw.get("to")):
        from hub.alerts.email import NO_FIXED_RECIPIENT

        reporter.error(path, f"destination {ref!r} {NO_FIXED_RECIPIENT}")


def _only_templates(to: Any) -> bool:
    """An e-mail destination's `to` whose every entry is a template (chosen by a submission)."""
    from flows.destinations._email_settings import has_jinja

    entries = [to] if isinstance(to, str) else to
    return (
        isinstance(entries, list)
        and bool(entries)
        and all(isinstance(e, str) and has_jinja(e) for e in entries)
    )
