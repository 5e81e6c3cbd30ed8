"""SurveyMonkey reconciliation (connectors/surveymonkey/listing.py) against a fake of API v3 built from
the documented facts (SurveyMonkey/public_api_docs: includes/_responses.md for /responses/bulk and its
query strings, includes/_overview.md for pagination `links.next` and dates, includes/_webhooks.md for
/webhooks), answered through respx.

The fake applies `status`, `start_modified_at`/`end_modified_at` (as exclusive bounds, which the docs do
not settle), `sort_by=date_modified`/`sort_order`, `page` and `per_page` (max 100) itself, so a request the
reconciler builds wrongly lists the wrong responses.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from pydantic import ValidationError

from connectors.base import InboundRequest
from connectors.reconciling import ReconcileFailed, Window
from connectors.surveymonkey import SurveyMonkeyConnector, SurveyMonkeyOptions, connector
from connectors.surveymonkey.listing import SurveyMonkeyReconciler, SurveyMonkeyReconcileSettings
from hub.submission import parse_instant
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
from tests.test_fetch_surveymonkey import (
    BASE,
    DETAILS,
    DETAILS_URL,
    EXPECTED,
    FIXTURE,
    SURVEY,
    SURVEY_ID,
    SURVEY_URL,
    TOKEN,
    Source,
    answers_of,
    expand,
    source,
    thin,
)

SINCE = datetime(2026, 11, 20, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)
WINDOW = Window(SINCE, UNTIL)
BULK_URL = f"{BASE}/v3/surveys/{SURVEY_ID}/responses/bulk"
HOOK_URL = "https://hub.example.org/hooks/surveymonkey-nps"


def settings(**extra: Any) -> SurveyMonkeyReconcileSettings:
    return SurveyMonkeyReconcileSettings.model_validate({"survey_id": SURVEY_ID, **extra})


def item(n: int, modified: datetime, status: str = "completed") -> dict[str, Any]:
    """A bulk item (the shape of /responses/{id}/details): one essay answer."""
    return {
        "id": str(900000000000 + n),
        "survey_id": SURVEY_ID,
        "collector_id": "491328943",
        "recipient_id": "0",
        "response_status": status,
        "date_created": (modified - timedelta(minutes=3)).isoformat(),
        "date_modified": modified.isoformat(),
        "custom_variables": {},
        "pages": [
            {"id": "52210385", "questions": [{"id": "158834606", "answers": [{"text": f"answer {n}"}]}]}
        ],
    }


class FakeSurveyMonkey:
    """GET /v3/surveys/{id}/details, /responses/bulk, /webhooks and /webhooks/{id} as documented."""

    def __init__(self, responses: list[dict[str, Any]], webhooks: list[dict[str, Any]] | None = None) -> None:
        self.responses = responses
        self.webhooks = webhooks or []
        self.bulk_queries: list[dict[str, str]] = []

    def mount(self, mock: respx.MockRouter) -> None:
        mock.get(SURVEY_URL).mock(side_effect=self._authorized(lambda _: httpx.Response(200, json=SURVEY)))
        mock.get(BULK_URL).mock(side_effect=self._authorized(self.bulk))
        mock.get(f"{BASE}/v3/webhooks").mock(side_effect=self._authorized(self.list_webhooks))
        mock.get(url__regex=rf"{BASE}/v3/webhooks/\d+$").mock(side_effect=self._authorized(self.webhook))

    @staticmethod
    def _authorized(handler: Any) -> Any:
        def answer(request: httpx.Request) -> httpx.Response:
            if request.headers.get("authorization") != f"Bearer {TOKEN}":
                return httpx.Response(401, json={"error": {"id": "1011", "message": "Invalid access token"}})
            response: httpx.Response = handler(request)
            return response

        return answer

    @staticmethod
    def _page(request: httpx.Request, items: list[Any], limit: int) -> dict[str, Any]:
        page, per_page = (
            int(request.url.params.get("page", "1")),
            int(request.url.params.get("per_page", "50")),
        )
        per_page = min(per_page, limit)
        chunk = items[(page - 1) * per_page : page * per_page]
        body: dict[str, Any] = {"data": chunk, "per_page": per_page, "page": page, "total": len(items)}
        body["links"] = {"self": str(request.url)}
        if page * per_page < len(items):
            body["links"]["next"] = str(request.url.copy_merge_params({"page": str(page + 1)}))
        return body

    def bulk(self, request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params)
        self.bulk_queries.append(query)
        found = [
            r for r in self.responses if r["response_status"] == query.get("status", r["response_status"])
        ]
        if "start_modified_at" in query:
            start = parse_instant(query["start_modified_at"])
            found = [r for r in found if parse_instant(r["date_modified"]) > start]
        if "end_modified_at" in query:
            end = parse_instant(query["end_modified_at"])
            found = [r for r in found if parse_instant(r["date_modified"]) < end]
        found.sort(key=lambda r: r["date_modified"], reverse=query.get("sort_order") == "DESC")
        return httpx.Response(200, json=self._page(request, found, 100))

    def list_webhooks(self, request: httpx.Request) -> httpx.Response:
        listed = [
            {"id": w["id"], "name": w["name"], "href": f"{BASE}/v3/webhooks/{w['id']}"} for w in self.webhooks
        ]
        return httpx.Response(200, json=self._page(request, listed, 1000))

    def webhook(self, request: httpx.Request) -> httpx.Response:
        webhook_id = request.url.path.rsplit("/", 1)[1]
        found = [w for w in self.webhooks if w["id"] == webhook_id]
        return httpx.Response(200, json=found[0]) if found else httpx.Response(404, json={"error": {}})


async def listed(reconciler: SurveyMonkeyReconciler, **extra: Any) -> list[Any]:
    pages = await pages_of(reconciler, source(), settings(**extra), WINDOW)
    return pages


@pytest.mark.anyio
async def test_a_listing_of_three_pages_is_read_to_the_end_with_the_window_as_the_api_expects() -> None:
    inside = [item(n, SINCE + timedelta(minutes=5 * n)) for n in range(250)]
    outside = [item(900, UNTIL + timedelta(seconds=30)), item(901, SINCE - timedelta(hours=1))]
    partial = [item(902, SINCE + timedelta(hours=2), status="partial")]
    api = FakeSurveyMonkey(inside + outside + partial)
    with respx.mock(assert_all_called=False) as mock:
        api.mount(mock)
        pages = await listed(SurveyMonkeyReconciler())
    assert [q["page"] for q in api.bulk_queries] == ["1", "2", "3"]
    assert all(
        q
        == {
            "status": "completed",
            "start_modified_at": "2026-11-19T23:59:59+00:00",
            "end_modified_at": "2026-11-21T00:00:01+00:00",
            "sort_by": "date_modified",
            "sort_order": "ASC",
            "per_page": "100",
            "page": q["page"],
        }
        for q in api.bulk_queries
    )
    ids = [r.response_id for page in pages for r in page.responses]
    assert ids == [r["id"] for r in inside]  # each once, oldest first; neither outside nor partial
    assert [len(p.responses) for p in pages] == [100, 100, 50] and pages[0].total == 250
    first = pages[0].responses[0]
    assert first.submitted_at == SINCE and first.submission.event_id == inside[0]["id"]
    assert first.submission.answers[0].value == "answer 0" and first.submission.form_title == SURVEY["title"]


@pytest.mark.anyio
async def test_the_webhook_and_the_listing_give_the_same_identity_and_the_same_answers() -> None:
    request = InboundRequest(
        method="POST",
        url=FIXTURE["url"],
        headers={k.lower(): v for k, v in FIXTURE["headers"].items()},
        body=FIXTURE["body"].encode("utf-8"),
    )
    envelope = connector.envelope(request)
    assert envelope.kind == "submission" and envelope.response_id == DETAILS["id"] == "175618370689"
    completed = {**copy.deepcopy(DETAILS), "date_modified": "2026-11-20T14:03:27+00:00"}
    with respx.mock(assert_all_called=False) as mock:
        FakeSurveyMonkey([completed]).mount(mock)
        mock.get(DETAILS_URL).respond(200, json=DETAILS)
        [page] = await listed(SurveyMonkeyReconciler())
        [fetched] = await expand(SurveyMonkeyConnector(), thin(), source())
    [one] = page.responses
    assert one.response_id == envelope.response_id
    got = one.submission
    assert answers_of(got) == answers_of(fetched) == EXPECTED
    assert [(a.key, a.label, a.type, a.value) for a in got.answers] == [
        (a.key, a.label, a.type, a.value) for a in fetched.answers
    ]
    for field in ("email", "name", "hidden", "form_id", "form_title", "submitted_at", "provider"):
        assert getattr(got, field) == getattr(fetched, field), field
    for key in (
        "response_id",
        "survey_id",
        "collector_id",
        "response_href",
        "details_href",
        "response_status",
    ):
        assert got.metadata[key] == fetched.metadata[key], key
    assert got.event_id == one.response_id  # the API has no event id of its own


@pytest.mark.anyio
async def test_429_waits_the_retry_after_then_succeeds() -> None:
    time = VirtualTime()
    api = FakeSurveyMonkey([item(1, SINCE + timedelta(hours=1))])
    with respx.mock(assert_all_called=False) as mock:
        api.mount(mock)
        limited = rate_limited("7", json={"error": {"id": "1040"}})
        mock.get(BULK_URL).mock(side_effect=first_answer_then(limited, api.bulk))
        pages = await listed(SurveyMonkeyReconciler(sleep=time.sleep))
    assert time.sleeps == [7.0]
    assert ids_of(pages) == ["900000000001"]


@pytest.mark.anyio
async def test_a_revoked_token_fails_permanently_saying_what_to_do_without_the_token() -> None:
    revoked = "sm-revoked-token-0123456789"
    api = FakeSurveyMonkey([item(1, SINCE + timedelta(hours=1))])
    with respx.mock(assert_all_called=False) as mock:
        api.mount(mock)
        with pytest.raises(ReconcileFailed) as caught:
            await listed(SurveyMonkeyReconciler(), credentials={"access_token": revoked})
    assert_refused_without((revoked, TOKEN), caught, "HTTP 401", "access_token")


@pytest.mark.anyio
async def test_a_response_deleted_at_surveymonkey_is_simply_not_listed() -> None:
    responses = [item(n, SINCE + timedelta(hours=n)) for n in range(1, 4)]
    api = FakeSurveyMonkey(responses)
    del api.responses[1]  # deleted at SurveyMonkey: its webhook came, the listing no longer has it
    with respx.mock(assert_all_called=False) as mock:
        api.mount(mock)
        pages = await listed(SurveyMonkeyReconciler())
    assert ids_of(pages) == ["900000000001", "900000000003"]


@pytest.mark.anyio
async def test_an_unreadable_response_is_set_aside_and_the_others_are_listed() -> None:
    responses = [item(n, SINCE + timedelta(hours=n)) for n in range(1, 5)]
    responses[2]["custom_variables"] = ["ref", "abc"]  # not an object: any failure, not just a known one
    api = FakeSurveyMonkey(responses)
    with respx.mock(assert_all_called=False) as mock:
        api.mount(mock)
        pages = await listed(SurveyMonkeyReconciler())
    assert ids_of(pages) == ["900000000001", "900000000002", "900000000004"]
    problem = "'list' object has no attribute 'items'"
    assert_set_aside(pages, "900000000003", SINCE + timedelta(hours=3), problem)


@pytest.mark.anyio
async def test_an_old_response_edited_in_the_window_is_not_listed_again() -> None:
    edited = item(7, SINCE + timedelta(hours=1))
    edited["date_created"] = (SINCE - timedelta(days=30)).isoformat()  # long before the look-back
    late = item(8, SINCE + timedelta(hours=2))
    late["date_created"] = (SINCE - timedelta(hours=5)).isoformat()  # started before, completed in the window
    with respx.mock(assert_all_called=False) as mock:
        FakeSurveyMonkey([edited, late]).mount(mock)
        pages = await listed(SurveyMonkeyReconciler())
    assert ids_of(pages) == [late["id"]]


def test_settings_validation_says_what_is_wrong() -> None:
    assert settings().credentials is None and settings(survey_id=405631222).survey_id == SURVEY_ID
    known = {"survey_id": SURVEY_ID}
    cases: list[tuple[dict[str, Any], str]] = [
        ({"survey_id": None}, "survey_id"),
        ({"survey_id": "https://www.surveymonkey.com/r/ABC"}, "not its URL"),
        ({}, "Field required"),
        ({**known, "credentials": {"access_token": " "}}, "empty .is its environment variable"),
        ({**known, "credentials": {"access_token": "${SM_TOKEN}"}}, "unexpanded"),
        ({**known, "credentials": {"access_token": "abc def ghi jkl mno"}}, "must not contain spaces"),
        ({**known, "credentials": {"access_token": f"Bearer {TOKEN}"}}, "without 'Bearer '"),
        ({**known, "credentials": {"access_token": "abc"}}, "does not look like"),
        ({**known, "credentials": {}}, "access_token"),
        ({**known, "credentials": {"access_token": TOKEN, "secret": "x"}}, "Extra inputs"),
        ({**known, "api_base_url": "http://api.surveymonkey.com"}, "must use https"),
    ]
    for data, message in cases:
        with pytest.raises(ValidationError, match=message):
            SurveyMonkeyReconcileSettings.model_validate(data)
    assert TOKEN not in repr(settings(credentials={"access_token": TOKEN}))
    eu = settings(api_base_url="https://api.eu.surveymonkey.com/v3/")
    assert eu.api_base_url == "https://api.eu.surveymonkey.com"


@pytest.mark.anyio
async def test_no_token_anywhere_fails_permanently_before_any_call() -> None:
    bare = Source(options=SurveyMonkeyOptions())
    with (
        respx.mock(assert_all_called=False) as mock,
        pytest.raises(ReconcileFailed, match="no access token") as caught,
    ):
        await pages_of(SurveyMonkeyReconciler(), bare, settings(), WINDOW)
    assert caught.value.permanent and not mock.calls


def hook(webhook_id: str, url: str, **extra: Any) -> dict[str, Any]:
    return {
        "id": webhook_id,
        "name": f"hook {webhook_id}",
        "event_type": "response_completed",
        "object_type": "survey",
        "object_ids": [SURVEY_ID],
        "subscription_url": url,
        "href": f"{BASE}/v3/webhooks/{webhook_id}",
        **extra,
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("webhooks", "expected_url", "state"),
    [
        ([hook("11", f"{HOOK_URL}?token=s3cr3t")], HOOK_URL, "ok"),
        ([hook("12", HOOK_URL + "/", object_type="collector", object_ids=["491328943"])], HOOK_URL, "ok"),
        ([hook("13", HOOK_URL)], None, "ok"),
        ([hook("14", "https://old.example.org/hooks/nps?token=s3cr3t")], HOOK_URL, "elsewhere"),
        ([], HOOK_URL, "missing"),
        (
            [hook("15", HOOK_URL, object_ids=["999"]), hook("16", HOOK_URL, event_type="response_updated")],
            None,
            "missing",
        ),
    ],
    ids=["ok", "collector-to-us", "ok-url-unknown", "elsewhere", "none", "other-survey-or-event"],
)
async def test_webhook_health(webhooks: list[dict[str, Any]], expected_url: str | None, state: str) -> None:
    api = FakeSurveyMonkey([], webhooks)
    with respx.mock(assert_all_called=False) as mock:
        api.mount(mock)
        health = await SurveyMonkeyReconciler().webhook_health(
            source(), settings(), expected_url, respx_sender()
        )
    assert health is not None and health.state == state
    assert "s3cr3t" not in health.detail and TOKEN not in health.detail
    if state == "elsewhere":  # named by its host only: another service's path may be its secret
        assert "sends to old.example.org, not to" in health.detail and "/hooks/nps" not in health.detail


@pytest.mark.anyio
async def test_webhook_listing_is_paged() -> None:
    webhooks = [hook(str(100 + n), f"https://other.example/{n}", object_ids=["1"]) for n in range(150)]
    webhooks.append(hook("999", HOOK_URL))
    api = FakeSurveyMonkey([], webhooks)
    with respx.mock(assert_all_called=False) as mock:
        api.mount(mock)
        health = await SurveyMonkeyReconciler().webhook_health(source(), settings(), HOOK_URL, respx_sender())
    assert health is not None and health.state == "ok" and "999" in health.detail
