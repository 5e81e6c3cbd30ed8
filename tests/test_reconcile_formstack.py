"""Formstack reconciliation: the submissions listing, the identity rule, errors and the webhook check,
against a fake of Formstack's API v2 (respx) built from the facts in docs/providers/formstack.md
("Reconciliation (missed webhooks)"): `GET /form/{id}/submission.json` with `page`, `per_page` (at most
100), `min_time`/`max_time` ("YYYY-MM-DD HH:MM:SS", Eastern time), `sort` and `data`; the answer's
`submissions` (`id`, `timestamp`, `data` by field id), `total` and `pages`; `GET /form/{id}/field.json`
(id, label, name); `GET /form/{id}/webhook.json` (`webhooks` with `url`); an OAuth2 bearer token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
import respx
from pydantic import ValidationError

from connectors.base import InboundRequest, NormalizeContext
from connectors.formstack import connector
from connectors.formstack.api import FormstackReconciler, FormstackReconcileSettings
from connectors.reconciling import ReconcileFailed, Window
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

FORM = "5123456"
TOKEN = "5e422b30c68d3b8d12358cb475f1d22c"
API = "https://www.formstack.com/api/v2"
LIST_URL = f"{API}/form/{FORM}/submission.json"
FIELDS_URL = f"{API}/form/{FORM}/field.json"
HOOKS_URL = f"{API}/form/{FORM}/webhook.json"
EASTERN = ZoneInfo("America/New_York")
SINCE = datetime(2026, 11, 2, tzinfo=UTC)  # after New York's autumn change of clocks
UNTIL = datetime(2026, 11, 21, tzinfo=UTC)
SOURCE = FixtureSource(secrets=["s"])
PUBLIC = "https://hub.example.org/hooks/formstack-reg"
FIXTURE = load_fixture(PROVIDER_FIXTURES / "formstack" / "full_json_hmac.json")

# The fixture's form as GET /form/{id}/field.json describes it (label = the webhook's key by default).
LABELS = [
    "Full name",
    "Work email",
    "How many tickets?",
    "Dietary preference",
    "Arrival date",
    "Upload your ID",
    "How would you rate last year's event?",
    "Mobile phone",
    "Company website",
    "I agree to the code of conduct",
    "Anything else we should know?",
    "Referral code (optional)",
]
FIELDS = [
    {"id": str(101 + i), "label": label, "name": label.lower().split(" ")[0] + f"_{i}", "type": "text"}
    for i, label in enumerate(LABELS)
]
BY_LABEL = {f["label"]: f["id"] for f in FIELDS}


def settings(**extra: Any) -> FormstackReconcileSettings:
    return FormstackReconcileSettings.model_validate(
        {"form_id": FORM, "credentials": {"token": TOKEN}, **extra}
    )


def stamp(at: datetime) -> str:
    return at.astimezone(EASTERN).strftime("%Y-%m-%d %H:%M:%S")


def item(sid: str, at: datetime, values: dict[str, Any]) -> dict[str, Any]:
    data = {BY_LABEL[k]: {"field": BY_LABEL[k], "value": v} for k, v in values.items()}
    return {
        "id": sid,
        "timestamp": stamp(at),
        "user_agent": "Mozilla/5.0",
        "remote_addr": "192.0.2.7",
        "payment_status": "",
        "data": data,
    }


@dataclass
class FakeFormstack:
    """Formstack's listing: Eastern wall-clock bounds (inclusive), `per_page` at most 100, by `page`."""

    items: list[dict[str, Any]]
    asked: list[dict[str, str]] = field(default_factory=list)
    field_calls: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(401, json={"status": "error", "error": "Invalid access token"})
        if request.url.path.endswith("/field.json"):
            self.field_calls += 1
            return httpx.Response(200, json=FIELDS)
        query = dict(request.url.params)
        self.asked.append(query)
        per_page, page = int(query.get("per_page", "25")), int(query.get("page", "1"))
        if not 1 <= per_page <= 100:
            return httpx.Response(400, json={"status": "error", "error": "per_page must be 1 to 100"})
        low, high = query.get("min_time", ""), query.get("max_time", "9999")
        chosen = sorted(
            (i for i in self.items if low <= i["timestamp"] <= high),
            key=lambda i: i["timestamp"],
            reverse=query.get("sort") != "ASC",
        )
        if query.get("data") != "true":
            chosen = [{k: v for k, v in i.items() if k != "data"} for i in chosen]
        pages = -(-len(chosen) // per_page)
        part = chosen[(page - 1) * per_page : page * per_page]
        return httpx.Response(200, json={"submissions": part, "total": len(chosen), "pages": pages})


def many() -> FakeFormstack:
    items = [
        item(str(4000000000 + n), SINCE + timedelta(minutes=5 * n), {"Work email": f"p{n}@example.org"})
        for n in range(250)
    ]
    items += [
        item("3999999999", SINCE - timedelta(seconds=1), {"Work email": "early@example.org"}),
        item("4999999999", UNTIL, {"Work email": "next-window@example.org"}),
    ]
    return FakeFormstack(items)


async def listing(fake: Any, reconciler: FormstackReconciler | None = None, **kw: Any) -> list[Any]:
    reconciler = reconciler or FormstackReconciler(sleep=VirtualTime().sleep)
    with respx.mock(assert_all_called=False) as mock:  # field.json is read only when something is listed
        mock.get(LIST_URL).mock(side_effect=fake)
        mock.get(FIELDS_URL).mock(side_effect=fake)
        return await pages_of(reconciler, SOURCE, settings(**kw), Window(SINCE, UNTIL))


@pytest.mark.anyio
async def test_listing_reads_every_page_once_with_the_window_in_eastern_time() -> None:
    fake = many()
    pages = await listing(fake)
    ids = ids_of(pages)
    assert len(pages) == 3 and [q["page"] for q in fake.asked] == ["1", "2", "3"]
    assert ids == [str(4000000000 + n) for n in range(250)]  # each once, oldest first, none outside
    first = fake.asked[0]
    assert (first["per_page"], first["sort"], first["data"]) == ("100", "ASC", "true")
    # 2026-11-02T00:00:00Z less a second is 18:59:59 the day before in New York (EST, UTC-5).
    assert first["min_time"] == "2026-11-01 18:59:59" and first["max_time"] == "2026-11-20 19:00:01"
    assert pages[0].total == 252 and fake.field_calls == 1  # Formstack's count of the widened range
    listed = next(r for p in pages for r in p.responses if r.response_id == "4000000007")
    assert listed.submitted_at == SINCE + timedelta(minutes=35)
    got = listed.submission
    assert got.answer_map() == {"Work email": "p7@example.org"} and got.email == "p7@example.org"
    assert (got.event_id, got.form_id, got.submitted_at) == ("4000000007", FORM, listed.submitted_at)


@pytest.mark.anyio
async def test_the_webhook_and_the_listing_name_the_same_response_with_the_same_answers() -> None:
    headers = {k.lower(): v for k, v in FIXTURE["headers"].items()}
    request = InboundRequest(FIXTURE["method"], FIXTURE["url"], headers, FIXTURE["body"].encode("utf-8"))
    envelope = connector.envelope(request)
    webhook = connector.normalize(request, NormalizeContext("sub", "formstack-reg", datetime.now(UTC)))
    sent = json.loads(FIXTURE["body"])
    values = {k: v for k, v in sent.items() if k not in ("FormID", "UniqueID")}
    values["Full name"] = "first = Renée\nlast = Müller-Lüdenscheidt"  # the API's text form of sub-fields
    at = datetime(2026, 11, 20, 14, 3, 27, tzinfo=UTC)
    [page] = await listing(FakeFormstack([item(sent["UniqueID"], at, values)]))
    [listed] = page.responses
    assert envelope.kind == "submission"
    assert envelope.response_id == listed.response_id == "5748835749" == envelope.event_id
    got = listed.submission
    assert got.answer_map() == webhook.answer_map() == FIXTURE["expect"]["answers"]
    assert [(a.key, a.label, a.type) for a in got.answers] == [
        (a.key, a.label, a.type) for a in webhook.answers
    ]
    assert (got.event_id, got.form_id, got.email) == (webhook.event_id, webhook.form_id, webhook.email)
    assert got.submitted_at == at  # the webhook has no time (there it is the receive time)


@pytest.mark.anyio
@pytest.mark.parametrize(("keys", "expected"), [("field_ids", "102"), ("api_friendly", "work_1")])
async def test_the_answers_are_keyed_as_the_webhook_posts_them(keys: str, expected: str) -> None:
    fake = FakeFormstack([item("4000000001", SINCE + timedelta(hours=1), {"Work email": "a@example.org"})])
    [page] = await listing(fake, field_keys=keys)
    [answer] = page.responses[0].submission.answers
    assert (answer.key, answer.label, answer.value) == (expected, expected, "a@example.org")


@pytest.mark.anyio
async def test_a_429_is_waited_out_for_its_retry_after_then_read() -> None:
    fake, time = many(), VirtualTime()
    limited = first_answer_then(rate_limited("4", json={"error": "Rate limit exceeded"}), fake)
    pages = await listing(limited, FormstackReconciler(sleep=time.sleep))
    assert time.sleeps == [4.0] and sum(len(p.responses) for p in pages) == 250


@pytest.mark.anyio
async def test_a_revoked_token_stops_the_run_saying_what_to_do_without_the_token() -> None:
    other = "0123456789abcdef0123456789abcdef"
    with pytest.raises(ReconcileFailed) as caught:
        await listing(many(), credentials={"token": other})
    assert_refused_without(
        (other, TOKEN), caught, "HTTP 401", "Settings > API", "reconcile.credentials.token"
    )


@pytest.mark.anyio
async def test_a_submission_deleted_at_formstack_is_simply_not_listed() -> None:
    fake = many()
    fake.items = [i for i in fake.items if i["id"] != "4000000149"]
    ids = [r.response_id for p in await listing(fake) for r in p.responses]
    assert "4000000149" not in ids and len(ids) == len(set(ids)) == 249


@pytest.mark.anyio
async def test_an_unreadable_submission_is_set_aside_and_the_others_are_listed() -> None:
    fake = many()
    odd = item("4100000000", SINCE + timedelta(minutes=7), {})
    odd["data"] = "not fields"
    fake.items.append(odd)
    pages = await listing(fake)
    assert len(ids_of(pages)) == 250
    problem = "the submission's data is neither an object nor a list of fields"
    assert_set_aside(pages, "4100000000", SINCE + timedelta(minutes=7), problem)


@pytest.mark.anyio
async def test_an_encrypted_form_gets_its_password_in_a_header() -> None:
    seen: list[str | None] = []

    def answer(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("x-fs-encryption-password"))
        return httpx.Response(200, json={"submissions": [], "total": 0, "pages": 0})

    credentials = {"token": TOKEN, "encryption_password": "open sesame"}
    pages = await listing(answer, credentials=credentials)
    assert seen == ["open sesame"] and pages[0].responses == [] and pages[0].total == 0


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"form_id": FORM}, "credentials"),
        ({"form_id": FORM, "credentials": {"api_key": TOKEN}}, "token"),
        ({"form_id": FORM, "credentials": {"token": "  "}}, "empty"),
        ({"form_id": FORM, "credentials": {"token": "${FORMSTACK_TOKEN}"}}, "unexpanded"),
        ({"form_id": FORM, "credentials": {"token": f"Bearer {TOKEN}"}}, "without 'Bearer '"),
        ({"form_id": FORM, "credentials": {"token": "short"}}, "Formstack API access token"),
        ({"credentials": {"token": TOKEN}}, "form_id"),
        ({"form_id": "https://x.formstack.com/forms/reg", "credentials": {"token": TOKEN}}, "digits"),
        ({"form_id": FORM, "credentials": {"token": TOKEN}, "field_keys": "labels"}, "field_keys"),
        ({"form_id": FORM, "credentials": {"token": TOKEN}, "timezone": "EST5"}, "IANA"),
        ({"form_id": FORM, "credentials": {"token": TOKEN}, "api_base_url": "http://formstack.com"}, "https"),
        ({"form_id": FORM, "credentials": {"token": TOKEN}, "status": "all"}, "Extra inputs"),
    ],
)
def test_settings_say_what_is_wrong(raw: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        FormstackReconcileSettings.model_validate(raw)
    assert says in str(caught.value)
    assert all(TOKEN not in e["msg"] for e in caught.value.errors())


def test_settings_defaults_and_the_token_stays_secret() -> None:
    ok = settings(form_id=5123456, api_base_url="http://localhost:9000/api/v2/")
    assert ok.form_id == FORM and ok.api_base_url == "http://localhost:9000/api/v2"
    assert settings().api_base_url == API and settings().timezone == "America/New_York"
    assert TOKEN not in repr(settings())
    assert connector.reconciler is not None and connector.reconciler.Settings is FormstackReconcileSettings
    [warning] = connector.reconciler.warnings(settings())
    assert "UniqueID" in warning and "--dry-run" in warning


async def health(hooks: list[dict[str, Any]], expected: str | None = PUBLIC) -> Any:
    with respx.mock() as mock:
        mock.get(HOOKS_URL).respond(200, json={"webhooks": hooks})
        return await FormstackReconciler().webhook_health(SOURCE, settings(), expected, respx_sender())


def hook(url: str) -> dict[str, Any]:
    return {"id": "77", "url": url, "content_type": "json", "include_field_type": False}


@pytest.mark.anyio
async def test_webhook_health_ok_ignoring_the_query() -> None:
    result = await health([hook("https://hooks.zapier.com/x"), hook(PUBLIC + "?token=s3cr3t")])
    assert result.state == "ok" and "s3cr3t" not in result.detail


@pytest.mark.anyio
async def test_webhook_health_missing() -> None:
    result = await health([])
    assert result.state == "missing" and FORM in result.detail and "Webhook" in result.detail


@pytest.mark.anyio
async def test_webhook_health_elsewhere_names_hosts_only() -> None:
    result = await health([hook("https://old-hub.example.org/hooks/formstack-reg?token=s3cr3t")])
    assert result.state == "elsewhere" and "old-hub.example.org" in result.detail
    assert "s3cr3t" not in result.detail and "token" not in result.detail


@pytest.mark.anyio
async def test_webhook_health_without_a_public_url_says_ok_if_any() -> None:
    assert (await health([hook("https://anywhere.example/x")], expected=None)).state == "ok"


@pytest.mark.anyio
async def test_webhook_health_refused_token_is_permanent() -> None:
    with respx.mock() as mock:
        mock.get(HOOKS_URL).respond(401, json={"error": "Invalid access token"})
        with pytest.raises(ReconcileFailed) as caught:
            await FormstackReconciler().webhook_health(SOURCE, settings(), PUBLIC, respx_sender())
    assert_refused_without([TOKEN], caught)
