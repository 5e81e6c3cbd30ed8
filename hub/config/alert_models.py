"""The `alerts:` section of connectors.yaml (hub/alerts; README "### Alerts").

Apart from hub/config/models.py only to keep that module readable; it re-exports these.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from hub.alerts.durations import Duration
from hub.config.strict import Strict

AlertKind = Literal[
    "dead_letters", "failing", "disabled", "stalled", "silent", "reload_rejected", "webhook", "reconciled"
]
"""The alert rules (hub/alerts/rules.py; README "### Alerts" says what each means)."""


class AlertRuleConfig(Strict):
    """Per-rule overrides of the `alerts:` defaults."""

    enabled: bool = Field(default=True, description="false turns this rule off; every rule is on by default")
    to: list[str] | None = Field(default=None, min_length=1, description="instead of alerts.to")
    throttle: Duration | None = Field(default=None, description="instead of alerts.throttle")


def _rule(when: str) -> Any:
    return Field(
        default_factory=AlertRuleConfig,
        description=f"The alert sent when {when}. Its enabled, to and throttle override the defaults.",
        examples=[{"enabled": False}, {"to": ["ops-mail"], "throttle": "1h"}],
    )


class AlertRules(Strict):
    """`alerts.rules`: one entry per rule (AlertKind), each optional."""

    dead_letters: AlertRuleConfig = _rule("submissions to a destination failed for good")
    failing: AlertRuleConfig = _rule("the last `failing_in_a_row` attempts to a destination failed")
    disabled: AlertRuleConfig = _rule("a destination answered 410 and nothing is sent to it")
    stalled: AlertRuleConfig = _rule("a submission waits past `stalled_after` or the dispatcher stopped")
    silent: AlertRuleConfig = _rule("a source with `expect_every` got nothing for that long")
    reload_rejected: AlertRuleConfig = _rule("a changed connectors.yaml was rejected")
    webhook: AlertRuleConfig = _rule("a source's webhook is disabled, missing or points elsewhere")
    reconciled: AlertRuleConfig = _rule("submissions came only through reconciliation")


class AlertsConfig(Strict):
    """`alerts:`: where alerts go and how often; every rule is on unless `rules` turns it off."""

    to: list[str] = Field(
        min_length=1,
        description="destinations that carry alerts (slack, webhook, smtp, sendgrid or postmark)",
        examples=[["ops-slack"]],
    )
    throttle: Duration = Field(default=600.0, description="at most one message per rule and key per this")
    group_window: Duration = Field(
        default=30.0, le=3600, description="dead letters of a destination within this are one message"
    )
    failing_in_a_row: int = Field(default=5, ge=1, le=10_000, description="failed attempts in a row")
    stalled_after: Duration = Field(default=900.0, description="pending longer than this is stalled")
    check_every: Duration = Field(default=5.0, le=300, description="how often the rules are evaluated")
    top_reasons: int = Field(default=3, ge=1, le=20, description="reasons listed in a dead-letter alert")
    rules: AlertRules = Field(
        default_factory=AlertRules,
        description="Per-rule overrides (enabled, to, throttle), by rule name; every rule is on otherwise.",
        examples=[{"silent": {"to": ["ops-mail"]}, "failing": {"enabled": False}}],
    )

    def rule(self, kind: AlertKind) -> AlertRuleConfig:
        rule: AlertRuleConfig = getattr(self.rules, kind)
        return rule

    def destinations_of(self, kind: AlertKind) -> list[str]:
        return self.rule(kind).to or self.to

    def throttle_of(self, kind: AlertKind) -> float:
        return self.rule(kind).throttle or self.throttle
