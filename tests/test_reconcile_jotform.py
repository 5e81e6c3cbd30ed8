"""Jotform reconciliation: the submissions listing, the identity rule, errors and the webhook check,
against a fake of Jotform's API (respx) built from the facts in docs/providers/jotform.md
("Reconciliation (missed webhooks)"): `GET /form/{id}/submissions` with `offset`, `limit`, a JSON
`filter` on `created_at` (wall-clock time in America/New_York), the key in the `APIKEY` header;
`{"content": [...], "resultSet": {...}}`; `GET /form/{id}` for the title; `GET /form/{id}/webhooks`.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel, ValidationError

import connectors.jotform.api as jotform_api
from connectors.base import InboundRequest, NoOptions, NormalizeContext
from connectors.jotform import connector
from connectors.jotform.api import JotformReconciler, JotformReconcileSettings
from connectors.reconciling import ListedResponse, ReconcileFailed, Window
from hub.submission import Submission, parse_instant
from tests.harness import PROVIDER_FIXTURES, load_fixture
from tests.httpx_senders import respx_sender
from tests.reconcile_cases import VirtualTime, assert_refused_without, assert_set_aside, ids_of, rate_limited

FIXTURE = load_fixture(PROVIDER_FIXTURES / "jotform" / "full_event_registration.json")
FORM_ID = "243231271343446"
KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
HOOK = "https://hooks.example.com/hookhub/in/jotform/243231271343446"
TITLE = "PyConf 2026 \u2013 Anmeldung"
WINDOW = Window(datetime(2026, 11, 20, 14, 0, tzinfo=UTC), datetime(2026, 11, 20, 15, 0, tzinfo=UTC))


@dataclass(frozen=True)
class Source:
    secrets: list[str] = field(default_factory=list)
    tolerance: int = 300
    public_url: str | None = None
    options: BaseModel = field(default_factory=NoOptions)


def settings(**overrides: Any) -> JotformReconcileSettings:
    raw = {"form_id": FORM_ID, "credentials": {"api_key": KEY}, **overrides}
    return JotformReconcileSettings.model_validate(raw)


def _q(order: int, name: str, text: str, type_: str, answer: Any = None) -> dict[str, Any]:
    question = {"name": name, "order": str(order), "text": text, "type": type_}
    return question if answer is None else {**question, "answer": answer}


# The fixture's response as GET /form/{id}/submissions lists it: answers by question id, with the
# question's name (the rawRequest slug), text (the label) and answer in rawRequest's shapes.
API_ANSWERS = {
    "1": _q(1, "heading", "PyConf 2026 Anmeldung", "control_head"),
    "3": _q(
        2,
        "fullName",
        "Full name",
        "control_fullname",
        {"first": "Ren\u00e9e", "last": "M\u00fcller-L\u00fcdenscheidt"},
    ),
    "4": _q(3, "workEmail", "Work email", "control_email", "renee.mueller@example.de"),
    "6": _q(4, "howMany", "How many tickets?", "control_number", "3"),
    "7": _q(
        5,
        "whichSessions",
        "Which sessions will you attend?",
        "control_checkbox",
        ["Keynote", "Workshop: Async Python \U0001f40d", "Closing party \U0001f389"],
    ),
    "8": _q(6, "dietaryPreference", "Dietary preference", "control_dropdown", "Vegetarian"),
    "10": _q(
        7,
        "arrivalDate",
        "Arrival date",
        "control_datetime",
        {"month": "03", "day": "14", "year": "2026", "datetime": "2026-03-14 00:00:00"},
    ),
    "11": _q(
        8,
        "uploadYour",
        "Upload your ID",
        "control_fileupload",
        [
            "https://www.jotform.com/uploads/acme_events/243231271343446/7674459295133471334/passport%20scan.pdf"
        ],
    ),
    "12": _q(9, "howWould", "How would you rate last year's event?", "control_scale", "4"),
    "14": _q(10, "mobilePhone", "Mobile phone", "control_phone", {"full": "+49 151 23456789"}),
    "15": _q(
        11,
        "companyWebsite",
        "Company website",
        "control_textbox",
        "https://m\u00fcller.example.de/\u00fcber-uns",
    ),
    "16": _q(12, "iAgree", "I agree to the code of conduct", "control_radio", "Yes"),
    "18": _q(
        13,
        "anythingElse",
        "Anything else we should know?",
        "control_textarea",
        "Looking forward to it!\nSecond line with \u201ccurly quotes\u201d, "
        "a na\u00efve caf\u00e9 & <b>markup</b>.",
    ),
    "19": _q(14, "referralCode", "Referral code (optional)", "control_textbox", ""),
    "20": _q(15, "submit", "Submit", "control_button"),
}


def item(
    sid: str, created_at: str, status: str = "ACTIVE", answers: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "id": sid,
        "form_id": FORM_ID,
        "ip": "198.51.100.23",
        "created_at": created_at,
        "updated_at": None,
        "status": status,
        "new": "1",
        "flag": "0",
        "answers": answers
        if answers is not None
        else {"4": _q(1, "email", "Email", "control_email", f"{sid}@example.org")},
    }


# 09:03:27 in New York on 20 November (EST, UTC-5) is the fixture's 14:03:27Z.
FIXTURE_ITEM = item("7674459295133471334", "2026-11-20 09:03:27", answers=API_ANSWERS)


class FakeJotform:
    """Jotform's API as documented: offset/limit paging, the created_at filter compared as text
    ("YYYY-MM-DD HH:MM:SS" sorts as time), newest first, 401 without the key."""

    def __init__(self, submissions: list[dict[str, Any]], webhooks: Any = None) -> None:
        self.submissions = submissions
        self.webhooks = {} if webhooks is None else webhooks
        self.queued: list[httpx.Response] = []  # answered first, one per call (429s, 5xxs)
        self.calls: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.calls.append(request)
        if self.queued:
            return self.queued.pop(0)
        if request.headers.get("apikey") != KEY:
            return httpx.Response(401, json={"responseCode": 401, "message": "You're not authorized"})
        path = request.url.path
        if path == f"/form/{FORM_ID}/submissions":
            return self._list(request)
        if path == f"/form/{FORM_ID}":
            return self._ok({"id": FORM_ID, "title": TITLE, "status": "ENABLED"})
        if path == f"/form/{FORM_ID}/webhooks":
            return self._ok(self.webhooks)
        return httpx.Response(404, json={"responseCode": 404, "message": "Form not found"})

    @staticmethod
    def _ok(content: Any, **extra: Any) -> httpx.Response:
        return httpx.Response(
            200,
            json={"responseCode": 200, "message": "success", "content": content, "limit-left": 9990, **extra},
        )

    def _list(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        offset, limit = int(params.get("offset", "0")), int(params.get("limit", "20"))
        rules = json.loads(params.get("filter", "{}"))
        rows = [
            s
            for s in self.submissions
            if s["created_at"] > rules.get("created_at:gt", "")
            and s["created_at"] < rules.get("created_at:lt", "9999")
        ]
        rows.sort(key=lambda s: s["created_at"], reverse=True)
        page = rows[offset : offset + limit]
        return self._ok(page, resultSet={"offset": offset, "limit": limit, "count": len(page)})


async def listing(
    fake: FakeJotform, reconciler: JotformReconciler | None = None, **overrides: Any
) -> list[list[ListedResponse]]:
    pages = []
    with respx.mock() as mock:
        mock.route(host="api.jotform.com").mock(side_effect=fake)
        async for page in (reconciler or JotformReconciler()).responses(
            Source(), settings(**overrides), WINDOW, respx_sender()
        ):
            pages.append(page.responses)
    return pages


def webhook_submission() -> Submission:
    request = InboundRequest(
        method=FIXTURE["method"],
        url=FIXTURE["url"],
        headers={k.lower(): v for k, v in FIXTURE["headers"].items()},
        body=FIXTURE["body"].encode("utf-8"),
    )
    assert connector.envelope(request).response_id == "7674459295133471334"
    context = NormalizeContext("sub_1", "jotform", parse_instant(FIXTURE["received_at"]))
    return connector.normalize(request, context)


@pytest.fixture
def small_pages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jotform_api, "PAGE_SIZE", 2)


@pytest.mark.anyio
@pytest.mark.usefixtures("small_pages")
async def test_listing_reads_every_page_once_with_the_window_as_jotform_filters_it() -> None:
    inside = [item(f"60000000000000000{n:02d}", f"2026-11-20 09:{n * 10:02d}:00") for n in range(5)]
    edges = [
        item("6000000000000000100", "2026-11-20 08:59:59"),  # 13:59:59Z: before the window
        item("6000000000000000101", "2026-11-20 10:00:00"),  # 15:00:00Z: `until` is not in the window
    ]
    fake = FakeJotform(inside + edges)
    pages = await listing(fake)
    # The filter lets both edges through (it is widened by a second); 10:00:00 is then cut here.
    # Six rows at two a page: three full pages, and a fourth, empty, ends the listing.
    assert len(pages) == 4 and [len(p) for p in pages][-1] == 0
    ids = [r.response_id for page in pages for r in page]
    assert sorted(ids) == sorted(s["id"] for s in inside) and len(set(ids)) == 5
    lists = [c for c in fake.calls if c.url.path.endswith("/submissions")]
    assert [c.url.params["offset"] for c in lists] == ["0", "2", "4", "6"]
    assert {c.url.params["limit"] for c in lists} == {"2"}
    assert {c.url.params["orderby"] for c in lists} == {"created_at"}
    # [14:00Z, 15:00Z) is 09:00-10:00 in New York (EST); widened by a second, as the filter is strict.
    assert json.loads(lists[0].url.params["filter"]) == {
        "created_at:gt": "2026-11-20 08:59:59",
        "created_at:lt": "2026-11-20 10:00:01",
    }
    assert all(c.headers["apikey"] == KEY and KEY not in str(c.url) for c in fake.calls)
    first = next(r for page in pages for r in page if r.response_id == inside[0]["id"])
    assert first.submitted_at == datetime(2026, 11, 20, 14, 0, tzinfo=UTC)
    assert first.submission.form_title == TITLE and first.submission.form_id == FORM_ID
    assert first.submission.email == f"{inside[0]['id']}@example.org"
    assert sum(c.url.path == f"/form/{FORM_ID}" for c in fake.calls) == 1  # the title: once a run


@pytest.mark.anyio
async def test_summer_time_and_another_account_zone() -> None:
    july = Window(datetime(2026, 7, 1, 13, 0, tzinfo=UTC), datetime(2026, 7, 1, 14, 0, tzinfo=UTC))
    fake = FakeJotform(
        [
            item("6100000000000000001", "2026-07-01 09:30:00"),
            item("6100000000000000002", "2026-07-01 15:30:00"),
        ]
    )
    with respx.mock() as mock:
        mock.route(host="api.jotform.com").mock(side_effect=fake)
        edt = [
            r
            async for p in JotformReconciler().responses(Source(), settings(), july, respx_sender())
            for r in p.responses
        ]
        berlin = [
            r
            async for p in JotformReconciler().responses(
                Source(), settings(timezone="Europe/Berlin"), july, respx_sender()
            )
            for r in p.responses
        ]
    assert [(r.response_id, r.submitted_at.hour) for r in edt] == [("6100000000000000001", 13)]  # EDT, UTC-4
    assert [(r.response_id, r.submitted_at.hour) for r in berlin] == [("6100000000000000002", 13)]  # CEST


@pytest.mark.anyio
async def test_the_webhook_and_the_listing_name_the_same_response_with_the_same_answers() -> None:
    fake = FakeJotform([FIXTURE_ITEM])
    [[listed]] = await listing(fake)
    webhook = webhook_submission()
    assert listed.response_id == webhook.event_id == FIXTURE["expect"]["event_id"]
    listed_answers = [a.model_dump() for a in listed.submission.answers]
    assert listed_answers == [a.model_dump() for a in webhook.answers]
    assert listed.submission.answer_map() == FIXTURE["expect"]["answers"]
    assert listed.submission.event_id == webhook.event_id
    assert (listed.submission.form_id, listed.submission.form_title) == (webhook.form_id, webhook.form_title)
    assert (listed.submission.email, listed.submission.name) == (webhook.email, webhook.name)
    assert listed.submitted_at == parse_instant(
        "2026-11-20T14:03:27Z"
    )  # the webhook has only its receive time
    assert listed.submission.metadata == {"ip": "198.51.100.23"}


@pytest.mark.anyio
async def test_429_waits_the_retry_after_then_succeeds() -> None:
    time = VirtualTime()
    fake = FakeJotform([FIXTURE_ITEM])
    fake.queued = [rate_limited("7", json={"responseCode": 429})]
    [[listed]] = await listing(fake, JotformReconciler(sleep=time.sleep))
    assert time.sleeps == [7.0] and listed.response_id == FIXTURE_ITEM["id"]


@pytest.mark.anyio
async def test_a_revoked_key_fails_for_good_and_says_what_to_do_without_the_key() -> None:
    revoked = "ffffeeeeddddccccbbbbaaaa99998888"
    fake = FakeJotform([FIXTURE_ITEM])
    with pytest.raises(ReconcileFailed) as caught:
        await listing(fake, credentials={"api_key": revoked})
    assert_refused_without(
        (revoked, KEY), caught, "HTTP 401", "reconcile.credentials.api_key", "Settings > API"
    )
    with pytest.raises(ReconcileFailed, match="reconcile.form_id") as missing:
        await listing(fake, form_id="240000000000001")
    assert missing.value.permanent


@pytest.mark.anyio
async def test_deleted_submissions_are_not_listed() -> None:
    kept = item("6200000000000000001", "2026-11-20 09:10:00")
    trashed = item("6200000000000000002", "2026-11-20 09:20:00", status="DELETED")  # in Jotform's trash
    fake = FakeJotform([kept, trashed])  # a third one, purged, is simply not in the fake
    pages = await listing(fake)
    assert [r.response_id for page in pages for r in page] == [kept["id"]]


@pytest.mark.anyio
async def test_an_unreadable_submission_is_set_aside_and_the_others_are_listed() -> None:
    good = [item(f"60000000000000000{n:02d}", f"2026-11-20 09:{n * 10:02d}:00") for n in range(3)]
    odd = item("6000000000000000099", "2026-11-20 09:15:00")
    odd["answers"] = ["Renée", "renee@example.de"]  # not an object of questions by id
    with respx.mock() as mock:
        mock.route(host="api.jotform.com").mock(side_effect=FakeJotform([*good, odd]))
        pages = [p async for p in JotformReconciler().responses(Source(), settings(), WINDOW, respx_sender())]
    assert sorted(ids_of(pages)) == sorted(s["id"] for s in good)
    assert all(r.submission.form_title == TITLE for p in pages for r in p.responses)
    problem = "the submission's answers are not an object of questions by id"
    assert_set_aside(pages, odd["id"], datetime(2026, 11, 20, 14, 15, tzinfo=UTC), problem)


def test_settings_are_checked_with_messages_an_admin_can_act_on() -> None:
    good = settings(api_base_url="https://eu-api.jotform.com/", every="15m")
    assert good.api_base_url == "https://eu-api.jotform.com" and good.timezone == "America/New_York"
    assert KEY not in repr(good) and KEY not in str(good.model_dump())
    cases: list[tuple[dict[str, Any], str]] = [
        ({"form_id": FORM_ID}, "credentials"),
        ({"form_id": FORM_ID, "credentials": {}}, "api_key"),
        ({"form_id": FORM_ID, "credentials": {"api_key": "  "}}, "empty .is its environment variable"),
        ({"form_id": FORM_ID, "credentials": {"api_key": "${JOTFORM_KEY}"}}, "unexpanded"),
        ({"form_id": FORM_ID, "credentials": {"api_key": "apiKey=0f1e2d3c4b5a6978"}}, "Settings > API"),
        ({"form_id": FORM_ID, "credentials": {"api_key": KEY, "token": "x"}}, "Extra inputs"),
        ({"form_id": "https://form.jotform.com/2432", "credentials": {"api_key": KEY}}, "digits in its URL"),
        (
            {"form_id": FORM_ID, "credentials": {"api_key": KEY}, "api_base_url": "http://api.jotform.com"},
            "https",
        ),
        ({"form_id": FORM_ID, "credentials": {"api_key": KEY}, "timezone": "EST5"}, "IANA time zone"),
        ({"form_id": FORM_ID, "credentials": {"api_key": KEY}, "formid": FORM_ID}, "Extra inputs"),
    ]
    for raw, expected in cases:
        with pytest.raises(ValidationError, match=expected):
            JotformReconcileSettings.model_validate(raw)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("webhooks", "expected_url", "state", "said", "unsaid"),
    [
        ({"0": f"{HOOK}?token=s3cret-token"}, f"{HOOK}?token=other", "ok", HOOK, "s3cret"),
        (["https://hook.integromat.com/abc", f"{HOOK}/?token=s3cret-token"], HOOK, "ok", HOOK, "s3cret"),
        ({}, HOOK, "missing", "Integrations > WebHooks", "token"),
        (
            {"0": "https://old-hub.example.org/hooks/signup?token=s3cret-token"},
            HOOK,
            "elsewhere",
            "old-hub",
            "s3cret",
        ),
        ({"0": "https://u:pw@old-hub.example.org/hooks/signup"}, HOOK, "elsewhere", "old-hub", "pw"),
        ({"0": "https://old-hub.example.org/hooks/signup"}, None, "ok", "1 webhook", "old-hub"),
        ({}, None, "missing", "no webhook", "token"),
    ],
)
async def test_webhook_health(
    webhooks: Any, expected_url: str | None, state: str, said: str, unsaid: str
) -> None:
    fake = FakeJotform([], webhooks=copy.deepcopy(webhooks))
    with respx.mock() as mock:
        mock.route(host="api.jotform.com").mock(side_effect=fake)
        health = await JotformReconciler().webhook_health(Source(), settings(), expected_url, respx_sender())
    assert health is not None and health.state == state
    assert said in health.detail and unsaid not in health.detail
    assert [c.url.path for c in fake.calls] == [f"/form/{FORM_ID}/webhooks"]
