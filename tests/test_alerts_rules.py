"""The alert rules and the evaluator at fixed instants: a real spool file, a FakeClock and a
channel that records what would go to the alert destinations (the sending itself is tested over
a real hub in test_alerts_hub.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.alerts.evaluator import PREFECT_GRACE, AlertEvaluator
from hub.alerts.rules import SCAN_LAG
from hub.health import DeliveryHealth
from hub.runtime import ConfigHolder
from hub.spool.schema import SPOOL_FILE
from tests.harness import FakeClock
from tests.test_alerts_support import RecordingChannel, Spool, write_config

pytestmark = pytest.mark.anyio
T0 = 1_800_000_000.0
ALERTS = """
to: [ops-slack]
group_window: 30s
throttle: 10m
"""


class Rig:
    def __init__(self, tmp_path: Path, alerts: str = ALERTS, source_extra: str = "") -> None:
        self.config_path = write_config(tmp_path / "connectors.yaml", alerts, source_extra=source_extra)
        self.clock = FakeClock(T0)
        self.spool = Spool(tmp_path / SPOOL_FILE)
        self.holder = ConfigHolder(self.config_path)
        self.health = DeliveryHealth()
        self.channel = RecordingChannel()
        self.evaluator = self.new_evaluator()

    def new_evaluator(self) -> AlertEvaluator:
        return AlertEvaluator(self.spool.path, self.holder, self.health, self.channel, clock=self.clock)

    async def at(self, seconds: float) -> list[str]:
        """Turn at T0 + seconds; the titles sent in that turn."""
        self.clock.now = T0 + seconds
        before = len(self.channel.sent)
        await self.evaluator.turn()
        return [alert.title for _, alert in self.channel.sent[before:]]


@pytest.fixture
def rig(tmp_path: Path) -> Rig:
    return Rig(tmp_path)


async def test_200_dead_letters_in_a_minute_are_one_message_with_count_and_top_reasons(rig: Rig) -> None:
    assert await rig.at(0) == []  # the dead-letter watermark starts here
    for i in range(200):
        reason = (
            "could not connect (DNS, refused or TLS error)" if i % 4 == 0 else "receiver answered HTTP 500"
        )
        rig.spool.delivery(T0 + 1 + i * 0.1, "dead", error=reason)
    assert await rig.at(25) == []  # counted, the group window is still open
    assert await rig.at(54) == []
    assert await rig.at(56) == ["200 submissions failed for good to crm"]
    (dest, alert), *_ = rig.channel.sent
    assert dest == "ops-slack" and alert.count == 200
    assert alert.details == [
        "150x receiver answered HTTP 500",
        "50x could not connect (DNS, refused or TLS error)",
    ]
    assert "hookhub replay --source demo" in alert.action
    assert await rig.at(100) == []


async def test_dead_letters_during_the_throttle_come_in_the_next_message(rig: Rig) -> None:
    await rig.at(0)
    rig.spool.delivery(T0 + 1, "dead", error="receiver answered HTTP 400")
    await rig.at(5)
    assert await rig.at(40) == ["1 submission failed for good to crm"]
    for i in range(50):
        rig.spool.delivery(T0 + 41 + i, "dead", error="receiver answered HTTP 400")
    assert await rig.at(200) == []  # throttled: 10 minutes after the last message
    assert await rig.at(639) == []
    assert await rig.at(641) == ["50 submissions failed for good to crm"]


async def test_recovered_once_when_a_delivery_succeeds_after_the_dead_letters(rig: Rig) -> None:
    await rig.at(0)
    rig.spool.delivery(T0 + 1, "dead", error="receiver answered HTTP 400")
    await rig.at(5)
    await rig.at(40)
    assert await rig.at(50) == []  # nothing delivered since
    rig.spool.attempt(T0 + 60, "delivered")  # the ledger records each attempt
    assert await rig.at(70) == ["deliveries to crm succeed again"]
    assert rig.channel.alerts()[-1].state == "recovered" and rig.channel.alerts()[-1].count == 1
    assert await rig.at(80) == []


async def test_failing_in_a_row_fires_once_and_resolves_on_a_delivery(rig: Rig) -> None:
    for i in range(4):
        rig.spool.attempt(T0 + i, "retry", error="receiver answered HTTP 503")
    assert await rig.at(10) == []
    rig.spool.attempt(T0 + 11, "retry", error="receiver answered HTTP 503")
    assert await rig.at(12) == ["crm failed 5 times in a row"]
    assert rig.channel.alerts()[0].details == ["receiver answered HTTP 503"]
    assert await rig.at(13) == []
    rig.spool.attempt(T0 + 14, "delivered")
    assert await rig.at(15) == ["deliveries to crm succeed again"]


async def test_disabled_destination_fires_and_resolves(rig: Rig) -> None:
    rig.spool.disable("crm", T0, "receiver answered HTTP 410 Gone")
    assert await rig.at(1) == ["crm is disabled"]
    assert await rig.at(2) == []
    rig.spool.enable("crm")
    assert await rig.at(3) == ["crm is enabled again"]


async def test_a_condition_back_within_the_throttle_waits_for_it(rig: Rig) -> None:
    rig.spool.disable("crm", T0, "gone")
    assert await rig.at(1) == ["crm is disabled"]
    rig.spool.enable("crm")
    assert await rig.at(2) == ["crm is enabled again"]
    rig.spool.disable("crm", T0 + 3, "gone again")
    assert await rig.at(4) == []  # flapping: 10 minutes after the last message at the earliest
    assert await rig.at(600) == []
    assert await rig.at(602) == ["crm is disabled"]


async def test_stalled_when_submissions_wait_too_long_or_prefect_is_unreachable(rig: Rig) -> None:
    rig.health.dispatching = True
    rig.health.dispatcher_beat_at = T0
    rig.spool.submission(T0 - 600, state="pending")
    assert await rig.at(0) == []
    rig.health.dispatcher_beat_at = T0 + 301
    assert await rig.at(301) == ["delivery stalled (delivery)"]
    rig.health.prefect_reachable = False
    rig.health.prefect_error = "connection refused"
    assert await rig.at(302) == []  # one failed check is not yet an alert
    rig.health.dispatcher_beat_at = T0 + 303 + PREFECT_GRACE
    assert await rig.at(303 + PREFECT_GRACE) == ["delivery stalled (prefect)"]
    rig.health.prefect_reachable = True
    assert await rig.at(304 + PREFECT_GRACE) == ["delivery moves again (prefect)"]


async def test_a_replayed_old_dead_letter_is_not_a_stall(rig: Rig) -> None:
    rig.health.dispatching = True
    rig.health.dispatcher_beat_at = T0
    rig.spool.delivery(T0 - 86400, "pending", updated_at=T0 - 2)  # dead yesterday, replayed now
    assert await rig.at(0) == []
    rig.health.dispatcher_beat_at = T0 + 900
    assert await rig.at(901) == ["delivery stalled (delivery)"]  # still waiting 15 minutes later


async def test_silent_source_alerts_after_expect_every_and_resolves_on_a_submission(tmp_path: Path) -> None:
    rig = Rig(tmp_path, source_extra="expect_every: 6h")
    rig.spool.submission(T0 - 3600)
    assert await rig.at(6 * 3600 - 1) == []  # counted from the evaluator's start
    assert await rig.at(6 * 3600 + 1) == ["demo went silent"]
    rig.spool.submission(T0 + 6 * 3600 + 2)
    assert await rig.at(6 * 3600 + 3) == ["demo sends submissions again"]


async def test_rejected_reload_alerts_with_the_position_and_resolves_on_a_good_one(rig: Rig) -> None:
    good = rig.config_path.read_text()
    rig.config_path.write_text(good.replace("to: [crm]", "to: [crn]"))
    assert rig.holder.reload() is False
    assert rig.holder.reload_counts == {"accepted": 0, "rejected": 1}
    assert await rig.at(1) == ["connectors.yaml reload rejected"]
    assert any(
        "unknown destination 'crn'" in line and ":" in line for line in rig.channel.alerts()[0].details
    )
    rig.config_path.write_text(good)
    assert rig.holder.reload() is True
    assert await rig.at(2) == ["connectors.yaml reloaded"]


async def test_a_failing_alert_destination_is_retried_on_its_policy_and_never_alerts_about_itself(
    rig: Rig,
) -> None:
    rig.channel.failing = True
    rig.spool.disable("crm", T0, "gone")
    await rig.at(1)
    assert rig.channel.tries == 1
    for second in (1.1, 1.2, 1.3):
        await rig.at(second)
    assert rig.channel.tries == 1  # backoff (ops-slack's retry: initial 1 s)
    for second in range(2, 40):
        await rig.at(second)
    # Retried with a growing wait until ops-slack's horizon (30 s), then dropped.
    assert 4 <= rig.channel.tries <= 20
    assert rig.spool.count("SELECT count(*) FROM alert_outbox WHERE status='dropped'") == 1
    assert rig.spool.count("SELECT count(*) FROM deliveries WHERE destination='ops-slack'") == 0
    assert rig.spool.count("SELECT count(*) FROM attempts WHERE destination='ops-slack'") == 0
    assert rig.spool.count("SELECT count(*) FROM alert_state WHERE key='ops-slack'") == 0


async def test_a_refused_alert_is_dropped_at_once(rig: Rig) -> None:
    rig.channel.failing, rig.channel.retry = True, False
    rig.spool.disable("crm", T0, "gone")
    await rig.at(1)
    await rig.at(100)
    assert rig.channel.tries == 1
    assert rig.spool.count("SELECT count(*) FROM alert_outbox WHERE status='dropped'") == 1


async def test_what_was_owed_is_sent_after_a_restart_and_nothing_twice(rig: Rig) -> None:
    rig.channel.failing = True
    rig.spool.disable("crm", T0, "gone")
    await rig.at(1)
    assert rig.channel.sent == []
    # A new process: new evaluator and channel, the same spool.
    rig.channel = RecordingChannel()
    rig.evaluator = rig.new_evaluator()
    assert await rig.at(5) == ["crm is disabled"]
    assert await rig.at(6) == []
    assert rig.spool.count("SELECT count(*) FROM alert_outbox WHERE status='sent'") == 1


async def test_dead_letters_are_read_behind_the_clock_so_late_commits_count(rig: Rig) -> None:
    await rig.at(0)
    await rig.at(10)
    # Stamped before the last turn but committed after it (a chunk's transaction): still counted.
    rig.spool.delivery(T0 + 10 - SCAN_LAG / 2, "dead", error="late")
    await rig.at(12)
    assert await rig.at(50) == ["1 submission failed for good to crm"]


async def test_a_rule_turned_off_sends_nothing(tmp_path: Path) -> None:
    rig = Rig(tmp_path, alerts=ALERTS + "rules:\n  disabled: {enabled: false}\n")
    rig.spool.disable("crm", T0, "gone")
    assert await rig.at(1) == []
