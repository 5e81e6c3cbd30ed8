"""Reconciliation through a running hub: a loopback Typeform API (built from the facts in
docs/providers/typeform.md), a loopback CRM and alert channel, real Prefect runs, a real SQLite spool.

Webhooks for responses 1-5 and 8 arrive, 6 and 7 do not; `hookhub reconcile` stores exactly 6 and 7,
each delivered once; a late webhook for 6 is answered `duplicate` and not delivered; 6 deleted at
Typeform changes nothing; a disabled webhook raises one alert. The scheduled run at the hub's start
is what records the source's first watermark.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import math
import sqlite3
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hub.alerts.evaluator import attach_alerts
from hub.cli import main as cli
from hub.dispatch import attach_dispatcher
from hub.runtime import ConfigHolder
from hub.server import Hub
from hub.submission import iso_utc
from tests.fake_destination import FakeDestination, json_body
from tests.harness import RunningServer, serve_app, wait_for

SECRET = "typeform-webhook-secret"
TOKEN = "tfp_hookhubTestToken123"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
FORM = "u6nXL7"
PUBLIC_URL = "https://hub.example.org/hooks/contact-form"
FIELDS = [
    {"id": "fEmail", "ref": "email", "type": "email", "title": "Email"},
    {"id": "fName", "ref": "name", "type": "short_text", "title": "Your name"},
]
DELIVERY = 180.0
"""Seconds to wait for a delivery: the hub's Prefect starts in the background on this 2-core machine."""


def _answers(n: int) -> list[dict[str, Any]]:
    return [
        {
            "type": "email",
            "email": f"person{n}@example.org",
            "field": {"id": "fEmail", "type": "email", "ref": "email"},
        },
        {
            "type": "text",
            "text": f"Person {n}",
            "field": {"id": "fName", "type": "short_text", "ref": "name"},
        },
    ]


def _instant(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class FakeTypeform:
    """GET /forms/{id}, /forms/{id}/responses (newest first, `before` paging, at most 3 a page) and
    /forms/{id}/webhooks, for one form, behind a bearer token."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.items: dict[str, dict[str, Any]] = {}
        self.webhook_enabled = True
        self.calls: list[str] = []

    def add(self, n: int, submitted_at: float) -> None:
        at = iso_utc(datetime.fromtimestamp(math.floor(submitted_at), UTC))
        with self.lock:
            self.items[f"tok{n}"] = {
                "landing_id": f"tok{n}",
                "token": f"tok{n}",
                "response_id": f"tok{n}",
                "landed_at": at,
                "submitted_at": at,
                "metadata": {"platform": "other", "browser": "default"},
                "hidden": {},
                "calculated": {"score": 0},
                "answers": _answers(n),
            }

    def webhook_body(self, n: int) -> bytes:
        item = self.items[f"tok{n}"]
        response = {
            "form_id": FORM,
            "token": item["token"],
            "landed_at": item["landed_at"],
            "submitted_at": item["submitted_at"],
            "hidden": {},
            "calculated": {"score": 0},
            "definition": {"id": FORM, "title": "Contact us", "fields": FIELDS},
            "answers": item["answers"],
        }
        return json.dumps(
            {"event_id": f"01JEVENT{n:04d}", "event_type": "form_response", "form_response": response}
        ).encode()

    async def handle(self, request: Request) -> JSONResponse:
        with self.lock:
            self.calls.append(request.url.path)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"code": "AUTHENTICATION_FAILED"}, status_code=401)
        rest = request.path_params["rest"]
        if rest == "":
            return JSONResponse({"id": FORM, "title": "Contact us", "fields": FIELDS})
        if rest == "/webhooks":
            hook = {
                "id": "wh1",
                "tag": "hookhub",
                "url": PUBLIC_URL + "?t=1",
                "enabled": self.webhook_enabled,
            }
            return JSONResponse({"items": [hook]})
        assert rest == "/responses", rest
        query = request.query_params
        # Typeform takes UTC to the second without an offset (docs/providers/typeform.md).
        since, until = (datetime.fromisoformat(query[k]).replace(tzinfo=UTC) for k in ("since", "until"))
        with self.lock:
            chosen = sorted(
                (i for i in self.items.values() if since <= _instant(i["submitted_at"]) <= until),
                key=lambda i: (i["submitted_at"], i["token"]),
                reverse=True,
            )
        size = min(int(query["page_size"]), 3)
        if "before" in query:
            tokens = [i["token"] for i in chosen]
            chosen = chosen[tokens.index(query["before"]) + 1 :]
        page = chosen[:size]
        return JSONResponse(
            {"total_items": len(chosen), "page_count": max(1, math.ceil(len(chosen) / size)), "items": page}
        )

    def app(self) -> Starlette:
        return Starlette(routes=[Route(f"/forms/{FORM}{{rest:path}}", self.handle)])


def _config(path: Path, api: str, crm: str, ops: str) -> Path:
    path.write_text(
        f"""
sources:
  contact-form:
    provider: typeform
    secret: {SECRET}
    public_url: {PUBLIC_URL}
    reconcile:
      every: 1h
      lookback: 1d
      settle: 1s
      form_id: {FORM}
      credentials: {{token: "${{TF_TOKEN}}"}}
      api_base_url: {api}
destinations:
  crm: {{type: webhook, url: "{crm}", secret: {WHSEC}, retry: {{initial: 1, max_delay: 2}}}}
  ops: {{type: webhook, url: "{ops}", secret: {WHSEC}}}
routes:
  - {{name: leads, from: contact-form, to: [crm]}}
alerts:
  to: [ops]
  check_every: 1s
  throttle: 1s
""",
        encoding="utf-8",
    )
    return path


class RunningHub:
    def __init__(self, config: Path, data_dir: Path) -> None:
        self.config, self.data_dir = config, data_dir
        self.hub = Hub(
            config=ConfigHolder(config, environ={"TF_TOKEN": TOKEN}), data_dir=data_dir, watch_config=False
        )
        attach_dispatcher(self.hub)
        attach_alerts(self.hub)
        self.server: RunningServer = serve_app(self.hub.app())

    def post(self, body: bytes) -> dict[str, Any]:
        digest = base64.b64encode(hmac.new(SECRET.encode(), body, hashlib.sha256).digest()).decode()
        headers = {"content-type": "application/json", "typeform-signature": f"sha256={digest}"}
        answer = httpx.post(
            f"{self.server.url}/hooks/contact-form", content=body, headers=headers, timeout=30
        )
        assert answer.status_code == 200, answer.text
        result: dict[str, Any] = answer.json()
        return result

    def rows(self, sql: str, *args: object) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.hub.spool_path)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()

    def reconcile(self, capsys: pytest.CaptureFixture[str], *extra: str) -> str:
        code = cli(
            [
                "reconcile",
                "contact-form",
                "--config",
                str(self.config),
                "--data-dir",
                str(self.data_dir),
                *extra,
            ]
        )
        out = capsys.readouterr().out
        assert code == 0, out
        return out


@pytest.fixture
def world(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[FakeTypeform, FakeDestination, RunningHub]]:
    monkeypatch.setenv("TF_TOKEN", TOKEN)  # for the CLI, which reads the config as the hub does
    api = FakeTypeform()
    api_server = serve_app(api.app())
    sinks = FakeDestination().start()
    config = _config(tmp_path / "connectors.yaml", api_server.url, sinks.url("/crm"), sinks.url("/ops"))
    running = RunningHub(config, tmp_path / "data")
    try:
        yield api, sinks, running
    finally:
        running.server.stop()
        sinks.stop()
        api_server.stop()


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def records() -> Iterator[Records]:
    """Every record of hookhub.reconcile, with its structured fields, however the hub set up logging."""
    logger, handler = logging.getLogger("hookhub.reconcile"), Records()
    level = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(level)


def _delivered(sinks: FakeDestination) -> list[dict[str, Any]]:
    return [json_body(r) for r in sinks.received("/crm")]


def _alerts(sinks: FakeDestination, kind: str) -> list[dict[str, Any]]:
    return [a for a in (json_body(r) for r in sinks.received("/ops")) if a.get("kind") == kind]


def test_reconciliation_delivers_exactly_the_missed_responses_once(
    world: Any, capsys: pytest.CaptureFixture[str], records: Records
) -> None:
    api, sinks, hub = world
    # The scheduled run at the start lists the (still empty) form and records the first watermark.
    wait_for(
        lambda: hub.rows("SELECT last_outcome, webhook_state FROM reconcile_state") == [("ok", "ok")],
        timeout=DELIVERY,
        what="the scheduled reconcile run at the hub's start",
    )
    started = time.time()
    for n in range(1, 9):
        api.add(n, started - 3600 + n * 60)
    for n in (1, 2, 3, 4, 5, 8):
        assert hub.post(api.webhook_body(n))["status"] == "accepted"
    wait_for(lambda: len(_delivered(sinks)) == 6, timeout=DELIVERY, what="the six webhooks delivered")

    out = hub.reconcile(capsys, "--since", "1d")
    assert "8 response(s) submitted" in out and "2 missing from the spool" in out, out
    assert "response tok6" in out and "response tok7" in out and "webhook: ok" in out
    wait_for(lambda: len(_delivered(sinks)) == 8, timeout=DELIVERY, what="responses 6 and 7 delivered")
    reconciled = {d["metadata"]["token"]: d for d in _delivered(sinks)[6:]}
    assert sorted(reconciled) == ["tok6", "tok7"]
    assert all(d["metadata"]["origin"] == "reconciled" for d in reconciled.values())
    assert reconciled["tok6"]["email"] == "person6@example.org"
    assert [a["label"] for a in reconciled["tok6"]["answers"]] == ["Email", "Your name"]

    # A late webhook for 6: the receiver answers duplicate (the reconciled row's id); a new one for 9
    # goes through after it, so once 9 is delivered the dispatcher has had its chance to send 6 again.
    late = hub.post(api.webhook_body(6))
    assert (late["status"], late["id"]) == ("duplicate", reconciled["tok6"]["id"])
    api.add(9, time.time() - 60)
    assert hub.post(api.webhook_body(9))["status"] == "accepted"
    wait_for(lambda: len(_delivered(sinks)) == 9, timeout=DELIVERY, what="response 9 delivered")
    tokens = sorted(d["metadata"]["token"] for d in _delivered(sinks))
    assert tokens == [f"tok{n}" for n in range(1, 10)]

    # 6 deleted at Typeform, and the webhook switched off there: nothing stored changes, one alert.
    with api.lock:
        del api.items["tok6"]
    api.webhook_enabled = False
    wait_for(
        lambda: hub.rows("SELECT count(*) FROM inbox WHERE state NOT IN ('done', 'skipped')") == [(0,)],
        timeout=DELIVERY,
        what="every submission settled",
    )
    before = hub.rows("SELECT id, state, response_key FROM inbox ORDER BY id")
    out = hub.reconcile(capsys, "--since", "1d")
    assert "0 missing from the spool" in out and "webhook: disabled" in out, out
    assert hub.rows("SELECT id, state, response_key FROM inbox ORDER BY id") == before
    wait_for(lambda: _alerts(sinks, "webhook"), timeout=60, what="the webhook alert")
    hub.reconcile(capsys, "--since", "1d")  # still disabled: no second alert
    mark = hub.rows("SELECT value FROM alert_watermarks WHERE name = 'dead_letters'")[0][0]
    wait_for(
        lambda: hub.rows("SELECT value FROM alert_watermarks WHERE name = 'dead_letters'")[0][0] > mark + 1,
        timeout=60,
        what="the alert rules evaluated again after the second run",
    )
    [alert] = _alerts(sinks, "webhook")
    assert alert["key"] == "contact-form" and alert["state"] == "firing"
    assert "disabled" in alert["title"] and TOKEN not in json.dumps(alert)
    [missed] = _alerts(sinks, "reconciled")
    assert missed["count"] == 2 and "arrived only through reconciliation" in missed["summary"]
    assert len(_delivered(sinks)) == 9
    # What reconciliation logged names runs and counts, never the token or a respondent.
    logged = [str(r.__dict__) for r in records.records]
    assert any("'listed': 8" in line for line in logged), logged
    assert not [line for line in logged if TOKEN in line or "person6@example.org" in line]
