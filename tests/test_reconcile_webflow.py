"""Webflow reconciliation: the submissions listing, the identity rule, errors and the webhook check,
against a fake of the Data API v2 (respx) built from the facts in docs/providers/webflow.md
("Reconciliation (missed webhooks)"): `GET /v2/forms/{form_id}/submissions` with `offset` and `limit`
(at most 100, no date filter) answering `{"formSubmissions": [...], "pagination": {limit, offset,
total}}`; `GET /v2/sites/{site_id}/webhooks` answering `{"webhooks": [...]}`; Bearer tokens.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel, ValidationError

import connectors.webflow as webflow
from connectors.base import InboundRequest, NormalizeContext
from connectors.reconciling import ListedResponse, ReconcileFailed, Window
from connectors.webflow import WebflowOptions, WebflowReconciler, WebflowReconcileSettings, connector
from hub.submission import Submission, parse_instant
from tests.harness import PROVIDER_FIXTURES, load_fixture
from tests.httpx_senders import respx_sender
from tests.reconcile_cases import VirtualTime, assert_refused_without, assert_set_aside, ids_of, rate_limited

FIXTURE = load_fixture(PROVIDER_FIXTURES / "webflow" / "full_contact_form.json")
PAYLOAD = json.loads(FIXTURE["body"])["payload"]
FORM_ID, SITE_ID = PAYLOAD["formId"], PAYLOAD["siteId"]
TOKEN = "3f8c1e0b9a7d6c5b4a39281706f5e4d3c2b1a09f8e7d6c5b4a3928170f6e5d4c"
BASE = "https://api.webflow.com"
HOOK = "https://hooks.example.com/hookhub/in/webflow/contact"
WINDOW = Window(datetime(2026, 11, 20, 14, 0, tzinfo=UTC), datetime(2026, 11, 20, 15, 0, tzinfo=UTC))


@dataclass(frozen=True)
class Source:
    secrets: list[str] = field(default_factory=list)
    tolerance: int = 300
    public_url: str | None = None
    options: BaseModel = field(default_factory=WebflowOptions)


def settings(**overrides: Any) -> WebflowReconcileSettings:
    raw = {"form_id": FORM_ID, "site_id": SITE_ID, "credentials": {"token": TOKEN}, **overrides}
    return WebflowReconcileSettings.model_validate(raw)


def item(sid: str, submitted: str, response: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "id": sid,
        "displayName": PAYLOAD["name"],
        "siteId": SITE_ID,
        "workspaceId": "65427cf400e02b306eaa0001",
        "dateSubmitted": submitted,
        "formResponse": response if response is not None else {"Email": f"{sid}@example.org"},
    }


# The fixture's submission as List Form Submissions gives it: the webhook's payload.id is its `id`.
FIXTURE_ITEM = item(PAYLOAD["id"], PAYLOAD["submittedAt"], dict(PAYLOAD["data"]))


def hook(url: str, trigger: str = "form_submission") -> dict[str, Any]:
    return {
        "id": "57ca0a9e418c504a6e1acbb6",
        "triggerType": trigger,
        "url": url,
        "workspaceId": "65427cf400e02b306eaa0001",
        "siteId": SITE_ID,
        "filter": {"name": PAYLOAD["name"]},
        "lastTriggered": "2026-11-20T14:03:28Z",
        "createdOn": "2026-01-02T10:00:00Z",
    }


class FakeWebflow:
    """Data API v2 as documented: offset/limit paging with a total, no date filter; 401 without the token."""

    def __init__(
        self, submissions: list[dict[str, Any]], webhooks: list[dict[str, Any]] | None = None
    ) -> None:
        self.submissions = submissions
        self.webhooks = webhooks or []
        self.queued: list[httpx.Response] = []
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        if self.queued:
            return self.queued.pop(0)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"message": "Request not authorized", "code": "not_authorized"})
        params = request.url.params
        offset, limit = int(params.get("offset", "0")), min(int(params.get("limit", "100")), 100)
        if request.url.path == f"/v2/forms/{FORM_ID}/submissions":
            rows = sorted(self.submissions, key=lambda s: s["dateSubmitted"], reverse=True)
            page = rows[offset : offset + limit]
            return httpx.Response(
                200,
                json={
                    "formSubmissions": page,
                    "pagination": {"limit": limit, "offset": offset, "total": len(rows)},
                },
            )
        if request.url.path == f"/v2/sites/{SITE_ID}/webhooks":
            return httpx.Response(
                200,
                json={
                    "webhooks": self.webhooks,
                    "pagination": {"limit": 100, "offset": 0, "total": len(self.webhooks)},
                },
            )
        return httpx.Response(
            404, json={"message": "Requested resource not found", "code": "resource_not_found"}
        )


async def listing(
    fake: FakeWebflow, reconciler: WebflowReconciler | None = None, window: Window = WINDOW, **overrides: Any
) -> list[list[ListedResponse]]:
    pages = []
    with respx.mock() as mock:
        mock.route(host="api.webflow.com").mock(side_effect=fake)
        found = (reconciler or WebflowReconciler()).responses(
            Source(), settings(**overrides), window, respx_sender()
        )
        async for page in found:
            pages.append(page.responses)
    return pages


def webhook_submission() -> Submission:
    request = InboundRequest(
        method=FIXTURE["method"],
        url=FIXTURE["url"],
        headers={k.lower(): v for k, v in FIXTURE["headers"].items()},
        body=FIXTURE["body"].encode("utf-8"),
    )
    assert connector.envelope(request).response_id == PAYLOAD["id"]
    context = NormalizeContext("sub_1", "webflow", parse_instant(FIXTURE["received_at"]))
    return connector.normalize(request, context)


@pytest.mark.anyio
async def test_listing_reads_every_page_once_and_keeps_the_window(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(webflow, "PAGE_SIZE", 2)
    inside = [item(f"6ecd4405691325855e2f3c{n:02x}", f"2026-11-20T14:{n * 10:02d}:00.000Z") for n in range(4)]
    outside = [
        item("6ecd4405691325855e2f3d00", "2026-11-20T13:59:59.999Z"),
        item("6ecd4405691325855e2f3d01", "2026-11-20T15:00:00.000Z"),  # `until` is not in the window
    ]
    fake = FakeWebflow(inside + outside)
    pages = await listing(fake)
    ids = [r.response_id for page in pages for r in page]
    assert sorted(ids) == sorted(s["id"] for s in inside) and len(ids) == 4
    # No date filter in this API: every page is read; the total (6) ends the listing after 3 pages.
    assert [(c.url.params["offset"], c.url.params["limit"]) for c in fake.calls] == [
        ("0", "2"),
        ("2", "2"),
        ("4", "2"),
    ]
    assert len(pages) == 3
    assert all(c.url.path == f"/v2/forms/{FORM_ID}/submissions" for c in fake.calls)
    first = next(r for page in pages for r in page if r.response_id == inside[0]["id"])
    assert first.submitted_at == datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
    assert first.submission.form_id == FORM_ID and first.submission.form_title == PAYLOAD["name"]


@pytest.mark.anyio
async def test_the_webhook_and_the_listing_name_the_same_response_with_the_same_answers() -> None:
    [[listed]] = await listing(FakeWebflow([FIXTURE_ITEM]))
    webhook = webhook_submission()
    assert listed.response_id == webhook.event_id == FIXTURE["expect"]["event_id"]
    assert listed.submission.answer_map() == webhook.answer_map() == FIXTURE["expect"]["answers"]
    assert [a.label for a in listed.submission.answers] == [a.label for a in webhook.answers]
    # The API gives no schema: keys are the field names and types "unknown" (docs/providers/webflow.md).
    assert {(a.key, a.type) for a in listed.submission.answers} == {
        (a.label, "unknown") for a in webhook.answers
    }
    assert listed.submitted_at == webhook.submitted_at == parse_instant(PAYLOAD["submittedAt"])
    assert (listed.submission.form_id, listed.submission.form_title) == (webhook.form_id, webhook.form_title)
    assert (listed.submission.email, listed.submission.name) == (webhook.email, webhook.name)
    assert listed.submission.metadata == {"siteId": SITE_ID}


@pytest.mark.anyio
async def test_429_waits_the_retry_after_then_succeeds() -> None:
    time = VirtualTime()
    fake = FakeWebflow([FIXTURE_ITEM])
    fake.queued = [rate_limited("60", json={"code": "too_many_requests"})]
    [[listed]] = await listing(fake, WebflowReconciler(sleep=time.sleep))
    assert time.sleeps == [60.0] and listed.response_id == PAYLOAD["id"]


@pytest.mark.anyio
async def test_a_revoked_token_fails_for_good_and_says_what_to_do_without_the_token() -> None:
    revoked = "0" * 64
    with pytest.raises(ReconcileFailed) as caught:
        await listing(FakeWebflow([FIXTURE_ITEM]), credentials={"token": revoked})
    assert_refused_without((revoked, TOKEN), caught, "HTTP 401", "forms:read", "reconcile.credentials.token")
    with pytest.raises(ReconcileFailed, match="reconcile.form_id") as missing:
        await listing(FakeWebflow([]), form_id="0123456789abcdef01234567")
    assert missing.value.permanent


@pytest.mark.anyio
async def test_deleted_submissions_are_not_listed() -> None:
    kept = item("6ecd4405691325855e2f3e01", "2026-11-20T14:10:00.000Z")
    # A submission deleted in Webflow (DELETE /v2/form_submissions/{id}) is no longer in the list.
    pages = await listing(FakeWebflow([kept]))
    assert [r.response_id for page in pages for r in page] == [kept["id"]]


@pytest.mark.anyio
async def test_an_unreadable_submission_is_set_aside_and_the_others_are_listed() -> None:
    good = [item(f"6650f0c2a1b2c3d4e5f600{n:02d}", f"2026-11-20T14:{n * 10:02d}:00.000Z") for n in range(3)]
    odd = item("6650f0c2a1b2c3d4e5f60099", "2026-11-20T14:15:00.000Z")
    odd["formResponse"] = ["Ada", "ada@example.org"]  # not an object of fields
    with respx.mock() as mock:
        mock.route(host="api.webflow.com").mock(side_effect=FakeWebflow([*good, odd]))
        pages = [p async for p in WebflowReconciler().responses(Source(), settings(), WINDOW, respx_sender())]
    assert sorted(ids_of(pages)) == sorted(s["id"] for s in good)
    problem = "the submission's formResponse is not an object of fields"
    assert_set_aside(pages, odd["id"], datetime(2026, 11, 20, 14, 15, tzinfo=UTC), problem)


def test_settings_are_checked_with_messages_an_admin_can_act_on() -> None:
    good = settings(api_base_url="https://api.webflow.com/v2/", site_id=None, lookback="30d")
    assert good.api_base_url == BASE and good.site_id is None
    assert TOKEN not in repr(good) and TOKEN not in str(good.model_dump())
    base = {"form_id": FORM_ID, "credentials": {"token": TOKEN}}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"form_id": FORM_ID}, "credentials"),
        ({**base, "credentials": {}}, "token"),
        ({**base, "credentials": {"token": ""}}, "empty .is its environment variable, e.g. WEBFLOW_TOKEN"),
        ({**base, "credentials": {"token": f"Bearer {TOKEN}"}}, "without 'Bearer '"),
        ({**base, "credentials": {"token": "${WEBFLOW_TOKEN}"}}, "unexpanded"),
        ({**base, "credentials": {"token": "site-token"}}, "API access"),
        ({**base, "credentials": {"token": TOKEN, "scope": "forms:read"}}, "Extra inputs"),
        ({**base, "form_id": "Contact form"}, "24 hex digits"),
        ({**base, "site_id": "my-site"}, "24 hex digits"),
        ({**base, "api_base_url": "ftp://api.webflow.com"}, "api_base_url"),
    ]
    for raw, expected in cases:
        with pytest.raises(ValidationError, match=expected):
            WebflowReconcileSettings.model_validate(raw)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("webhooks", "expected_url", "state", "said", "unsaid"),
    [
        ([hook(f"{HOOK}?token=s3cret-token")], HOOK, "ok", HOOK, "s3cret"),
        ([hook("https://hook.eu1.make.com/x"), hook(HOOK + "/")], f"{HOOK}?token=t", "ok", HOOK, "make.com"),
        ([], HOOK, "missing", "form_submission webhook", "token"),
        ([hook(HOOK, trigger="site_publish")], HOOK, "missing", "no webhook", "token"),
        (
            [hook("https://old.example.org/in/webflow?token=s3cret-token")],
            HOOK,
            "elsewhere",
            "old.example.org",
            "s3cret",
        ),
        ([hook("https://old.example.org/in/webflow")], None, "ok", "1 webhook", "old.example.org"),
    ],
)
async def test_webhook_health(
    webhooks: list[dict[str, Any]], expected_url: str | None, state: str, said: str, unsaid: str
) -> None:
    fake = FakeWebflow([], webhooks=webhooks)
    with respx.mock() as mock:
        mock.route(host="api.webflow.com").mock(side_effect=fake)
        health = await WebflowReconciler().webhook_health(Source(), settings(), expected_url, respx_sender())
    assert health is not None and health.state == state
    assert said in health.detail and unsaid not in health.detail
    assert [c.url.path for c in fake.calls] == [f"/v2/sites/{SITE_ID}/webhooks"]


@pytest.mark.anyio
async def test_webhook_health_needs_the_site() -> None:
    with respx.mock(assert_all_called=False) as mock:
        route = mock.route(host="api.webflow.com")
        health = await WebflowReconciler().webhook_health(
            Source(), settings(site_id=None), HOOK, respx_sender()
        )
    assert health is None and not route.called
