"""Alerts end to end: a real hub (uvicorn on loopback, the dispatcher and Prefect where
deliveries matter), a loopback destination that fails on script, and a Slack incoming webhook
played by the same loopback server (it answers `ok`, as Slack does)."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from hub.alerts.evaluator import attach_alerts
from hub.cli import main as cli
from hub.runtime import ConfigHolder, prepare_sources
from hub.server import Hub
from tests.fake_destination import FakeDestination, Received
from tests.harness import RunningServer, serve_app, wait_for
from tests.test_alerts_support import write_config

SLACK = "/services/T0000TEST/B0000TEST/alerts"
FIRST_DELIVERY = 180.0  # Prefect's ephemeral server starts with the session's first flow run
FAST = """
to: [ops-slack]
check_every: 0.2s
group_window: {window}
throttle: 1h
rules: {{{rules}}}
"""


@pytest.fixture
def fake() -> Iterator[FakeDestination]:
    destination = FakeDestination().start()
    yield destination
    destination.stop()


class Running:
    """A hub with its alert evaluator (and the dispatcher when asked), served on loopback."""

    def __init__(self, config: Path, data_dir: Path, dispatch: bool) -> None:
        self.holder = ConfigHolder(config)
        self.hub = Hub(config=self.holder, data_dir=data_dir, watch_config=False)
        if dispatch:
            from hub.dispatch import attach_dispatcher

            attach_dispatcher(self.hub)
        attach_alerts(self.hub)
        self.server: RunningServer = serve_app(self.hub.app())

    def post(self, count: int = 1) -> None:
        source = prepare_sources(self.holder.current)["demo"]
        url = f"{self.server.url}/hooks/demo"
        with httpx.Client(timeout=30) as client:
            for _ in range(count):
                request = source.connector.sample_request(source.config, url, time.time())
                answer = client.post(url, content=request.body, headers=dict(request.headers))
                assert answer.status_code == 200, answer.text

    def count(self, sql: str) -> int:
        conn = sqlite3.connect(self.hub.spool_path)
        try:
            return int(conn.execute(sql).fetchone()[0])
        finally:
            conn.close()


@pytest.fixture
def hubs(tmp_path: Path) -> Iterator[Any]:
    running: list[Running] = []

    def start(config: Path, dispatch: bool = False) -> Running:
        hub = Running(config, tmp_path / "data", dispatch)
        running.append(hub)
        return hub

    yield start
    for hub in running:
        hub.server.stop()


def slack_texts(fake: FakeDestination, answered: int = 200) -> list[str]:
    return [_text(r) for r in fake.received(SLACK) if r.status == answered]


def _text(received: Received) -> str:
    import json

    text: str = json.loads(received.body)["text"]
    return text


def config(tmp_path: Path, fake: FakeDestination, window: str = "1s", rules: str = "", **extra: str) -> Path:
    alerts = FAST.format(window=window, rules=rules)
    return write_config(
        tmp_path / "connectors.yaml", alerts, crm=fake.url("/crm"), slack=fake.url(SLACK), **extra
    )


def test_200_dead_letters_are_one_slack_message_then_recovered(tmp_path: Path, fake, hubs) -> None:
    fake.script("/crm", *[(400, {}, "bad request")] * 200)
    hub = hubs(config(tmp_path, fake, window="10s", rules="failing: {enabled: false}"), dispatch=True)
    hub.post(200)
    wait_for(
        lambda: hub.count("SELECT count(*) FROM deliveries WHERE status='dead'") == 200,
        timeout=FIRST_DELIVERY,
        what="200 dead letters",
    )
    messages = wait_for(lambda: slack_texts(fake), timeout=60, what="the dead-letter alert in Slack")
    assert len(messages) == 1, messages
    (message,) = messages
    assert message.startswith(":rotating_light: *200 submissions failed for good to crm*")
    assert "• 200x receiver answered HTTP 400" in message or "200x" in message
    assert "hookhub replay --source demo" in message
    # The /crm script is spent: the next submission is delivered, and Slack hears it is over.
    hub.post(1)
    wait_for(lambda: len(slack_texts(fake)) >= 2, timeout=60, what="the recovered message")
    texts = slack_texts(fake)
    assert len(texts) == 2, texts
    assert texts[1].startswith(":white_check_mark: *deliveries to crm succeed again*")
    assert "200 dead letters are still waiting" in texts[1]


def test_failing_in_a_row_then_disabled_by_a_410(tmp_path: Path, fake, hubs) -> None:
    fake.script("/crm", *[(503, {}, "busy")] * 5, (410, {}, "gone"))
    alerts = "dead_letters: {enabled: false}"
    path = config(tmp_path, fake, rules=alerts)
    # Retries that come quickly and do not give up before the 410.
    path.write_text(path.read_text().replace("max_attempts: 1", "max_attempts: 10"))
    hub = hubs(path, dispatch=True)
    hub.post(1)
    wait_for(lambda: len(slack_texts(fake)) >= 2, timeout=FIRST_DELIVERY, what="two alerts")
    texts = slack_texts(fake)
    assert texts[0].startswith(":rotating_light: *crm failed 5 times in a row*")
    assert "receiver answered HTTP 503" in texts[0] or "503" in texts[0]
    assert texts[1].startswith(":rotating_light: *crm is disabled*")


def test_stalled_while_a_delivery_hangs_and_resolved_when_it_lands(tmp_path: Path, fake, hubs) -> None:
    path = config(tmp_path, fake, rules="failing: {enabled: false}")
    path.write_text(
        path.read_text()
        .replace("alerts:\n", "alerts:\n  stalled_after: 2s\n")
        .replace("max_attempts: 1}", "max_attempts: 1}\n    timeout: 120")
    )
    fake.hold("/crm", 120)
    hub = hubs(path, dispatch=True)
    try:
        hub.post(1)
        wait_for(lambda: fake.waiting("/crm") == 1, timeout=FIRST_DELIVERY, what="the held delivery")
        wait_for(lambda: slack_texts(fake), timeout=60, what="the stalled alert")
    finally:
        fake.release("/crm")
    wait_for(lambda: len(slack_texts(fake)) >= 2, timeout=60, what="the resolved message")
    texts = slack_texts(fake)
    assert texts[0].startswith(":rotating_light: *delivery stalled (delivery)*"), texts
    assert texts[1].startswith(":white_check_mark: *delivery moves again (delivery)*"), texts


def test_silent_source_alerts_and_resolves_when_a_submission_arrives(tmp_path: Path, fake, hubs) -> None:
    hub = hubs(config(tmp_path, fake, source_extra="expect_every: 1s"))
    (message,) = wait_for(lambda: slack_texts(fake), timeout=30, what="the silence alert")
    assert message.startswith(":rotating_light: *demo went silent*")
    assert "No submission from `demo` in 1s" in message
    hub.post(1)
    wait_for(lambda: len(slack_texts(fake)) == 2, timeout=30, what="the resolved message")
    assert slack_texts(fake)[1].startswith(":white_check_mark: *demo sends submissions again*")


def test_a_failing_alert_destination_does_not_alert_about_itself(tmp_path: Path, fake, hubs) -> None:
    fake.script(SLACK, *[(500, {}, "internal_error")] * 200)
    path = config(tmp_path, fake, rules="failing: {enabled: true}")
    path.write_text(
        path.read_text().replace("horizon: 30", "horizon: 3").replace("initial: 1", "initial: 0.2")
    )
    hub = hubs(path)
    good = path.read_text()
    path.write_text(good.replace("to: [crm]", "to: [crn]"))
    assert hub.holder.reload() is False
    wait_for(
        lambda: hub.count("SELECT count(*) FROM alert_outbox WHERE status='dropped'") == 1,
        timeout=30,
        what="the alert to be dropped after ops-slack's horizon",
    )
    tries = len(fake.received(SLACK))
    assert 2 <= tries <= 30, tries  # retried with backoff, not in a tight loop
    assert hub.count("SELECT count(*) FROM alert_outbox") == 1  # no alert about the alert
    assert hub.count("SELECT count(*) FROM deliveries") == 0
    assert hub.count("SELECT count(*) FROM attempts") == 0


def test_an_owed_alert_is_sent_after_a_restart_once(tmp_path: Path, fake, hubs) -> None:
    fake.script(SLACK, (500, {}, "internal_error"))
    path = config(tmp_path, fake)
    first = hubs(path)
    good = path.read_text()
    path.write_text(good.replace("to: [crm]", "to: [crn]"))
    assert first.holder.reload() is False
    wait_for(lambda: fake.received(SLACK), timeout=30, what="the first, failed, try")
    first.server.stop()
    path.write_text(good)
    second = hubs(path)
    wait_for(lambda: len(slack_texts(fake)) >= 2, timeout=30, what="the owed alert and the all-clear")
    texts = slack_texts(fake)
    assert texts[0].startswith(":rotating_light: *connectors.yaml reload rejected*")
    assert "unknown destination" in texts[0]
    assert texts[1].startswith(":white_check_mark: *connectors.yaml reloaded*")
    sent = "SELECT count(*) FROM alert_outbox WHERE status='sent'"
    wait_for(lambda: second.count(sent) == 2, timeout=10, what="both recorded as sent")
    assert len(slack_texts(fake)) == 2


def test_send_test_alert_posts_a_sample_or_prints_it(tmp_path: Path, fake, capsys) -> None:
    path = config(tmp_path, fake)
    assert cli(["send-test", "--alert", "dead_letters", "--config", str(path), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith("--- ops-slack (slack)\n:rotating_light: *TEST: 500 submissions failed")
    assert fake.received(SLACK) == []
    assert cli(["send-test", "--alert", "silent", "--config", str(path)]) == 0
    assert capsys.readouterr().out.strip() == "alert silent -> ops-slack: sent"
    (text,) = slack_texts(fake)
    assert text.startswith(":rotating_light: *TEST: contact-form went silent*")


def test_hookhub_serve_runs_the_alerts_and_hears_a_rejected_edit(tmp_path: Path, fake) -> None:
    from tests.harness import ServeProcess

    path = config(tmp_path, fake, source_extra="expect_every: 1s")
    hub = ServeProcess(path, tmp_path / "data", tmp_path / "prefect", tmp_path / "serve.log")
    try:
        wait_for(lambda: slack_texts(fake), timeout=60, what="the silence alert from hookhub serve")
        path.write_text(path.read_text().replace("to: [crm]", "to: [crn]"))  # watched: reloaded
        wait_for(
            lambda: any("reload rejected" in text for text in slack_texts(fake)),
            timeout=60,
            what="the rejected edit in Slack",
        )
    finally:
        assert hub.terminate() == 0
    rejected = next(text for text in slack_texts(fake) if "reload rejected" in text)
    assert "unknown destination 'crn'" in rejected and "connectors.yaml:" in rejected
