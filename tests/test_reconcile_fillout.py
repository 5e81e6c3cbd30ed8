"""Fillout reconciliation: the submissions listing against a fake Fillout REST API (respx).

The fake follows Fillout's API reference (docs/providers/fillout.md, "Reconciliation"):
`GET /v1/api/forms/{formId}/submissions` with `limit` (at most 150), `offset`, `afterDate`/`beforeDate`,
`status` (finished / in_progress) and `sort`; the answer's `responses` are submission objects (the webhook's
`submission`), with `totalResponses` and `pageCount`. Fillout's API cannot list webhooks: no health.
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
from connectors.fillout import FilloutReconciler, FilloutReconcileSettings, connector
from connectors.reconciling import ReconcileFailed, Window
from hub.submission import parse_instant
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

FORM = "vGkWW4cQ9pus"
KEY = "sk_prod_Q2hhbmdlTWVBZnRlclRoZVRlc3Q0242"
LIST_URL = f"https://api.fillout.com/v1/api/forms/{FORM}/submissions"
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 21, tzinfo=UTC)
SOURCE = FixtureSource(secrets=["s"])
FIXTURE = load_fixture(PROVIDER_FIXTURES / "fillout" / "full_event_registration.json")


def settings(**extra: Any) -> FilloutReconcileSettings:
    return FilloutReconcileSettings.model_validate(
        {"form_id": FORM, "credentials": {"api_key": KEY}, **extra}
    )


def item(sid: str, at: datetime, name: str, finished: bool = True) -> dict[str, Any]:
    stamp = at.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return {
        "submissionId": sid,
        "submissionTime": stamp,
        "lastUpdatedAt": stamp,
        "questions": [{"id": "nameQ", "name": "Full name", "type": "ShortAnswer", "value": name}],
        "calculations": [],
        "urlParameters": [],
        "_finished": finished,  # the fake's own flag, dropped before answering
    }


@dataclass
class FakeFillout:
    """Fillout's listing: dates strict, `limit` at most 150, by `offset`, 401 for another key."""

    items: list[dict[str, Any]]
    asked: list[dict[str, str]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return httpx.Response(401, json={"message": "Invalid API key"})
        query = dict(request.url.params)
        self.asked.append(query)
        limit, offset = int(query.get("limit", "50")), int(query.get("offset", "0"))
        if not 1 <= limit <= 150:
            return httpx.Response(400, json={"message": "limit must be between 1 and 150"})
        after, before = parse_instant(query["afterDate"]), parse_instant(query["beforeDate"])
        finished = query.get("status", "finished") == "finished"
        chosen = sorted(
            (
                i
                for i in self.items
                if after < parse_instant(i["submissionTime"]) < before and i["_finished"] == finished
            ),
            key=lambda i: i["submissionTime"],
            reverse=query.get("sort") == "desc",
        )
        page = [{k: v for k, v in i.items() if k != "_finished"} for i in chosen[offset : offset + limit]]
        pages = -(-len(chosen) // limit)
        return httpx.Response(
            200, json={"responses": page, "totalResponses": len(chosen), "pageCount": pages}
        )


def many() -> FakeFillout:
    items = [item(f"sub-{n:03d}", SINCE + timedelta(minutes=5 * n), f"Person {n}") for n in range(320)]
    items += [
        item("in-progress", SINCE + timedelta(hours=2), "halfway", finished=False),
        item("before", SINCE - timedelta(milliseconds=1), "too early"),
        item("at-until", UNTIL, "the next window's"),
    ]
    return FakeFillout(items)


async def listing(fake: Any, reconciler: FilloutReconciler | None = None, **kw: Any) -> list[Any]:
    reconciler = reconciler or FilloutReconciler(sleep=VirtualTime().sleep)
    with respx.mock() as mock:
        mock.get(LIST_URL).mock(side_effect=fake)
        return await pages_of(reconciler, SOURCE, settings(**kw), Window(SINCE, UNTIL))


@pytest.mark.anyio
async def test_listing_reads_every_page_once_with_the_window_as_fillout_wants_it() -> None:
    fake = many()
    pages = await listing(fake)
    ids = ids_of(pages)
    assert len(pages) == 3 and [q["offset"] for q in fake.asked] == ["0", "150", "300"]
    assert sorted(ids) == [f"sub-{n:03d}" for n in range(320)]  # each once; not in progress, none outside
    first = fake.asked[0]
    assert (first["limit"], first["status"], first["sort"]) == ("150", "finished", "asc")
    assert (
        first["afterDate"] == "2026-10-31T23:59:59.000Z" and first["beforeDate"] == "2026-11-21T00:00:01.000Z"
    )
    assert pages[0].total == 322  # Fillout's count for the widened window ("before" and "at-until")
    listed = next(r for p in pages for r in p.responses if r.response_id == "sub-007")
    assert listed.submitted_at == SINCE + timedelta(minutes=35)
    assert listed.submission.answer_map() == {"Full name": "Person 7"}
    assert listed.submission.event_id == "sub-007" and listed.submission.form_id == FORM


@pytest.mark.anyio
async def test_a_listed_response_has_the_webhooks_response_id_and_answers() -> None:
    headers = {k.lower(): v for k, v in FIXTURE["headers"].items()}
    request = InboundRequest(FIXTURE["method"], FIXTURE["url"], headers, FIXTURE["body"].encode("utf-8"))
    envelope = connector.envelope(request)
    webhook = connector.normalize(request, NormalizeContext("sub", "fillout-signup", datetime.now(UTC)))
    api_item = {**json.loads(FIXTURE["body"])["submission"], "_finished": True}  # the same object, listed
    [page] = await listing(FakeFillout([api_item]))
    [listed] = page.responses
    assert envelope.kind == "submission"
    assert envelope.response_id == listed.response_id == "0feea0df-87c9-4b49-a333-21b5d332564d"
    got = listed.submission
    assert got.answer_map() == webhook.answer_map() == FIXTURE["expect"]["answers"]
    assert [(a.key, a.type) for a in got.answers] == [(a.key, a.type) for a in webhook.answers]
    assert (got.event_id, got.email, got.hidden, got.metadata) == (
        webhook.event_id,
        webhook.email,
        webhook.hidden,
        webhook.metadata,
    )
    assert got.submitted_at == webhook.submitted_at == listed.submitted_at
    assert got.form_id == webhook.form_id and got.form_title is None  # the listing has no form name


@pytest.mark.anyio
async def test_a_429_is_waited_out_for_its_retry_after_then_read() -> None:
    fake, time = many(), VirtualTime()
    limited = first_answer_then(rate_limited("3", json={"message": "Too many requests"}), fake)
    pages = await listing(limited, FilloutReconciler(sleep=time.sleep))
    assert time.sleeps == [3.0] and sum(len(p.responses) for p in pages) == 320


@pytest.mark.anyio
async def test_a_refused_key_stops_the_run_saying_what_to_do_without_the_key() -> None:
    other = "sk_prod_regeneratedregenerated0001"
    with pytest.raises(ReconcileFailed) as caught:
        await listing(many(), credentials={"api_key": other})
    assert_refused_without(
        (other, KEY), caught, "HTTP 401", "Settings > Developer", "reconcile.credentials.api_key"
    )


@pytest.mark.anyio
async def test_an_eu_account_sets_its_base_url() -> None:
    eu = f"https://eu-api.fillout.com/v1/api/forms/{FORM}/submissions"
    with respx.mock() as mock:
        route = mock.get(eu).respond(200, json={"responses": [], "totalResponses": 0, "pageCount": 0})
        reconciler = FilloutReconciler()
        window = Window(SINCE, UNTIL)
        eu_settings = settings(api_base_url="https://eu-api.fillout.com/v1/api/")
        pages = await pages_of(reconciler, SOURCE, eu_settings, window)
    assert route.called and pages[0].responses == [] and pages[0].total == 0


@pytest.mark.anyio
async def test_a_response_deleted_at_fillout_is_simply_not_listed() -> None:
    fake = many()
    fake.items = [i for i in fake.items if i["submissionId"] != "sub-149"]
    ids = ids_of(await listing(fake))
    assert "sub-149" not in ids and len(ids) == len(set(ids)) == 319


@pytest.mark.anyio
async def test_an_unreadable_submission_is_set_aside_and_the_others_are_listed() -> None:
    fake = many()
    odd = item("odd-one", SINCE + timedelta(minutes=7), "x")
    odd["questions"] = {"nameQ": "not a list"}
    fake.items.append(odd)
    pages = await listing(fake)
    assert sorted(ids_of(pages)) == [f"sub-{n:03d}" for n in range(320)]
    problem = "submission.questions is not a list of objects"
    assert_set_aside(pages, "odd-one", SINCE + timedelta(minutes=7), problem)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"form_id": FORM}, "credentials"),
        ({"form_id": FORM, "credentials": {"token": KEY}}, "api_key"),
        ({"form_id": FORM, "credentials": {"api_key": "  "}}, "empty"),
        ({"form_id": FORM, "credentials": {"api_key": "sk_prod"}}, "whole Fillout API key"),
        ({"form_id": FORM, "credentials": {"api_key": f"Bearer {KEY}"}}, "without 'Bearer '"),
        ({"credentials": {"api_key": KEY}}, "form_id"),
        ({"form_id": "https://forms.fillout.com/t/x", "credentials": {"api_key": KEY}}, "public id"),
        (
            {"form_id": FORM, "credentials": {"api_key": KEY}, "api_base_url": "http://api.fillout.com"},
            "https",
        ),
        (
            {"form_id": FORM, "credentials": {"api_key": KEY}, "api_base_url": "https://x.io/?a=1"},
            "plain URL",
        ),
        (
            {"form_id": FORM, "credentials": {"api_key": KEY}, "lookback": "7d", "status": "all"},
            "Extra inputs",
        ),
    ],
)
def test_settings_say_what_is_wrong(raw: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FilloutReconcileSettings.model_validate(raw)
    assert says in str(caught.value)
    assert all(KEY not in e["msg"] for e in caught.value.errors())


def test_settings_defaults_and_the_key_stays_secret() -> None:
    ok = settings()
    assert ok.api_base_url == "https://api.fillout.com" and KEY not in repr(ok)
    assert settings(api_base_url="http://localhost:9000/").api_base_url == "http://localhost:9000"
    assert connector.reconciler is not None and connector.reconciler.Settings is FilloutReconcileSettings


@pytest.mark.anyio
async def test_fillout_cannot_say_how_its_webhook_is() -> None:
    reconciler = FilloutReconciler()
    assert (
        await reconciler.webhook_health(SOURCE, settings(), "https://hub.example.org/x", respx_sender())
        is None
    )
