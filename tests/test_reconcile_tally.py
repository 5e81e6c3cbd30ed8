"""Tally reconciliation: the submissions listing and the webhook state against a fake Tally API (respx).

The fake follows what Tally documents (docs/providers/tally.md, "Reconciliation"):
`GET /forms/{id}/submissions` with `page`, `filter`, `startDate`/`endDate` (inclusive), 50 submissions
a page, `hasMore` and `totalNumberOfSubmissionsPerFilter`; `GET /webhooks` with `page`/`limit` and `hasMore`.
Where Tally documents no shape (a choice answer, a list webhook's `formId`) it serves the webhook's.
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
from connectors.reconciling import ListedResponse, ReconcileFailed, Window
from connectors.tally import connector
from connectors.tally.api import TallyReconciler, TallyReconcileSettings
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

FORM = "mBzNlP"
KEY = "tly-9a8b7c6d5e4f3a2b1c0d"
BASE = "https://api.tally.so"
LIST_URL = f"{BASE}/forms/{FORM}/submissions"
HOOKS_URL = f"{BASE}/webhooks"
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 21, tzinfo=UTC)
PUBLIC = "https://hub.example.org/hooks/tally-waitlist"
SOURCE = FixtureSource(secrets=["s"])
FIXTURE = load_fixture(PROVIDER_FIXTURES / "tally" / "full_event_registration.json")


def settings(**extra: Any) -> TallyReconcileSettings:
    raw = {"form_id": FORM, "credentials": {"api_key": KEY}, **extra}
    return TallyReconcileSettings.model_validate(raw)


def webhook_request(fx: dict[str, Any]) -> InboundRequest:
    headers = {k.lower(): v for k, v in fx["headers"].items()}
    return InboundRequest(fx["method"], fx["url"], headers, fx["body"].encode("utf-8"))


# -- the fake Tally API --------------------------------------------------------------------


def question(qid: str, title: str, type_: str = "INPUT_TEXT", **extra: Any) -> dict[str, Any]:
    return {"id": qid, "type": type_, "title": title, "fields": [{"uuid": qid, "title": title}], **extra}


def submission(sid: str, at: datetime, answers: dict[str, Any], completed: bool = True) -> dict[str, Any]:
    return {
        "id": sid,
        "formId": FORM,
        "respondentId": f"r{sid}",
        "isCompleted": completed,
        "submittedAt": iso_utc(at),
        "responses": [{"id": f"a{sid}{q}", "questionId": q, "answer": a} for q, a in answers.items()],
    }


@dataclass
class FakeTally:
    """Tally's submissions listing: newest first, 50 a page, dates inclusive, 401 for another key."""

    questions: list[dict[str, Any]]
    submissions: list[dict[str, Any]]
    pages_asked: list[dict[str, str]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return httpx.Response(401, json={"message": "Unauthorized"})
        query = dict(request.url.params)
        self.pages_asked.append(query)
        since, until = parse_instant(query["startDate"]), parse_instant(query["endDate"])
        wanted = query.get("filter", "all")
        chosen = [
            s
            for s in sorted(self.submissions, key=lambda s: s["submittedAt"], reverse=True)
            if since <= parse_instant(s["submittedAt"]) <= until
            and (wanted == "all" or s["isCompleted"] == (wanted == "completed"))
        ]
        page = int(query.get("page", "1"))
        part = chosen[(page - 1) * 50 : page * 50]
        completed = sum(s["isCompleted"] for s in chosen)
        return httpx.Response(
            200,
            json={
                "page": page,
                "limit": 50,
                "hasMore": page * 50 < len(chosen),
                "totalNumberOfSubmissionsPerFilter": {
                    "all": len(chosen),
                    "completed": completed,
                    "partial": len(chosen) - completed,
                },
                "questions": self.questions,
                "submissions": part,
            },
        )


async def listing(fake: Any, reconciler: TallyReconciler | None = None, **kw: Any) -> list[Any]:
    reconciler = reconciler or TallyReconciler(sleep=VirtualTime().sleep)
    with respx.mock(assert_all_called=False) as mock:
        mock.get(LIST_URL).mock(side_effect=fake)
        return await pages_of(reconciler, SOURCE, settings(**kw), Window(SINCE, UNTIL))


def many() -> FakeTally:
    subs = [
        submission(f"S{n:03d}", SINCE + timedelta(minutes=7 * n), {"qName": f"Person {n}"})
        for n in range(123)
    ]
    subs += [
        submission("PART01", SINCE + timedelta(hours=1), {"qName": "left halfway"}, completed=False),
        submission("BEFORE", SINCE - timedelta(milliseconds=1), {"qName": "too early"}),
        submission("ATEND0", UNTIL, {"qName": "at until: the next window's"}),
    ]
    return FakeTally([question("qName", "Full name")], subs)


# -- (1) paging ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_listing_reads_every_page_once_with_the_window_as_tally_wants_it() -> None:
    fake = many()
    pages = await listing(fake)
    ids = ids_of(pages)
    assert len(pages) == 3 and [q["page"] for q in fake.pages_asked] == ["1", "2", "3"]
    assert sorted(ids) == [f"S{n:03d}" for n in range(123)]  # each once; no partial, none outside
    assert all(q["filter"] == "completed" for q in fake.pages_asked)
    # The window widened by a second each way (Tally's bounds are inclusive), cut to [since, until) here.
    assert fake.pages_asked[0]["startDate"] == "2026-10-31T23:59:59Z"
    assert fake.pages_asked[0]["endDate"] == "2026-11-21T00:00:01Z"
    assert pages[0].total == 125  # Tally's count for the widened window (BEFORE and ATEND0 are in it)
    first = next(r for p in pages for r in p.responses if r.response_id == "S005")
    assert first.submitted_at == SINCE + timedelta(minutes=35)
    assert first.submission.answer_map() == {"Full name": "Person 5"}
    assert first.submission.event_id == "S005" and first.submission.form_id == FORM


# -- (2) identity --------------------------------------------------------------------------


def fixture_as_api_item() -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """The fixture's response as the listing would give it: one question per webhook field (the per-option
    CHECKBOXES sub-fields are the webhook's own), the answer as the webhook's value."""
    data = json.loads(FIXTURE["body"])["data"]
    parents: list[str] = []
    questions, answers = [], {}
    for f in data["fields"]:
        if any(f["key"].startswith(p + "_") for p in parents):
            continue
        parents.append(f["key"])
        qid = f["key"].removeprefix("question_")
        extra = {"options": f["options"]} if "options" in f else {}
        questions.append(question(qid, f["label"], f["type"], **extra))
        answers[qid] = f["value"]
    item = submission(data["responseId"], parse_instant(data["createdAt"]), answers)
    item["respondentId"] = data["respondentId"]
    return questions, item


@pytest.mark.anyio
async def test_a_listed_response_has_the_webhooks_response_id_and_answers() -> None:
    request = webhook_request(FIXTURE)
    envelope = connector.envelope(request)
    webhook = connector.normalize(request, NormalizeContext("sub", "tally-waitlist", datetime.now(UTC)))
    questions, item = fixture_as_api_item()
    [page] = await listing(FakeTally(questions, [item]))
    [listed] = page.responses
    assert isinstance(listed, ListedResponse)
    assert envelope.kind == "submission" and envelope.response_id == "Kw9Kwq" == listed.response_id
    assert envelope.event_id != listed.response_id  # the webhook's eventId is not the identity
    got = listed.submission
    assert got.answer_map() == webhook.answer_map() == FIXTURE["expect"]["answers"]
    assert [a.key for a in got.answers] == [a.key for a in webhook.answers]
    assert [a.type for a in got.answers] == [a.type for a in webhook.answers]
    assert (got.email, got.hidden, got.form_id) == (webhook.email, webhook.hidden, webhook.form_id)
    assert got.submitted_at == webhook.submitted_at == listed.submitted_at
    assert got.metadata == {k: v for k, v in webhook.metadata.items() if k != "event_created_at"}


def test_only_submission_events_carry_a_response_id() -> None:
    body = json.loads(FIXTURE["body"])
    body["eventType"] = "FORM_UPDATED"
    other = webhook_request({**FIXTURE, "body": json.dumps(body)})
    assert connector.envelope(other).kind == "ignored" and connector.envelope(other).response_id is None


# -- (3) 429, (4) 401, (5) deleted -------------------------------------------------------------


@pytest.mark.anyio
async def test_a_429_is_waited_out_for_its_retry_after_then_read() -> None:
    fake, time = many(), VirtualTime()
    limited = first_answer_then(rate_limited("7", json={"message": "Too many requests"}), fake)
    pages = await listing(limited, TallyReconciler(sleep=time.sleep))
    assert time.sleeps == [7.0]
    assert sum(len(p.responses) for p in pages) == 123


@pytest.mark.anyio
async def test_a_refused_key_stops_the_run_saying_what_to_do_without_the_key() -> None:
    revoked = "tly-revokedrevokedrevoked"
    with pytest.raises(ReconcileFailed) as caught:
        await listing(many(), credentials={"api_key": revoked})
    hints = ("HTTP 401", "tally.so/settings/api-keys", "reconcile.credentials.api_key")
    assert_refused_without((revoked, KEY), caught, *hints)


@pytest.mark.anyio
async def test_a_missing_form_is_permanent_and_names_the_setting() -> None:
    with respx.mock() as mock:
        mock.get(LIST_URL).respond(404, json={"message": "Form not found"})
        with pytest.raises(ReconcileFailed) as caught:
            async for _ in TallyReconciler().responses(
                SOURCE, settings(), Window(SINCE, UNTIL), respx_sender()
            ):
                pass
    assert caught.value.permanent and "reconcile.form_id" in str(caught.value)


@pytest.mark.anyio
async def test_a_response_deleted_at_tally_is_simply_not_listed() -> None:
    fake = many()
    fake.submissions = [s for s in fake.submissions if s["id"] != "S050"]
    pages = await listing(fake)
    ids = ids_of(pages)
    assert "S050" not in ids and len(ids) == len(set(ids)) == 122


@pytest.mark.anyio
async def test_an_unreadable_submission_is_set_aside_and_the_others_are_listed() -> None:
    fake = many()
    odd = submission("ODD001", SINCE + timedelta(minutes=3), {"qName": "x"})
    odd["responses"] = 42  # not a list of answers
    fake.submissions.append(odd)
    pages = await listing(fake)
    assert sorted(ids_of(pages)) == [f"S{n:03d}" for n in range(123)]
    assert_set_aside(
        pages, "ODD001", SINCE + timedelta(minutes=3), "the submission's responses is not a list"
    )


# -- (6) settings --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"form_id": FORM}, "credentials"),
        ({"form_id": FORM, "credentials": {}}, "api_key"),
        ({"form_id": FORM, "credentials": {"api_key": ""}}, "empty"),
        ({"form_id": FORM, "credentials": {"api_key": "sk_live_123456"}}, "starts with 'tly-'"),
        ({"form_id": FORM, "credentials": {"api_key": f"Bearer {KEY}"}}, "without 'Bearer '"),
        ({"form_id": FORM, "credentials": {"api_key": KEY, "secret": "x"}}, "Extra inputs"),
        ({"credentials": {"api_key": KEY}}, "form_id"),
        ({"form_id": "tally.so/r/x", "credentials": {"api_key": KEY}}, "letters and digits"),
        ({"form_id": FORM, "credentials": {"api_key": KEY}, "api_base_url": "ftp://x"}, "https URL such as"),
        (
            {"form_id": FORM, "credentials": {"api_key": KEY}, "api_base_url": "http://api.tally.so"},
            "must use https, as in https://api.tally.so",
        ),
    ],
)
def test_settings_say_what_is_wrong(raw: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        TallyReconcileSettings.model_validate(raw)
    assert says in str(caught.value)
    assert all(KEY not in e["msg"] for e in caught.value.errors())


def test_settings_defaults_and_the_key_stays_secret() -> None:
    ok = settings(api_base_url="http://127.0.0.1:8080/", every="30m")
    assert ok.api_base_url == "http://127.0.0.1:8080" and ok.every == 1800
    assert settings().api_base_url == BASE
    assert KEY not in repr(ok) and KEY not in str(ok.model_dump())
    assert connector.reconciler is not None and connector.reconciler.Settings is TallyReconcileSettings


# -- (7) webhook health ------------------------------------------------------------------------


def hook(hid: str, url: str, enabled: bool = True, form: str = FORM) -> dict[str, Any]:
    return {"id": hid, "formId": form, "url": url, "eventTypes": ["FORM_RESPONSE"], "isEnabled": enabled}


async def health(pages: list[list[dict[str, Any]]], expected: str | None = PUBLIC) -> Any:
    asked: list[dict[str, str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        page = int(request.url.params.get("page", "1"))
        return httpx.Response(
            200, json={"webhooks": pages[page - 1], "page": page, "hasMore": page < len(pages)}
        )

    with respx.mock() as mock:
        mock.get(HOOKS_URL).mock(side_effect=answer)
        result = await TallyReconciler().webhook_health(SOURCE, settings(), expected, respx_sender())
    assert [q["page"] for q in asked] == [str(n) for n in range(1, len(pages) + 1)]
    return result


@pytest.mark.anyio
async def test_webhook_health_ok_across_pages_ignoring_the_query() -> None:
    other = hook("w1", "https://elsewhere.example/x", form="other1")
    result = await health([[other], [hook("w2", PUBLIC + "?token=abc")]])
    assert result.state == "ok"


@pytest.mark.anyio
async def test_webhook_health_disabled() -> None:
    result = await health([[hook("w1", PUBLIC, enabled=False)]])
    assert result.state == "disabled" and "disabled" in result.detail


@pytest.mark.anyio
async def test_webhook_health_missing() -> None:
    result = await health([[hook("w1", PUBLIC, form="other1")]])
    assert result.state == "missing" and FORM in result.detail


@pytest.mark.anyio
async def test_webhook_health_elsewhere_never_prints_a_query() -> None:
    result = await health([[hook("w1", "https://old-hub.example.org/hooks/tally-waitlist?token=s3cr3t")]])
    assert result.state == "elsewhere" and "(they go to old-hub.example.org)" in result.detail
    assert "s3cr3t" not in result.detail and "token" not in result.detail
    # Another service's webhook is named by its host alone: its path may be its secret.
    result = await health([[hook("w1", "https://hooks.zapier.com/hooks/catch/123/abc/")]])
    assert result.state == "elsewhere" and "hooks.zapier.com" in result.detail
    assert "catch" not in result.detail


@pytest.mark.anyio
async def test_webhook_health_is_unknown_when_the_list_does_not_name_forms() -> None:
    bare = {k: v for k, v in hook("w1", PUBLIC).items() if k != "formId"}
    assert await health([[bare]]) is None


@pytest.mark.anyio
async def test_webhook_health_without_a_public_url_judges_only_enabled() -> None:
    result = await health([[hook("w1", "https://anywhere.example/x")]], expected=None)
    assert result.state == "ok"
