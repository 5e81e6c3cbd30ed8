"""Reason classes: why a delivery failed, in words that cannot carry personal data.

A delivery's full reason (kept in the ledger, shown by `hookhub deadletters`) may quote the
target's answer or the rendered text, that is the submission's answers. Logs and Prefect's run
logs get its class instead: a status code with its standard phrase, or one label of a fixed
list matched in the reason. The class is never built from the reason's own words, so no
answer, address or token can reach a log through it (docs/security.md, "Logs").
"""

from __future__ import annotations

from http import HTTPStatus

_LABELS = (
    # (words in the reason, class); the first match wins, so the specific come first.
    ("no longer in connectors.yaml", "destination no longer configured"),
    ("is no longer configured", "source no longer configured"),
    ("unnormalizable", "normalize failed"),
    ("could not fetch", "fetch failed"),
    ("could not complete it", "fetch failed"),
    ("cannot be routed", "routing failed"),
    ("`when`", "route condition failed"),
    ("destination disabled", "destination disabled"),
    ("quarantined", "quarantined"),
    ("unreadable", "stored submission unreadable"),
    ("cannot prepare", "could not prepare the delivery"),
    ("cannot judge", "could not judge the outcome"),
    ("returned no outcome", "destination returned no outcome"),
    ("destination error", "destination raised"),
    ("timed out", "timeout"),
    ("timeout", "timeout"),
    ("could not connect", "connection failed"),
    ("connection", "connection failed"),
    ("retry-after", "paused by the target"),
    ("paused", "paused by the target"),
    ("render", "render failed"),
    ("template", "render failed"),
    ("mapping", "mapping failed"),
    ("field", "rejected field"),
    ("gave up", "retries used up"),
)


def reason_class(status_code: int | None, reason: str | None, protocol: str = "HTTP") -> str:
    """`HTTP 500 Internal Server Error`, `SMTP 550`, `unexpected answer (HTTP 200)`, `timeout`, ...
    or `other` (see module doc)."""
    if status_code:
        if 200 <= status_code < 300:  # a failure all the same: the answer was not what was asked for
            return f"unexpected answer ({protocol} {status_code})"
        if protocol == "HTTP":
            try:
                return f"HTTP {status_code} {HTTPStatus(status_code).phrase}"
            except ValueError:
                pass
        return f"{protocol} {status_code}"
    text = (reason or "").lower()
    for words, label in _LABELS:
        if words in text:
            return label
    return "other" if text else "no reason given"


def protocol_of(destination_type: str) -> str:
    return "SMTP" if destination_type == "smtp" else "HTTP"
