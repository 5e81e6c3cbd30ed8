"""Paperform reconciliation: the submissions listing and the webhook check against a fake API (respx).

The fake follows Paperform's OpenAPI reference (docs/providers/paperform.md, "Reconciliation"):
`GET /v1/forms/{slug_or_id}/submissions` with `limit` (at most 100), `skip`, `sort` (ASC/DESC by creation),
`after_date`/`before_date` (UTC date-times), answering `results.submissions`, `total` and `has_more`; each
submission has `id`, `form_id`, `data` by question key, `created_at_utc`; `GET /v1/forms/{id}/fields` the
form's questions (`key`, `title`, `type`, `custom_key`); `GET /v1/forms/{id}/webhooks` (`target_url`,
`triggers`), paged alike. Bearer key, 401 for another.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from pydantic import ValidationError

from connectors.base import InboundRequest, NormalizeContext
from connectors.paperform import connector
from connectors.paperform.api import PaperformReconciler, PaperformReconcileSettings
from connectors.reconciling import ReconcileFailed, Window
from hub.submission import iso_utc, parse_instant
from tests.harness import PROVIDER_FIXTURES, load_fixture
from tests.httpx_senders import respx_sender
from tests.reconcile_cases import (
    VirtualTime,
    assert_refused_without,
    assert_set_aside,
    first_answer_then,
    ids_of,
    pages_of,
    rate_limited,
)
from tests.test_provider_fixtures import FixtureSource

FORM = "pyconf-2026"
KEY = "pf_live_Q2hhbmdlTWVBZnRlclRoZVRlc3Q0242aZ"
BASE = "https://api.paperform.co/v1"
LIST_URL = f"{BASE}/forms/{FORM}/submissions"
FIELDS_URL = f"{BASE}/forms/{FORM}/fields"
HOOKS_URL = f"{BASE}/forms/{FORM}/webhooks"
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 21, tzinfo=UTC)
PUBLIC = "https://hub.example.org/hooks/paperform-pyconf"
SOURCE = FixtureSource(secrets=["s"])
FIXTURE = load_fixture(PROVIDER_FIXTURES / "paperform" / "full_event_registration.json")
NAME_FIELD = {"key": "6q4yk", "title": "Full name", "type": "text", "custom_key": None, "description": ""}


def settings(**extra: Any) -> PaperformReconcileSettings:
    return PaperformReconcileSettings.model_validate(
        {"form_id": FORM, "credentials": {"api_key": KEY}, **extra}
    )


def webhook_request(fx: dict[str, Any]) -> InboundRequest:
    headers = {k.lower(): v for k, v in fx["headers"].items()}
    return InboundRequest(fx["method"], fx["url"], headers, fx["body"].encode("utf-8"))


def item(sid: str, at: datetime, name: str) -> dict[str, Any]:
    return {
        "id": sid,
        "form_id": "5d993d4ef95cfec2483c2a29",
        "data": {"6q4yk": name},
        "device": {"ip_address": "203.0.113.9"},
        "charge": None,
        "created_at": at.strftime("%Y-%m-%d %H:%M:%S"),  # the account's zone: not read
        "account_timezone": "Europe/Berlin",
        "created_at_utc": iso_utc(at),
    }


def ok(key: str, items: list[Any], skip: int, limit: int, total: int) -> httpx.Response:
    return httpx.Response(
        200,
        json={
            "status": "ok",
            "results": {key: items},
            "total": total,
            "has_more": skip + len(items) < total,
            "limit": limit,
            "skip": skip,
        },
    )


@dataclass
class FakePaperform:
    """Paperform's listing: oldest first if sort=ASC, `limit` up to 100, dates strict, 401 for another key."""

    submissions: list[dict[str, Any]]
    fields: list[dict[str, Any]] = field(default_factory=lambda: [NAME_FIELD])
    asked: list[dict[str, str]] = field(default_factory=list)
    fields_asked: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return httpx.Response(401, json={"status": "error", "message": "Unauthenticated."})
        if request.url.path.endswith("/fields"):
            self.fields_asked += 1
            return httpx.Response(200, json={"status": "ok", "results": {"fields": self.fields}})
        query = dict(request.url.params)
        self.asked.append(query)
        limit, skip = int(query.get("limit", "20")), int(query.get("skip", "0"))
        if not 1 <= limit <= 100:
            return httpx.Response(422, json={"status": "error", "message": "limit may not exceed 100"})
        after, before = parse_instant(query["after_date"]), parse_instant(query["before_date"])
        chosen = sorted(
            (s for s in self.submissions if after < parse_instant(s["created_at_utc"]) < before),
            key=lambda s: s["created_at_utc"],
            reverse=query.get("sort", "DESC") == "DESC",
        )
        return ok("submissions", chosen[skip : skip + limit], skip, limit, len(chosen))


def many() -> FakePaperform:
    subs = [item(f"{n:024x}", SINCE + timedelta(minutes=9 * n), f"Person {n}") for n in range(250)]
    subs += [
        item("b" * 24, SINCE - timedelta(milliseconds=1), "too early"),
        item("e" * 24, UNTIL, "the next window's"),
    ]
    return FakePaperform(subs)


async def listing(fake: Any, reconciler: PaperformReconciler | None = None, **kw: Any) -> list[Any]:
    reconciler = reconciler or PaperformReconciler(sleep=VirtualTime().sleep)
    with respx.mock(assert_all_called=False) as mock:
        mock.get(LIST_URL).mock(side_effect=fake)
        mock.get(FIELDS_URL).mock(side_effect=fake)
        return await pages_of(reconciler, SOURCE, settings(**kw), Window(SINCE, UNTIL))


# -- (1) paging ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_listing_reads_every_page_once_with_the_window_as_paperform_wants_it() -> None:
    fake = many()
    pages = await listing(fake)
    ids = ids_of(pages)
    assert len(pages) == 3 and [q["skip"] for q in fake.asked] == ["0", "100", "200"]
    assert sorted(ids) == [f"{n:024x}" for n in range(250)]  # each once, none outside [since, until)
    first = fake.asked[0]
    assert (first["limit"], first["sort"]) == ("100", "ASC")
    assert (first["after_date"], first["before_date"]) == ("2026-10-31T23:59:59Z", "2026-11-21T00:00:01Z")
    assert pages[0].total == 252 and fake.fields_asked == 1  # the widened window's count; fields once
    listed = next(r for p in pages for r in p.responses if r.response_id == f"{7:024x}")
    assert listed.submitted_at == SINCE + timedelta(minutes=63)  # created_at_utc, not the account's time
    assert listed.submission.answer_map() == {"Full name": "Person 7"}
    assert (
        listed.submission.event_id == f"{7:024x}" and listed.submission.form_id == "5d993d4ef95cfec2483c2a29"
    )


@pytest.mark.anyio
async def test_an_empty_window_asks_for_no_fields() -> None:
    fake = FakePaperform([])
    pages = await listing(fake)
    assert [p.responses for p in pages] == [[]] and fake.fields_asked == 0


# -- (2) identity --------------------------------------------------------------------------


def fixture_as_api() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The fixture's submission as the API lists it: `data` by question key, the questions as fields."""
    body = json.loads(FIXTURE["body"])
    fields = [{k: q[k] for k in ("key", "title", "type", "custom_key", "description")} for q in body["data"]]
    at = parse_instant(body["created_at"])
    api = item(body["submission_id"], at, "")
    api["form_id"] = body["form_id"]
    api["data"] = {q["key"]: q["value"] for q in body["data"] if q["value"] is not None}
    return fields, api


@pytest.mark.anyio
async def test_a_listed_submission_has_the_webhooks_response_id_and_answers() -> None:
    request = webhook_request(FIXTURE)
    envelope = connector.envelope(request)
    webhook = connector.normalize(request, NormalizeContext("sub", "paperform-pyconf", datetime.now(UTC)))
    fields, api = fixture_as_api()
    [page] = await listing(FakePaperform([api], fields))
    [listed] = page.responses
    assert envelope.kind == "submission"
    assert envelope.response_id == listed.response_id == "71f4804bbeafff3d654c6135" == envelope.event_id
    got = listed.submission
    assert got.answer_map() == webhook.answer_map() == FIXTURE["expect"]["answers"]
    assert [(a.key, a.label, a.type) for a in got.answers] == [
        (a.key, a.label, a.type) for a in webhook.answers
    ]
    assert (got.event_id, got.email, got.hidden, got.form_id) == (
        webhook.event_id,
        webhook.email,
        webhook.hidden,
        webhook.form_id,
    )
    assert got.submitted_at == webhook.submitted_at == listed.submitted_at
    assert got.metadata == {k: v for k, v in webhook.metadata.items() if k != "slug"}  # no slug listed


def test_a_partial_submission_webhook_carries_no_response_id() -> None:
    body = json.loads(FIXTURE["body"])
    body.update(submission_id=None, trigger="partial_submission")
    envelope = connector.envelope(webhook_request({**FIXTURE, "body": json.dumps(body)}))
    assert envelope.kind == "ignored" and envelope.response_id is None


# -- (3) 429, (4) 401, (5) deleted, one unreadable -----------------------------------------------


@pytest.mark.anyio
async def test_a_429_is_waited_out_for_its_retry_after_then_read() -> None:
    fake, time = many(), VirtualTime()
    limited = first_answer_then(rate_limited("11", text="Too many requests."), fake)
    pages = await listing(limited, PaperformReconciler(sleep=time.sleep))
    assert time.sleeps == [11.0] and sum(len(p.responses) for p in pages) == 250


@pytest.mark.anyio
async def test_a_refused_key_stops_the_run_saying_what_to_do_without_the_key() -> None:
    revoked = "pf_live_revokedrevokedrevokedrevoked"
    with pytest.raises(ReconcileFailed) as caught:
        await listing(many(), credentials={"api_key": revoked})
    hints = ("HTTP 401", "paperform.co/account/developer", "reconcile.credentials.api_key")
    assert_refused_without((revoked, KEY), caught, *hints)


@pytest.mark.anyio
async def test_a_missing_form_is_permanent_and_names_the_setting() -> None:
    with respx.mock() as mock:
        mock.get(LIST_URL).respond(404, json={"status": "error", "message": "Form not found"})
        with pytest.raises(ReconcileFailed) as caught:
            async for _ in PaperformReconciler().responses(
                SOURCE, settings(), Window(SINCE, UNTIL), respx_sender()
            ):
                pass
    assert caught.value.permanent and "reconcile.form_id" in str(caught.value)


@pytest.mark.anyio
async def test_a_submission_deleted_at_paperform_is_simply_not_listed() -> None:
    fake = many()
    fake.submissions = [s for s in fake.submissions if s["id"] != f"{99:024x}"]
    pages = await listing(fake)
    ids = ids_of(pages)
    assert f"{99:024x}" not in ids and len(ids) == len(set(ids)) == 249


@pytest.mark.anyio
async def test_an_unreadable_submission_is_set_aside_and_the_others_are_listed() -> None:
    fake = many()
    odd = item("0dd" * 8, SINCE + timedelta(minutes=4), "x")
    odd["data"] = ["not", "an", "object"]
    fake.submissions.append(odd)
    pages = await listing(fake)
    assert sorted(ids_of(pages)) == [f"{n:024x}" for n in range(250)]
    problem = "the submission's data is not an object of answers by question key"
    assert_set_aside(pages, "0dd" * 8, SINCE + timedelta(minutes=4), problem)


# -- (6) settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"form_id": FORM}, "credentials"),
        ({"form_id": FORM, "credentials": {"token": KEY}}, "api_key"),
        ({"form_id": FORM, "credentials": {"api_key": " "}}, "empty"),
        ({"form_id": FORM, "credentials": {"api_key": "${PAPERFORM_API_KEY}"}}, "unexpanded"),
        ({"form_id": FORM, "credentials": {"api_key": "short"}}, "whole Paperform API key"),
        ({"form_id": FORM, "credentials": {"api_key": f"Bearer {KEY}"}}, "without 'Bearer '"),
        ({"credentials": {"api_key": KEY}}, "form_id"),
        ({"form_id": "https://pyconf.paperform.co", "credentials": {"api_key": KEY}}, "slug or id"),
        (
            {"form_id": FORM, "credentials": {"api_key": KEY}, "api_base_url": "http://api.paperform.co"},
            "https",
        ),
        ({"form_id": FORM, "credentials": {"api_key": KEY}, "status": "all"}, "Extra inputs"),
    ],
)
def test_settings_say_what_is_wrong(raw: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        PaperformReconcileSettings.model_validate(raw)
    assert says in str(caught.value)
    assert all(KEY not in e["msg"] for e in caught.value.errors())


def test_settings_defaults_and_the_key_stays_secret() -> None:
    ok_settings = settings()
    assert ok_settings.api_base_url == "https://api.paperform.co" and ok_settings.webhook_check is True
    assert settings(api_base_url="https://api.paperform.co/v1/").api_base_url == "https://api.paperform.co"
    assert settings(api_base_url="http://localhost:9000").api_base_url == "http://localhost:9000"
    assert KEY not in repr(ok_settings) and KEY not in str(ok_settings.model_dump())
    assert connector.reconciler is not None and connector.reconciler.Settings is PaperformReconcileSettings


# -- (7) webhook health ------------------------------------------------------------------------


def hook(hid: str, url: str, triggers: list[str] | None = None) -> dict[str, Any]:
    return {
        "id": hid,
        "target_url": url,
        "triggers": triggers or ["submission"],
        "created_at_utc": "2026-01-01",
    }


async def health(pages: list[list[dict[str, Any]]], expected: str | None = PUBLIC, **kw: Any) -> Any:
    asked: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return httpx.Response(403, json={"status": "error", "message": "Business API only"})
        skip = int(request.url.params.get("skip", "0"))
        asked.append(str(skip))
        n = skip // 2
        return ok("webhooks", pages[n], skip, 2, 2 * (len(pages) - 1) + len(pages[-1]))

    with respx.mock(assert_all_called=False) as mock:
        mock.get(HOOKS_URL).mock(side_effect=answer)
        result = await PaperformReconciler().webhook_health(SOURCE, settings(**kw), expected, respx_sender())
    assert asked == [str(2 * n) for n in range(len(pages))] or result is None
    return result


@pytest.mark.anyio
async def test_webhook_health_ok_across_pages_ignoring_the_query() -> None:
    first = [
        hook("w1", "https://hooks.zapier.com/hooks/catch/1/abc/"),
        hook("w2", PUBLIC, ["partial_submission"]),
    ]
    result = await health([first, [hook("w3", PUBLIC + "?token=s3cr3t")]])
    assert result.state == "ok" and "s3cr3t" not in result.detail


@pytest.mark.anyio
async def test_webhook_health_missing_when_only_a_partial_submission_webhook_is_left() -> None:
    result = await health([[hook("w1", PUBLIC, ["partial_submission"])]])
    assert result.state == "missing" and FORM in result.detail and "New Submission" in result.detail
    assert (await health([[]])).state == "missing"


@pytest.mark.anyio
async def test_webhook_health_elsewhere_names_hosts_only() -> None:
    result = await health([[hook("w1", "https://old-hub.example.org/hooks/paperform-pyconf?token=s3cr3t")]])
    assert result.state == "elsewhere" and "old-hub.example.org" in result.detail
    assert "s3cr3t" not in result.detail and "token" not in result.detail


@pytest.mark.anyio
async def test_paperform_has_no_disabled_state_and_the_check_can_be_turned_off() -> None:
    # Paperform's webhook object has no enabled flag: a webhook is there or it is not.
    assert (await health([[hook("w1", PUBLIC)]], expected=None)).state == "ok"
    assert await health([[hook("w1", PUBLIC)]], webhook_check=False) is None


@pytest.mark.anyio
async def test_a_plan_without_the_business_api_is_told_how_to_turn_the_check_off() -> None:
    with pytest.raises(ReconcileFailed) as caught:
        await health([[]], credentials={"api_key": "pf_live_standardplanstandardplan"})
    message = str(caught.value)
    assert caught.value.permanent and "HTTP 403" in message and "reconcile.webhook_check: false" in message


def test_hookhub_check_warns_that_the_identity_rule_is_observed_not_documented() -> None:
    [warning] = PaperformReconciler().warnings(settings())
    assert "submission_id" in warning and "--dry-run" in warning
