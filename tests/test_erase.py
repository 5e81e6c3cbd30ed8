"""`hookhub erase` over a real running hub: the person's data leaves every file of the data dir.

A real uvicorn hub with its dispatcher, real Prefect flow runs and alerts, and a loopback fake
destination that delivers, fails once (a retry whose stored error quotes the person), refuses
(a dead letter quoting the person) and takes the dead-letter alert. Two people submit; one is
erased; then every file of the data dir is read as bytes and searched for their e-mail, name
and answers in every encoding SQLite or JSON could store them in. The other person's data
stays and is still delivered.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import os
import sqlite3
import time
from pathlib import Path
from urllib.parse import quote, quote_plus

import httpx
import pytest

from hub.alerts.evaluator import attach_alerts
from hub.cli import main as cli
from hub.dispatch import attach_dispatcher
from hub.runtime import ConfigHolder
from hub.server import Hub
from hub.spool.erase import erase
from hub.spool.ids import new_id
from hub.spool.transactions import open_spool
from hub.spool.writer import SpoolRecord, SpoolWriter
from tests.fake_destination import FakeDestination
from tests.harness import PROVIDER_FIXTURES, RunningServer, load_fixture, serve_app, wait_for
from tests.test_spool_writer import _hold_write_lock, _intake_rows, _release

FIXTURE = load_fixture(PROVIDER_FIXTURES / "typeform" / "full_event_registration.json")
SECRET = FIXTURE["secret"]
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FIRST_DELIVERY = 180.0  # Prefect's ephemeral server starts with the session's first flow run

RENEE = {
    "email": "renee.mueller@example.de",
    "name": "Renée Müller-Lüdenscheidt",
    "phone": "+4915123456789",
    "upload": "f138b1483ed6-passport_scan.pdf",
    "website": "müller.example.de/über-uns",
    "note": "Looking forward to it!",
}
BOB = {
    "email": "bob.builder@example.org",
    "name": "Bob Baumeister-Bauer",
    "phone": "+4917000000001",
    "upload": "a0a0a0a0a0a0-drivers_licence.pdf",
    "website": "bauer.example.org/about",
    "note": "See you in Berlin, cheers",
}
CONFIG = """
sources:
  reg: {{provider: typeform, secret: {secret}}}
destinations:
  crm: {{type: webhook, url: {crm}, secret: {whsec}}}
  flaky: {{type: webhook, url: {flaky}, secret: {whsec}, retry: {{initial: 0.2, max_delay: 0.5}}}}
  bad: {{type: webhook, url: {bad}, secret: {whsec}}}
  ops: {{type: webhook, url: {ops}, secret: {whsec}}}
routes:
  - {{name: everyone, from: [reg], to: [crm, flaky, bad]}}
alerts: {{to: [ops], check_every: 0.2s, group_window: 1s, rules: {{failing: {{enabled: false}}}}}}
"""


def body_of(person: dict[str, str], event_id: str, token: str) -> tuple[bytes, dict[str, str]]:
    """The fixture's registration with `person`'s answers, signed as Typeform signs it."""
    text: str = FIXTURE["body"]
    for key, value in person.items():
        text = text.replace(RENEE[key], value)
    text = text.replace(FIXTURE["expect"]["event_id"], event_id).replace(
        "xv16gsyy4mjlffqo9s3hvd4xmvsn8q17", token
    )
    body = text.encode("utf-8")
    signature = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
    return body, {"content-type": "application/json", "typeform-signature": f"sha256={signature}"}


def forms(value: str) -> set[bytes]:
    """Every way the bytes of `value` could sit in a file: UTF-8 and UTF-16, JSON-escaped,
    URL-encoded, Python-repr'd, lower-cased."""
    texts = {value, value.lower(), json.dumps(value)[1:-1], quote(value, safe=""), quote_plus(value)}
    texts |= {json.dumps(value, ensure_ascii=False)[1:-1], repr(value)[1:-1]}
    out: set[bytes] = set()
    for text in texts:
        out |= {text.encode("utf-8"), text.encode("utf-16-le"), text.encode("utf-16-be")}
    return out


def found_in(directory: Path, person: dict[str, str]) -> list[str]:
    """`file: value` for each of the person's values found in any file under `directory`."""
    hits = []
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        data = path.read_bytes()
        hits += [f"{path.name}: {value}" for value in person.values() if any(f in data for f in forms(value))]
    return hits


def statuses(spool: Path, person_email: str) -> dict[str, str]:
    conn = sqlite3.connect(spool)
    try:
        rows = conn.execute(
            "SELECT d.destination, d.status FROM deliveries d JOIN inbox i ON i.id = d.inbox_id"
            " WHERE instr(i.submission, ?)",
            (person_email,),
        ).fetchall()
        return dict(rows)
    finally:
        conn.close()


def post(server: RunningServer, person: dict[str, str], event_id: str, token: str) -> str:
    body, headers = body_of(person, event_id, token)
    answer = httpx.post(f"{server.url}/hooks/reg", content=body, headers=headers, timeout=30)
    assert answer.status_code == 200, answer.text
    submission_id: str = answer.json()["id"]
    return submission_id


def test_erase_leaves_no_byte_of_the_person_in_the_data_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    fake = FakeDestination().start()
    try:
        erase_a_person(tmp_path, fake, capsys)
    finally:
        fake.stop()


def erase_a_person(tmp_path: Path, fake: FakeDestination, capsys: pytest.CaptureFixture[str]) -> None:
    fake.script("/crm", (200, {}, '{"id": "crm-renee-1"}'))
    fake.script("/flaky", (503, {}, f"busy with {RENEE['name']} ({RENEE['phone']})"))
    fake.script(
        "/bad", (400, {}, json.dumps({"error": f"duplicate contact {RENEE['email']}", "note": RENEE["note"]}))
    )
    urls = {name: fake.url(f"/{name}") for name in ("crm", "flaky", "bad", "ops")}
    config = tmp_path / "connectors.yaml"
    config.write_text(CONFIG.format(secret=SECRET, whsec=WHSEC, **urls), encoding="utf-8")
    data_dir = tmp_path / "data"
    hub = Hub(config=ConfigHolder(config), data_dir=data_dir, watch_config=False)
    attach_dispatcher(hub)
    attach_alerts(hub)
    server = serve_app(hub.app())
    try:
        renee_id = post(server, RENEE, "01KVG79GJE6RRHM8TEPJ28RENE", "renee000token")
        settled = {"crm": "delivered", "flaky": "delivered", "bad": "dead"}
        wait_for(
            lambda: statuses(hub.spool_path, RENEE["email"]) == settled, FIRST_DELIVERY, what="Renée settled"
        )
        wait_for(lambda: fake.received("/ops"), 30, what="the dead-letter alert")
        post(server, BOB, "01KVG79GJE6RRHM8TEPJ2800B0B", "bob0000token")
        delivered = dict.fromkeys(("crm", "flaky", "bad"), "delivered")
        wait_for(lambda: statuses(hub.spool_path, BOB["email"]) == delivered, 60, what="Bob delivered")
        # What the test searches for is there to be found before the erasure.
        assert {hit.split(": ", 1)[1] for hit in found_in(data_dir, RENEE)} == set(RENEE.values())
        assert any(RENEE["email"] in f.body.decode() for f in fake.received("/ops"))  # the alert quoted it

        assert (
            cli(["erase", "--email", RENEE["email"].upper(), "--dry-run", "--data-dir", str(data_dir)]) == 0
        )
        assert "1 submission(s) would be erased" in capsys.readouterr().out
        assert found_in(data_dir, RENEE)  # a dry run changes nothing

        assert cli(["erase", "--email", RENEE["email"].upper(), "--data-dir", str(data_dir)]) == 0
        out = capsys.readouterr().out
        assert f"{renee_id}  source reg" in out and "1 submission(s) erased" in out
        assert "sent to crm on " in out and "their record id crm-renee-1" in out and "sent to flaky on" in out
        assert "bad: dead, never delivered" in out
        assert "erase this person in crm, flaky too" in out
        assert RENEE["email"] not in out and RENEE["name"] not in out

        assert found_in(data_dir, RENEE) == []
        # Prefect's database never had any of it: run names, parameters and logs carry ids and counts.
        assert found_in(Path(os.environ["PREFECT_HOME"]), RENEE) == []

        # Bob's data is intact, and a redelivery of Renée's event is a duplicate, not sent again.
        assert {hit.split(": ", 1)[1] for hit in found_in(data_dir, BOB)} == set(BOB.values())
        body, headers = body_of(RENEE, "01KVG79GJE6RRHM8TEPJ28RENE", "renee000token")
        again = httpx.post(f"{server.url}/hooks/reg", content=body, headers=headers, timeout=30)
        assert again.json() == {"status": "duplicate", "id": renee_id}, again.text
        later = post(server, BOB, "01KVG79GJE6RRHM8TEPJ2801B0B", "bob0001token")
        conn = open_spool(hub.spool_path)
        try:
            state = "SELECT state FROM inbox WHERE id=?"
            wait_for(
                lambda: conn.execute(state, (later,)).fetchone()[0] == "done", 60, what="Bob's 2nd delivered"
            )
            assert (
                conn.execute("SELECT count(*) FROM deliveries WHERE inbox_id=?", (renee_id,)).fetchone()[0]
                == 2
            )
        finally:
            conn.close()
        assert len(fake.received("/crm")) == 3  # Renée's redelivery was not sent

        assert cli(["erase", "--email", "nobody@example.org", "--data-dir", str(data_dir)]) == 1
        assert "no stored submission matches" in capsys.readouterr().out
        assert cli(["erase", "--email", "not-an-address", "--data-dir", str(data_dir)]) == 2
    finally:
        server.stop()
    assert found_in(data_dir, RENEE) == []


def test_erase_by_id_in_a_dry_run_reports_without_changing(tmp_path: Path) -> None:
    from hub.spool.schema import ensure_schema

    spool = tmp_path / "spool.db"
    ensure_schema(spool)
    conn = open_spool(spool)
    body, _ = body_of(BOB, "E1", "t1")
    conn.execute(
        "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, body, state)"
        " VALUES ('S1', 1.0, 'reg', 'typeform', 'E1', 'submission', ?, 'pending')",
        (body,),
    )
    report = erase(conn, submission_id="S1", now=2.0, dry_run=True)
    assert [s.id for s in report.submissions] == ["S1"] and report.dry_run
    assert conn.execute("SELECT length(body) FROM inbox").fetchone()[0] == len(body)
    assert not erase(conn, submission_id="NOSUCH", now=2.0).found
    # The console's search terms find a submission whose stored texts do not spell the address
    # (here: the Submission JSON names another); erasing it removes its terms.
    conn.execute(
        "INSERT INTO submission_terms (kind, value, received_at, inbox_id) VALUES ('email', ?, 1.0, 'S1')",
        ("alias@example.org",),
    )
    assert [s.id for s in erase(conn, email="Alias@Example.org", now=2.0, dry_run=True).submissions] == ["S1"]
    report = erase(conn, submission_id="S1", now=2.0)
    assert conn.execute("SELECT length(body), state FROM inbox").fetchone() == (0, "done")
    assert conn.execute("SELECT count(*) FROM submission_terms").fetchone()[0] == 0
    assert report.wal_checkpointed
    conn.close()


@pytest.mark.anyio
async def test_a_submission_that_passed_through_the_intake_leaves_no_byte_there_after_erase(
    tmp_path: Path,
) -> None:
    # Received while another process held the spool's write lock: committed to intake.db, moved,
    # deleted there. Its bytes linger in intake.db-wal until the erasure's checkpoint.
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    spool_path = data_dir / "spool.db"
    writer = SpoolWriter(spool_path)
    writer.start()
    try:
        holder = _hold_write_lock(spool_path)
        body, headers = body_of(RENEE, "01KVG79GJE6RRHM8TEPJ28RENE", "renee000token")
        record = SpoolRecord(
            id=new_id(), received_at=time.time(), source="reg", provider="typeform",
            event_id="01KVG79GJE6RRHM8TEPJ28RENE", kind="submission", note=None, method="POST",
            url="http://127.0.0.1/hooks/reg", headers=headers, body=body,
        )  # fmt: skip
        stored = await asyncio.wait_for(writer.store(record), 5)
        _release(holder)
        conn = open_spool(spool_path)
        try:
            wait_for(lambda: conn.execute("SELECT count(*) FROM inbox").fetchone()[0] == 1, 10, what="moved")
            await writer.probe()  # a group after the move: the writer deletes the moved rows
            wait_for(lambda: _intake_rows(spool_path) == [], 10, what="the intake emptied")
            intake_files = [p for p in data_dir.iterdir() if p.name.startswith("intake.db")]
            assert any(any(f in p.read_bytes() for f in forms(RENEE["email"])) for p in intake_files)

            erase(conn, submission_id=stored.id, now=time.time())
        finally:
            conn.close()
    finally:
        writer.stop()
    assert found_in(data_dir, RENEE) == []
