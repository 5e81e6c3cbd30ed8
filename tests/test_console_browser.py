"""The console in a real headless browser (Debian's chromium through Selenium and chromedriver)
against a real hub: dispatcher, Prefect, a loopback CRM that fails once and a loopback Slack.

The browser logs in through the "View in hookhub" link of a Slack message the hub sent,
searches a submission by e-mail, opens it, sees the failed attempt, replays the dead letter and
sees it delivered, then pauses and resumes the destination. Screenshots of the main pages are
written to docs/console/ when HOOKHUB_SCREENSHOTS=1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from connectors._schemes import signed_request
from hub.runtime import prepare_sources
from tests.fake_destination import FakeDestination
from tests.harness import REPO, start_hub, wait_for
from tests.test_console_support import PASSWORD, PASSWORD_HASH, SECRETS, write

FIRST_DELIVERY = 180.0  # Prefect's ephemeral server starts with the session's first flow run
SLACK = "/services/T0000TEST/B0000TEST/console"
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
SHOTS = REPO / "docs" / "console"


def _install_chromium() -> str | None:
    """Install Debian's chromium and chromedriver when missing; the reason if that is impossible."""
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return None
    if shutil.which("apt-get") is None or os.geteuid() != 0:
        return "chromium is not installed and apt-get cannot run here (not Debian, or not root)"
    steps = [["apt-get", "update"], ["apt-get", "install", "-y", "chromium", "chromium-driver"]]
    for step in steps:
        done = subprocess.run(step, capture_output=True, text=True, timeout=900, check=False)
        if done.returncode != 0:
            return f"could not install chromium: {' '.join(step)} failed: {done.stderr.strip()[-300:]}"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    why = _install_chromium()
    if why:
        pytest.skip(why)
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extras")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1280,1000"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()


def _post(holder: Any, base_url: str, email: str, name: str) -> str:
    source = prepare_sources(holder.current)["demo"]
    url = f"{base_url}/hooks/demo"
    at = time.time()
    payload = {
        "type": "form.submission.created",
        "timestamp": datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z"),
        "data": {
            "form_id": "frm_open_day",
            "form_name": "Open day",
            "submission_id": "sub_" + uuid.uuid4().hex[:12],
            "submitted_at": datetime.fromtimestamp(int(at), UTC).isoformat().replace("+00:00", "Z"),
            "respondent_email": email,
            "answers": [
                {"label": "Full name", "type": "name", "value": name},
                {"label": "Email", "type": "email", "value": email},
                {"label": "Guests", "type": "number", "value": 2},
            ],
        },
    }
    request = signed_request(source.config, url, at, "msg_" + uuid.uuid4().hex, payload)
    answer = httpx.post(url, content=request.body, headers=dict(request.headers), timeout=30)
    assert answer.status_code == 200, answer.text
    return str(answer.json()["id"])


def _delivery_status(spool: Path, inbox_id: str, destination: str) -> str | None:
    import sqlite3

    conn = sqlite3.connect(spool)
    try:
        row = conn.execute(
            "SELECT status FROM deliveries WHERE inbox_id=? AND destination=?", (inbox_id, destination)
        ).fetchone()
        return row[0] if row else None
    finally:
        conn.close()


def _slack_link(fake: FakeDestination, inbox_id: str) -> str:
    for request in fake.received(SLACK):
        for link in re.findall(r"<(http[^|>]+/submissions/[^|>]+)\|View in hookhub>", request.body.decode()):
            if link.endswith(inbox_id):
                return str(link)
    raise AssertionError("no Slack message with a View in hookhub link to this submission")


@pytest.fixture
def fake() -> Iterator[FakeDestination]:
    """The loopback CRM (/crm) and Slack (SLACK) the hub delivers to."""
    destination = FakeDestination().start()
    try:
        yield destination
    finally:
        destination.stop()


def test_console_in_a_browser(tmp_path: Path, fake: FakeDestination, browser: Any) -> None:
    from selenium.webdriver.common.by import By

    config = write(tmp_path / "connectors.yaml", crm_url=fake.url("/crm"))
    text = config.read_text().replace(SECRETS["slack"], fake.url(SLACK))
    text = text.replace("    to: [crm]\n", "    to: [crm, team-slack]\n")
    text = text.replace(
        "destinations:\n", "destinations:\n  archive:\n    type: file\n    path: archive.jsonl\n", 1
    )
    config.write_text(text)
    fake.script("/crm", (400, {}, '{"error": "email already belongs to another contact"}'))
    hub, server = start_hub(config, tmp_path / "data", environ={"HASH": PASSWORD_HASH}, dispatch=True)
    try:
        # The links in messages point at this hub (its port is known only now).
        _set_public_base_url(config, text, server.url)
        assert hub.config.reload(), hub.config.last_error
        chloe = _post(hub.config, server.url, "chloe.martin@example.com", "Chloé Martin")
        wait_for(
            lambda: _delivery_status(hub.spool_path, chloe, "crm") == "dead", FIRST_DELIVERY, 0.2, "crm dead"
        )
        wait_for(
            lambda: _delivery_status(hub.spool_path, chloe, "team-slack") == "delivered", 60, 0.2, "slack"
        )
        _post(hub.config, server.url, "ada@example.org", "Ada Lovelace")

        # The Slack message's link: through the login, onto the submission's page.
        browser.get(_slack_link(fake, chloe))
        assert "/admin/login" in browser.current_url
        browser.find_element(By.NAME, "password").send_keys(PASSWORD)
        browser.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        wait_for(
            lambda: browser.current_url == f"{server.url}/admin/submissions/{chloe}", 10, 0.1, "the landing"
        )
        assert "Chloé Martin" in browser.page_source

        # Search by e-mail, open the one found.
        browser.get(f"{server.url}/admin/submissions")
        browser.find_element(By.NAME, "email").send_keys("CHLOE.martin@example.com")
        browser.find_element(By.CSS_SELECTOR, "fieldset button[type=submit]").click()
        wait_for(lambda: "email=CHLOE" in browser.current_url, 10, 0.1, "the search")
        rows = browser.find_elements(By.CSS_SELECTOR, "table tr td:first-child a")
        assert len(rows) == 1, browser.page_source
        rows[0].click()
        wait_for(lambda: browser.current_url.endswith(f"/admin/submissions/{chloe}"), 10, 0.1, "the page")
        section = browser.find_element(By.ID, "delivery-crm")
        assert "dead" in section.text and "email already belongs to another contact" in section.text
        assert "400" in section.text
        _shot(browser, "submission.png")

        browser.get(f"{server.url}/admin/deadletters")
        browser.find_element(By.LINK_TEXT, "Preview replay").click()
        assert "Replay preview: 1 dead letter(s)" in browser.page_source
        _shot(browser, "deadletters.png")
        browser.get(f"{server.url}/admin/submissions/{chloe}")

        # Replay the dead letter; the CRM now answers 200.
        _click(browser, "#delivery-crm button")
        _see(browser, By.CSS_SELECTOR, ".flash", "put back in the queue")

        def delivered() -> bool:
            browser.refresh()
            return "delivered" in _text(browser, By.ID, "delivery-crm")

        wait_for(delivered, 120, 0.5, "the replayed delivery to show as delivered")
        assert len(fake.received("/crm")) == 3  # the failed try, Ada's, the replay

        # Resend the delivered one: the confirmation says it will be sent again.
        _click(browser, "#delivery-crm button")
        _see(browser, By.TAG_NAME, "main", "sent again")
        _click(browser, "main button[type=submit]")
        _see(browser, By.CSS_SELECTOR, ".flash", "queued to be sent again")
        wait_for(lambda: len(fake.received("/crm")) == 4, 120, 0.2, "the resend to reach the CRM")
        resent = fake.received("/crm")[-1].webhook_id
        assert resent != fake.received("/crm")[-2].webhook_id  # a new sending, its own idempotency key

        # Send it to a destination no route gave it.
        browser.find_element(By.CSS_SELECTOR, "select[name=destination]").send_keys("archive")
        browser.find_element(By.XPATH, "//button[normalize-space()='Send…']").click()
        _click(browser, "main button[type=submit]")
        wait_for(
            lambda: _delivery_status(hub.spool_path, chloe, "archive") == "delivered", 120, 0.2, "archive"
        )

        # Pause and resume the CRM.
        browser.get(f"{server.url}/admin/destinations")
        _click(browser, "#destination-crm button")
        _see(browser, By.ID, "destination-crm", "paused")
        paused_post = _post(hub.config, server.url, "grace@example.net", "Grace Hopper")
        wait_for(lambda: _delivery_status(hub.spool_path, paused_post, "team-slack") == "delivered", 60, 0.2)
        assert _delivery_status(hub.spool_path, paused_post, "crm") == "pending"  # no attempt while paused
        _click(browser, "#destination-crm button")
        _see(browser, By.ID, "destination-crm", "active")
        wait_for(lambda: _delivery_status(hub.spool_path, paused_post, "crm") == "delivered", 60, 0.2)
        _shot(browser, "destinations.png")
        browser.get(f"{server.url}/admin/")
        _see(browser, By.TAG_NAME, "main", "Dispatcher: running; Prefect: reachable")  # Hub.health
        _shot(browser, "overview.png")
        browser.get(f"{server.url}/admin/submissions")
        _shot(browser, "submissions.png")
    finally:
        server.stop()


def _text(browser: Any, by: str, value: str) -> str:
    """The element's text, or '' while the page is being replaced (a click or refresh under way)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException

    try:
        return str(browser.find_element(by, value).text)
    except (NoSuchElementException, StaleElementReferenceException):
        return ""


def _see(browser: Any, by: str, value: str, text: str) -> None:
    wait_for(lambda: text in _text(browser, by, value), 10, 0.1, repr(text))


def _click(browser: Any, css: str) -> None:
    """Click once the element is on the page (a click or refresh before may still be replacing it)."""
    from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
    from selenium.webdriver.common.by import By

    def clicked() -> bool:
        try:
            browser.find_element(By.CSS_SELECTOR, css).click()
        except (NoSuchElementException, StaleElementReferenceException):
            return False
        return True

    wait_for(clicked, 10, 0.1, f"{css} to click")


def _set_public_base_url(config: Path, text: str, url: str) -> None:
    config.write_text(text.replace("server:\n", f"server:\n  public_base_url: {url}\n", 1))


def _shot(browser: Any, name: str) -> None:
    if os.environ.get("HOOKHUB_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        browser.save_screenshot(str(SHOTS / name))
