"""`alerts:` and `expect_every` in connectors.yaml: what `hookhub check` accepts and what it says."""

from __future__ import annotations

import pytest

from hub.alerts.durations import format_duration, parse_duration
from hub.config.check import check_file
from hub.config.loader import ConfigError, parse_config
from tests.harness import REPO

BASE = """
sources:
  demo:
    provider: standard_webhooks
    secret: whsec_EAQMFunN9cJRB1htPZ0NSfpniZb7tDxZ4fYC2mVqfo0=
    expect_every: {expect_every}
destinations:
  local-file: {{type: file, path: d.jsonl}}
  ops-slack: {{type: slack, webhook_url: "https://hooks.slack.com/services/T0/B0/abc"}}
  ops-mail:
    type: smtp
    host: smtp.example.com
    from: hub@example.com
    to: [{mail_to}]
routes:
  - {{name: r, from: [demo], to: [local-file]}}
alerts:
{alerts}
"""


def parse(alerts: str, expect_every: str = "6h", mail_to: str = "ops@example.com") -> list[str]:
    text = BASE.format(alerts=alerts, expect_every=expect_every, mail_to=mail_to)
    try:
        config, warnings = parse_config(text, "c.yaml", environ={})
    except ConfigError as exc:
        return [str(p) for p in exc.problems]
    assert config.alerts is not None
    return [f"warning: {w}" for w in warnings]


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("10m", 600), ("6h", 21600), ("1d", 86400), (90, 90), ("1.5h", 5400)]
)
def test_durations(text: str | int, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["10", "10 minutes", "-1m", "0s", True, "m", ""])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError, match="must be a duration such as 30s, 10m, 6h or 1d"):
        parse_duration(text)


def test_format_duration() -> None:
    assert [format_duration(s) for s in (600, 21600, 90, 1.5)] == ["10m", "6h", "90s", "1.5s"]


def test_a_valid_section_and_alert_destinations_need_no_route() -> None:
    alerts = "  to: [ops-slack, ops-mail]\n  throttle: 10m\n  rules: {silent: {to: [ops-mail], throttle: 1h}}"
    assert parse(alerts) == []


def test_problems_are_positioned_and_say_what_to_do() -> None:
    alerts = (
        "  to: [local-file, nope]\n"
        "  throttle: 10 minutes\n"
        "  failing_in_a_row: 0\n"
        "  rules: {bogus: {}, silent: {to: [gone]}}"
    )
    assert parse(alerts, expect_every="often") == [
        "c.yaml:6:19: sources.demo.expect_every: must be a duration such as 30s, 10m, 6h or 1d "
        "(or a number of seconds), above zero",
        "c.yaml:18:8: alerts.to[0]: destination 'local-file' (type file) cannot carry alerts; "
        "use a slack, webhook, smtp, sendgrid or postmark destination",
        "c.yaml:18:20: alerts.to[1]: unknown destination 'nope' for alerts; "
        "defined destinations: local-file, ops-slack, ops-mail",
        "c.yaml:19:13: alerts.throttle: must be a duration such as 30s, 10m, 6h or 1d "
        "(or a number of seconds), above zero",
        "c.yaml:20:21: alerts.failing_in_a_row: Input should be greater than or equal to 1",
        "c.yaml:21:11: alerts.rules.bogus: unknown key 'bogus'; known keys: dead_letters, disabled, "
        "failing, reconciled, reload_rejected, silent, stalled, webhook",
        "c.yaml:21:36: alerts.rules.silent.to[0]: unknown destination 'gone' for alerts; "
        "defined destinations: local-file, ops-slack, ops-mail",
    ]


def test_an_email_destination_whose_recipients_are_all_templates_cannot_carry_alerts() -> None:
    assert parse("  to: [ops-mail]", mail_to='"{{ answers.email }}"') == [
        "c.yaml:18:8: alerts.to[0]: destination 'ops-mail' has no fixed `to` address "
        "(templates need a submission): alerts need one"
    ]


def test_alerts_need_a_destination() -> None:
    (problem,) = parse("  to: []")
    assert "alerts.to" in problem


def test_the_example_connectors_yaml_checks_with_its_alerts_example_uncommented() -> None:
    code, text = check_file(REPO / "connectors.yaml", environ={})
    assert code == 0, text
    example = (REPO / "connectors.yaml").read_text()
    lines = example.splitlines()
    start = lines.index("# alerts:")
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("#")), len(lines))
    block = "\n".join(line[2:] for line in lines[start:end])
    slack = 'team-slack: {type: slack, webhook_url: "https://hooks.slack.com/services/T0/B0/abc"}'
    text = example.replace("destinations:\n", f"destinations:\n  {slack}\n", 1) + "\n" + block + "\n"
    config, warnings = parse_config(text, "connectors.yaml", environ={})
    assert config.alerts is not None and config.alerts.to == ["team-slack"]
    assert config.alerts.throttle == 600 and config.alerts.stalled_after == 900
    assert not [w for w in warnings if "team-slack" in str(w)]
