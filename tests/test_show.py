"""One submission (hub/spool/detail.py) from a real spool: answers, the raw request without its
credentials, route verdicts under the current config, and each delivery with every attempt."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from connectors import get_connector
from hub.config.loader import load_config
from hub.config.models import HubConfig
from hub.spool import delivery_outcomes
from hub.spool.detail import SubmissionNotFound, submission_detail
from hub.spool.rows import Decision
from hub.spool.transactions import open_spool
from tests.spool_fill import store

CONFIG = """
sources:
  tf: {provider: typeform, secret: show-secret}
  jf: {provider: jotform, secret: show-secret}
destinations:
  crm: {type: file, path: crm.jsonl}
  chat: {type: file, path: chat.jsonl}
  other: {type: file, path: other.jsonl}
routes:
  - {name: all, from: [tf], to: [crm, chat]}
  - {name: also-crm, from: ["*"], to: [crm, other]}
  - {name: jotform-only, from: [jf], to: [other]}
  - {name: big, from: [tf], when: "email endswith '@big.example'", to: [other]}
  - {name: broken, from: [tf], when: "answers['plan'] > 2", to: [other]}
"""
SIGNATURE = "sha256=c2lnbmF0dXJlLW9mLXRoZS1ib2R5"
HANDSHAKE = "handshake-key-in-the-body"
URL_TOKEN = "url-token-value-0123456789"


@pytest.fixture
def config(tmp_path: Path) -> HubConfig:
    path = tmp_path / "connectors.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    return load_config(path)


@pytest.fixture
def conn(tmp_path: Path) -> sqlite3.Connection:
    conn = open_spool(tmp_path / "spool.db")
    headers = {"content-type": "application/json", "typeform-signature": SIGNATURE, "user-agent": "Typeform"}
    body = json.dumps({"form_response": {"token": "resp-1", "answers": []}, "HandshakeKey": HANDSHAKE})
    store(
        conn,
        "S1",
        100.0,
        email="chloe@example.com",
        name="Chloé Martin",
        destinations=("crm", "chat"),
        body=body.encode(),
        headers=json.dumps(headers),
        url=f"http://hub/hooks/tf?token={URL_TOKEN}&lang=fr",
    )
    delivery_outcomes.record(
        conn,
        110.0,
        [
            Decision(
                "S1",
                "crm",
                "retrying",
                "retry",
                next_attempt_at=170.0,
                status_code=503,
                error="HTTP 503: busy",
            ),
            Decision("S1", "chat", "delivered", "delivered", status_code=200, remote_id="1712345678.000100"),
        ],
    )
    delivery_outcomes.record(
        conn, 170.0, [Decision("S1", "crm", "dead", "failed", status_code=400, error="HTTP 400: bad")]
    )
    return conn


def test_detail_shows_answers_attempts_and_remote_ids(conn: sqlite3.Connection, config: HubConfig) -> None:
    detail = submission_detail(conn, "S1", config, get_connector("typeform"))
    assert detail.submission is not None
    assert detail.submission["email"] == "chloe@example.com"
    assert detail.submission["answers"][0]["value"] == "pro"
    assert (detail.state, detail.source, detail.event_id) == ("failed", "tf", "ev-S1")
    crm, chat = sorted(detail.deliveries, key=lambda d: d.destination != "crm")
    assert (chat.status, chat.remote_id, chat.delivered_at) == ("delivered", "1712345678.000100", 110.0)
    assert (crm.status, crm.attempts, crm.last_status_code, crm.next_attempt_at) == ("dead", 2, 400, None)
    assert [(a.attempt, a.at, a.outcome, a.status_code, a.error) for a in crm.history] == [
        (1, 110.0, "retry", 503, "HTTP 503: busy"),
        (2, 170.0, "failed", 400, "HTTP 400: bad"),
    ]


def test_raw_request_has_no_credentials(conn: sqlite3.Connection, config: HubConfig) -> None:
    raw = submission_detail(conn, "S1", config, get_connector("typeform")).raw
    shown = raw.model_dump_json()
    for secret in (SIGNATURE, HANDSHAKE, URL_TOKEN):
        assert secret not in shown
    assert raw.headers["user-agent"] == "Typeform"
    assert "lang=fr" in raw.url
    assert json.loads(raw.body)["form_response"]["token"] == "[redacted]"  # named like a credential
    assert sorted(raw.redacted) == [
        "body HandshakeKey",
        "body token",
        "header typeform-signature",
        "query token",
    ]


def test_routes_say_why_they_did_not_match(conn: sqlite3.Connection, config: HubConfig) -> None:
    routes = {r.route: r for r in submission_detail(conn, "S1", config).routes or []}
    assert (routes["all"].matched, routes["all"].destinations) == (True, ["crm", "chat"])
    # crm was taken by the first route: the first route naming a destination wins.
    assert (routes["also-crm"].matched, routes["also-crm"].destinations) == (True, ["other"])
    assert routes["jotform-only"].why_not == "source 'tf' is not in from ['jf']"
    assert routes["big"].why_not == "`when` is false: email endswith '@big.example'"
    assert (routes["broken"].why_not or "").startswith("`when` could not be evaluated: ")
    assert submission_detail(conn, "S1").routes is None  # no config: nothing judged


def test_an_unknown_id_says_so(conn: sqlite3.Connection) -> None:
    with pytest.raises(SubmissionNotFound, match="no submission with id 'NOSUCH'"):
        submission_detail(conn, "NOSUCH")
