"""No secret, token, e-mail address or answer in any log line, at any level, in any output.

A real `hookhub serve --log-level debug` takes a Typeform submission full of marker strings (its
answers, e-mail, phone, website, hidden fields) and delivers it to one destination of every
type, whose targets answer with those markers quoted back (what a target that echoes a bad
field does) or refuse the address (SMTP). Every secret and token in the config is a marker too.
Then everything the hub wrote to stderr, and every run log, flow run and task run state it left
in Prefect, is searched for the markers.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import signal
import sqlite3
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from hub.spool.schema import SPOOL_FILE
from tests.fake_destination import FakeDestination
from tests.harness import PROVIDER_FIXTURES, free_socket, load_fixture, serve_command, wait_for

ANSWER = "mk-answer-Zq81"
EMAIL = "mk-person-Zq82@example.org"
PHONE = "+4915550008231"
WEBSITE = "https://mk-site-Zq83.example.org"
HIDDEN = "mk-hidden-Zq84"
TYPEFORM_SECRET = "mk-tf-secret-Zq85"
WHSEC_BYTES = b"mk-whsec-Zq86-bytes-long-enough"
WHSEC = "whsec_" + base64.b64encode(WHSEC_BYTES).decode()
SECRETS = {
    "slack_token": "xoxb-1234-mkZq87",
    "slack_hook": "mk-slack-Zq88",
    "sendgrid": "SG.mk-Zq89",
    "postmark": "mk-postmark-Zq90",
    "hubspot": "pat-mk-Zq91",
    "pipedrive": "mk-pipedrive-Zq92",
    "salesforce": "mk-sf-Zq93",
}
MARKERS = [
    ANSWER,
    EMAIL,
    "mk-person-Zq82",
    PHONE,
    "mk-site-Zq83",
    HIDDEN,
    TYPEFORM_SECRET,
    WHSEC.removeprefix("whsec_"),
    "mk-whsec-Zq86",
    *SECRETS.values(),
]
ECHO = json.dumps(
    {
        "ok": False,
        "error": f"invalid_field {EMAIL} {ANSWER}",
        "message": f"value {ANSWER} for {EMAIL} ({PHONE}, {WEBSITE}, {HIDDEN}) is not accepted",
        "errors": [{"message": f"{EMAIL} is invalid", "code": "INVALID_EMAIL", "field": "email"}],
    }
)
"""What every HTTP target answers: the submission's values quoted back."""

CONFIG = """
sources:
  form:
    provider: typeform
    secret: {typeform_secret}
destinations:
  hook:
    type: webhook
    url: {url}/hook
    secret: {whsec}
  flaky-hook:
    type: webhook
    url: {url}/flaky
    secret: {whsec}
    retry: {{initial: 3600}}
  slack-api:
    type: slack
    token: {slack_token}
    channel: C0123456789
    base_url: {url}/slack-api
  slack-hook:
    type: slack
    webhook_url: {url}/services/T000/B000/{slack_hook}
  file:
    type: file
    path: deliveries.jsonl
  smtp:
    type: smtp
    host: 127.0.0.1
    port: {smtp_port}
    security: none
    from: "Forms <forms@example.com>"
    to: ["{{{{ email }}}}"]
  sendgrid:
    type: sendgrid
    api_key: {sendgrid}
    base_url: {url}/sendgrid
    from: "Forms <forms@example.com>"
    to: ["{{{{ email }}}}"]
  postmark:
    type: postmark
    server_token: {postmark}
    base_url: {url}/postmark
    from: "Forms <forms@example.com>"
    to: [sales@example.com]
  hubspot:
    type: hubspot
    token: {hubspot}
    base_url: {url}/hubspot
    note: true
  pipedrive:
    type: pipedrive
    api_token: {pipedrive}
    base_url: {url}/pipedrive
  salesforce:
    type: salesforce
    base_url: {url}/salesforce
    access_token: {salesforce}
    external_id_field: Hookhub_Id__c
routes:
  - name: everything
    from: [form]
    to: [hook, flaky-hook, slack-api, slack-hook, file, smtp,
         sendgrid, postmark, hubspot, pipedrive, salesforce]
"""
DESTINATIONS = 11


class RefusingMailbox:
    """aiosmtpd handler: refuses every recipient, quoting the address (as real servers do)."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"


@pytest.fixture
def smtp_port() -> Iterator[int]:
    port = free_socket().getsockname()[1]
    controller = Controller(RefusingMailbox(), hostname="127.0.0.1", port=port)
    controller.start()
    yield port
    controller.stop()


@pytest.fixture
def fake() -> Iterator[FakeDestination]:
    destination = FakeDestination(default_body=ECHO).start()
    destination.script("/hook", (400, {}, ECHO))
    destination.script("/flaky", (500, {"Retry-After": "3600"}, ECHO))
    yield destination
    destination.stop()


def marker_submission() -> tuple[bytes, dict[str, str]]:
    """A Typeform delivery whose every answer is a marker, signed with the marker secret."""
    fixture = load_fixture(PROVIDER_FIXTURES / "typeform" / "full_event_registration.json")
    body = json.loads(fixture["body"])
    body["event_id"] = uuid.uuid4().hex
    response = body["form_response"]
    response["hidden"] = {"utm_source": HIDDEN, "referrer_email": EMAIL}
    values = {"text": ANSWER, "email": EMAIL, "phone_number": PHONE, "url": WEBSITE}
    for answer in response["answers"]:
        if answer["type"] in values:
            answer[answer["type"]] = values[answer["type"]]
    raw = json.dumps(body).encode()
    assert ANSWER.encode() in raw and EMAIL.encode() in raw and PHONE.encode() in raw
    signature = base64.b64encode(hmac.new(TYPEFORM_SECRET.encode(), raw, hashlib.sha256).digest()).decode()
    return raw, {"content-type": "application/json", "typeform-signature": f"sha256={signature}"}


def settled(spool: Path) -> bool:
    if not spool.exists():
        return False
    conn = sqlite3.connect(spool)
    try:
        rows = conn.execute("SELECT status FROM deliveries").fetchall()
    except sqlite3.OperationalError:  # not created yet
        return False
    finally:
        conn.close()
    return len(rows) == DESTINATIONS and all(s in ("delivered", "retrying", "dead") for (s,) in rows)


def prefect_record(prefect_home: Path) -> str:
    """Every run log message and run state message Prefect keeps, read from its database file."""
    conn = sqlite3.connect(prefect_home / "prefect.db")
    try:
        logs = [m for (m,) in conn.execute("SELECT message FROM log")]
        states = [
            f"{name}: {message}"
            for table in ("flow_run_state", "task_run_state")
            for name, message in conn.execute(f"SELECT name, message FROM {table}")  # noqa: S608 - ours
        ]
    finally:
        conn.close()
    return "\n".join(logs + states)


def test_no_marker_in_any_output(tmp_path: Path, fake: FakeDestination, smtp_port: int) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text(
        CONFIG.format(
            url=fake.url(""), smtp_port=smtp_port, typeform_secret=TYPEFORM_SECRET, whsec=WHSEC, **SECRETS
        ),
        encoding="utf-8",
    )
    data_dir, prefect_home, log = tmp_path / "data", tmp_path / "prefect", tmp_path / "stderr.log"
    port = free_socket().getsockname()[1]
    env = {**os.environ, "PREFECT_HOME": str(prefect_home)}
    env.pop("HOOKHUB_LOG_FORMAT", None)
    command = serve_command(config, data_dir, port, "--log-level", "debug")
    with log.open("wb") as stderr:
        proc = subprocess.Popen(
            command, env=env, stderr=stderr, stdout=subprocess.DEVNULL, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{port}"
        wait_for(lambda: _healthy(url, proc, log), 60, what="hookhub serve to answer")
        body, headers = marker_submission()
        first = httpx.post(f"{url}/hooks/form", content=body, headers=headers, timeout=30)
        assert first.json()["status"] == "accepted", first.text
        again = httpx.post(f"{url}/hooks/form", content=body, headers=headers, timeout=30)
        assert again.json()["status"] == "duplicate", again.text
        forged = httpx.post(
            f"{url}/hooks/form", content=body.replace(b"Zq81", b"Zq80"), headers=headers, timeout=30
        )
        assert forged.status_code == 401
        wait_for(lambda: settled(data_dir / SPOOL_FILE), 240, what="every delivery to settle")
        wait_for(lambda: "batch done" in log.read_text(), 30, what="the batch's line")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, log.read_text()

    output = log.read_text()
    lines = [line for line in output.splitlines() if not line.startswith("hookhub: listening")]
    entries = [json.loads(line) for line in lines]  # JSON: stderr is not a terminal
    events = {e.get("event") for e in entries}
    assert {"received", "rejected", "delivery", "batch_done"} <= events, events
    assert {e["destination"] for e in entries if e.get("event") == "delivery"} >= {
        "hook",
        "flaky-hook",
        "smtp",
    }
    assert any(e["logger"].startswith("prefect") for e in entries), "Prefect's records are in the same log"
    prefect = prefect_record(prefect_home)
    # The run summaries and the Failed states are there (so the search below covers them).
    assert "dead (" in prefect and "deliveries to hook dead" in prefect, prefect
    everything = (output + prefect).lower()
    leaked = [marker for marker in MARKERS if marker.lower() in everything]
    assert not leaked, f"{leaked} in the output:\n" + "\n".join(
        line
        for line in (output + "\n" + prefect).splitlines()
        if any(m.lower() in line.lower() for m in leaked)
    )
    # The submission really carried the markers to the targets (so the search above means something).
    assert any(ANSWER.encode() in r.body for r in fake.requests)
    assert ANSWER in (data_dir / "deliveries.jsonl").read_text()


def _healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> bool:
    assert proc.poll() is None, f"hookhub serve exited: {log.read_text(errors='replace')}"
    try:
        return httpx.get(f"{url}/healthz", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False
