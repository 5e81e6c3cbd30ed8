"""Gravity Forms reconciliation: the entries listing and the webhook check against a fake site (respx).

The fake follows Gravity Forms' REST API v2 as documented and as its source reads the request
(docs/providers/gravity_forms.md, "Reconciliation"): `GET /wp-json/gf/v2/forms/{id}/entries` with a JSON
`search` (`status`, default active; `start_date`/`end_date` in the site's time zone, inclusive, an end at
00:00:00 meaning the whole day), `paging[page_size]`/`paging[current_page]` and `sorting[...]`, answering
`total_count` and `entries` (entry objects: `id`, `form_id`, UTC `date_created`, `status`, values by input
id; multi-file uploads decoded to lists); Basic authentication. `GET /wp-json/gf/v2/feeds?addon=...` lists
active feeds only, and answers a "Feed not found" error object with HTTP 200 when there is none.
"""

from __future__ import annotations

import base64
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
from connectors.gravity_forms import connector
from connectors.gravity_forms.api import GravityFormsReconciler, GravityFormsReconcileSettings
from connectors.reconciling import ReconcileFailed, Window
from hub.submission import Submission, parse_instant
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

SITE = "https://www.example-shop.de"
FORM = "3"
CK = "ck_5f86565df60696c43af25f9194e106800770b8e9"
CS = "cs_be0190310fefc061c564168670d0a96d68873c29"
LIST_URL = f"{SITE}/wp-json/gf/v2/forms/{FORM}/entries"
FEEDS_URL = f"{SITE}/wp-json/gf/v2/feeds"
SITE_ZONE = ZoneInfo("Europe/Berlin")
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 21, tzinfo=UTC)
PUBLIC = "https://hub.example.org/hooks/gf-signup"
SOURCE = FixtureSource(secrets=["s"])
FIXTURE = load_fixture(PROVIDER_FIXTURES / "gravity_forms" / "full_all_fields_json.json")
STAMP = "%Y-%m-%d %H:%M:%S"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def settings(**extra: Any) -> GravityFormsReconcileSettings:
    raw = {"form_id": FORM, "api_base_url": SITE, "credentials": {"consumer_key": CK, "consumer_secret": CS}}
    return GravityFormsReconcileSettings.model_validate(raw | extra)


def entry(eid: int, at: datetime, name: str, status: str = "active") -> dict[str, Any]:
    stamp = at.astimezone(UTC).strftime(STAMP)
    return {
        "id": str(eid),
        "form_id": FORM,
        "status": status,
        "date_created": stamp,
        "date_updated": stamp,
        "is_starred": 0,
        "is_read": 0,
        "ip": "203.0.113.50",
        "source_url": "https://www.example-shop.de/anmeldung/",
        "currency": "EUR",
        "1.3": name,
        "2": "",
    }


def site_time(text: str, end: bool) -> datetime:
    """How Gravity Forms reads `start_date`/`end_date`: the site's wall time (an end at midnight: the whole
    day), converted to UTC."""
    wall = datetime.strptime(text, STAMP)
    if end and wall.time() == datetime.min.time():
        wall = wall.replace(hour=23, minute=59, second=59)
    return wall.replace(tzinfo=SITE_ZONE).astimezone(UTC)


@dataclass
class FakeSite:
    """A WordPress site in Europe/Berlin with Gravity Forms: entries by id, 401 for other credentials."""

    entries: list[dict[str, Any]]
    authorization: str = basic(CK, CS)
    honour_status: bool = True
    asked: list[dict[str, Any]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != self.authorization:
            return httpx.Response(
                401, json={"code": "gform_rest_authentication_error", "message": "Not allowed"}
            )
        query = dict(request.url.params)
        search = json.loads(query["search"])
        self.asked.append(query | {"search": search})
        size, page = int(query.get("paging[page_size]", "10")), int(query.get("paging[current_page]", "1"))
        start, end = site_time(search["start_date"], False), site_time(search["end_date"], True)
        wanted = search.get("status", "active")
        chosen = sorted(
            (
                e
                for e in self.entries
                if start <= parse_instant(e["date_created"]) <= end
                and (e["status"] == wanted or not self.honour_status)
            ),
            key=lambda e: int(e["id"]),
            reverse=query.get("sorting[direction]", "DESC") == "DESC",
        )
        return httpx.Response(
            200, json={"total_count": len(chosen), "entries": chosen[(page - 1) * size : page * size]}
        )


def many() -> FakeSite:
    found = [entry(n, SINCE + timedelta(minutes=11 * n), f"Person {n}") for n in range(1, 231)]
    found += [
        entry(900, SINCE + timedelta(hours=2), "binned", status="trash"),
        entry(901, SINCE + timedelta(hours=3), "viagra", status="spam"),
        entry(902, SINCE - timedelta(seconds=1), "too early"),
        entry(903, UNTIL, "the next window's"),
    ]
    return FakeSite(found)


async def listing(fake: Any, reconciler: GravityFormsReconciler | None = None, **kw: Any) -> list[Any]:
    reconciler = reconciler or GravityFormsReconciler(sleep=VirtualTime().sleep)
    with respx.mock() as mock:
        mock.get(LIST_URL).mock(side_effect=fake)
        return await pages_of(reconciler, SOURCE, settings(**kw), Window(SINCE, UNTIL))


# -- (1) paging ------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_listing_reads_every_page_once_in_the_sites_time_zone() -> None:
    fake = many()
    pages = await listing(fake, timezone="Europe/Berlin")
    assert len(pages) == 3 and [q["paging[current_page]"] for q in fake.asked] == ["1", "2", "3"]
    assert sorted(ids_of(pages), key=int) == [str(n) for n in range(1, 231)]  # active ones, in the window
    first = fake.asked[0]
    assert first["paging[page_size]"] == "100"
    assert (first["sorting[key]"], first["sorting[direction]"], first["sorting[is_numeric]"]) == (
        "id",
        "ASC",
        "true",
    )
    # Berlin wall time, an hour wider on each side: since - 1 h is 00:00 CET, until + 1 h is 02:00 CET.
    assert first["search"] == {
        "status": "active",
        "start_date": "2026-11-01 00:00:00",
        "end_date": "2026-11-21 02:00:00",
    }
    assert pages[0].total == 232  # the site's count for the widened window (902 and 903 are in it)
    listed = next(r for p in pages for r in p.responses if r.response_id == "7")
    assert listed.submitted_at == SINCE + timedelta(minutes=77)
    assert listed.submission.answer_map() == {"1.3": "Person 7"}
    assert listed.submission.event_id == "7" and listed.submission.form_id == FORM


@pytest.mark.anyio
async def test_without_a_time_zone_the_window_is_widened_by_every_utc_offset() -> None:
    fake = many()
    pages = await listing(fake)
    assert sorted(ids_of(pages), key=int) == [str(n) for n in range(1, 231)]
    search = fake.asked[0]["search"]
    assert (search["start_date"], search["end_date"]) == ("2026-10-31 10:00:00", "2026-11-21 14:00:00")


@pytest.mark.anyio
async def test_trash_and_spam_are_never_listed_even_if_the_site_sends_them() -> None:
    fake = many()
    fake.honour_status = False
    pages = await listing(fake, timezone="Europe/Berlin")
    assert "900" not in ids_of(pages) and "901" not in ids_of(pages) and len(ids_of(pages)) == 230


# -- (2) identity --------------------------------------------------------------------------

UPLOADS = [
    "https://www.example-shop.de/wp-content/uploads/gravity_forms/3-x/2026/11/a.pdf",
    "https://www.example-shop.de/wp-content/uploads/gravity_forms/3-x/2026/11/b.pdf",
]


def webhook_request(body: dict[str, Any]) -> InboundRequest:
    headers = {k.lower(): v for k, v in FIXTURE["headers"].items()}
    return InboundRequest(FIXTURE["method"], FIXTURE["url"], headers, json.dumps(body).encode())


@pytest.mark.anyio
async def test_a_listed_entry_has_the_webhooks_response_id_and_answers() -> None:
    # The webhook sends the stored entry: a multi-file upload as the JSON text Gravity Forms stores
    # (PHP's json_encode: escaped slashes); the API decodes it to a list.
    body = json.loads(FIXTURE["body"]) | {"14": json.dumps(UPLOADS).replace("/", "\\/")}
    request = webhook_request(body)
    envelope = connector.envelope(request)
    webhook = connector.normalize(request, NormalizeContext("sub", "gf-signup", datetime.now(UTC)))
    api_entry = json.loads(FIXTURE["body"]) | {"14": UPLOADS}
    [page] = await listing(FakeSite([api_entry]), timezone="Europe/Berlin")
    [listed] = page.responses
    assert envelope.kind == "submission" and envelope.response_id == listed.response_id == "341"
    got = listed.submission
    assert got.answer_map() == webhook.answer_map() == FIXTURE["expect"]["answers"] | {"14": UPLOADS}
    assert [(a.key, a.label, a.type) for a in got.answers] == [
        (a.key, a.label, a.type) for a in webhook.answers
    ]
    assert (got.event_id, got.email, got.form_id, got.metadata) == (
        webhook.event_id,
        webhook.email,
        webhook.form_id,
        webhook.metadata,
    )
    assert got.submitted_at == webhook.submitted_at == listed.submitted_at


def test_only_active_entries_carry_a_response_id() -> None:
    body = json.loads(FIXTURE["body"]) | {"status": "spam"}
    envelope = connector.envelope(webhook_request(body))
    assert envelope.kind == "ignored" and envelope.response_id is None


# -- (3) 429, (4) 401, (5) deleted, one unreadable -----------------------------------------------


@pytest.mark.anyio
async def test_a_429_is_waited_out_for_its_retry_after_then_read() -> None:
    fake, time = many(), VirtualTime()
    limited = first_answer_then(rate_limited("5", json={"code": "too_many_requests"}), fake)
    pages = await listing(limited, GravityFormsReconciler(sleep=time.sleep))
    assert time.sleeps == [5.0] and len(ids_of(pages)) == 230


@pytest.mark.anyio
async def test_revoked_credentials_stop_the_run_saying_what_to_do_without_them() -> None:
    password = "abcd EFGH 1234 ijkl MNOP 5678"
    with pytest.raises(ReconcileFailed) as caught:
        await listing(many(), credentials={"username": "shop-admin", "application_password": password})
    secrets = (password.replace(" ", ""), "abcd EFGH", CK, CS, basic("shop-admin", password.replace(" ", "")))
    assert_refused_without(
        secrets, caught, "HTTP 401", "reconcile.credentials", "Forms > Settings > REST API"
    )


@pytest.mark.anyio
async def test_an_application_password_is_sent_as_basic_authentication() -> None:
    fake = many()
    fake.authorization = basic("shop-admin", "abcdEFGH1234ijklMNOP5678")
    creds = {"username": "shop-admin", "application_password": "abcd EFGH 1234 ijkl MNOP 5678"}
    assert len(ids_of(await listing(fake, credentials=creds))) == 230


@pytest.mark.anyio
async def test_an_entry_deleted_on_the_site_is_simply_not_listed() -> None:
    fake = many()
    fake.entries = [e for e in fake.entries if e["id"] != "100"]
    pages = await listing(fake)
    assert "100" not in ids_of(pages) and len(ids_of(pages)) == len(set(ids_of(pages))) == 229


@pytest.mark.anyio
async def test_an_unreadable_entry_is_set_aside_and_the_others_are_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Entries are JSON objects keyed by input id, which the connector always reads; what one entry could
    # still trip on is the connector itself: its failure stays with that entry.
    normalize = connector.normalize

    def fussy(request: InboundRequest, context: NormalizeContext) -> Submission:
        if json.loads(request.body)["id"] == "42":
            raise ValueError("entry 42: something the connector cannot read")
        return normalize(request, context)

    monkeypatch.setattr(connector, "normalize", fussy)
    pages = await listing(many())
    assert "42" not in ids_of(pages) and len(ids_of(pages)) == 229
    problem = "entry 42: something the connector cannot read"
    assert_set_aside(pages, "42", SINCE + timedelta(minutes=462), problem)


# -- (6) settings --------------------------------------------------------------------------

KEYS = {"consumer_key": CK, "consumer_secret": CS}


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"form_id": FORM, "api_base_url": SITE}, "credentials"),
        ({"form_id": FORM, "api_base_url": SITE, "credentials": {}}, "consumer_key and consumer_secret"),
        ({"form_id": FORM, "api_base_url": SITE, "credentials": {"consumer_key": CK}}, "Add Key"),
        (
            {"form_id": FORM, "api_base_url": SITE, "credentials": KEYS | {"username": "a"}},
            "not both",
        ),
        (
            {
                "form_id": FORM,
                "api_base_url": SITE,
                "credentials": {"consumer_key": "5f86", "consumer_secret": CS},
            },
            "ck_",
        ),
        (
            {
                "form_id": FORM,
                "api_base_url": SITE,
                "credentials": {"consumer_key": CK, "consumer_secret": CK},
            },
            "cs_",
        ),
        (
            {
                "form_id": FORM,
                "api_base_url": SITE,
                "credentials": {"consumer_key": "${GF_KEY}", "consumer_secret": CS},
            },
            "unexpanded",
        ),
        (
            {
                "form_id": FORM,
                "api_base_url": SITE,
                "credentials": {"username": "a:b", "application_password": "abcdEFGH1234ijklMNOP5678"},
            },
            "user name",
        ),
        (
            {
                "form_id": FORM,
                "api_base_url": SITE,
                "credentials": {"username": "a", "application_password": "x"},
            },
            "24 letters and digits",
        ),
        ({"form_id": FORM, "credentials": KEYS}, "api_base_url"),
        ({"form_id": FORM, "api_base_url": "http://www.example-shop.de", "credentials": KEYS}, "https"),
        ({"form_id": "signup", "api_base_url": SITE, "credentials": KEYS}, "form's id"),
        ({"form_id": FORM, "api_base_url": SITE, "credentials": KEYS, "timezone": "CET+1"}, "IANA"),
        ({"form_id": FORM, "api_base_url": SITE, "credentials": KEYS, "status": "all"}, "Extra inputs"),
    ],
)
def test_settings_say_what_is_wrong(raw: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        GravityFormsReconcileSettings.model_validate(raw)
    assert says in str(caught.value)
    assert all(CK not in e["msg"] and CS not in e["msg"] for e in caught.value.errors())


def test_settings_defaults_and_the_secrets_stay_secret() -> None:
    ok = settings(form_id=3, api_base_url=f"{SITE}/wp-json/gf/v2/")
    assert (ok.form_id, ok.api_base_url, ok.timezone, ok.webhook_check) == (FORM, SITE, None, True)
    assert settings(api_base_url="http://localhost:8080/wp-json").api_base_url == "http://localhost:8080"
    assert CK not in repr(ok) and CS not in str(ok.model_dump())
    assert connector.reconciler is not None and connector.reconciler.Settings is GravityFormsReconcileSettings


# -- (7) webhook health ------------------------------------------------------------------------

NO_FEED = {"errors": {"not_found": ["Feed not found"]}, "error_data": []}


def feed(fid: int, url: str, form: str = FORM, **extra: Any) -> dict[str, Any]:
    meta = {"feedName": "hookhub", "requestURL": url, "requestMethod": "POST", "requestFormat": "json"}
    return {"id": str(fid), "form_id": form, "addon_slug": "gravityformswebhooks", "meta": meta, **extra}


async def health(answer: Any, expected: str | None = PUBLIC, **kw: Any) -> Any:
    asked: list[dict[str, str]] = []

    def reply(request: httpx.Request) -> httpx.Response:
        asked.append(dict(request.url.params))
        if request.headers.get("authorization") != basic(CK, CS):
            return httpx.Response(
                403, json={"code": "rest_forbidden", "message": "Sorry, you are not allowed"}
            )
        return httpx.Response(200, json=answer)

    with respx.mock(assert_all_called=False) as mock:
        mock.get(FEEDS_URL).mock(side_effect=reply)
        result = await GravityFormsReconciler().webhook_health(
            SOURCE, settings(**kw), expected, respx_sender()
        )
    assert all(q == {"addon": "gravityformswebhooks"} for q in asked)
    return result


@pytest.mark.anyio
async def test_webhook_health_ok_ignoring_the_query() -> None:
    result = await health(
        [feed(1, "https://hooks.zapier.com/hooks/catch/1/x/", form="9"), feed(2, PUBLIC + "?t=s3cr3t")]
    )
    assert result.state == "ok" and "s3cr3t" not in result.detail


@pytest.mark.anyio
async def test_webhook_health_missing_when_no_active_feed_is_left() -> None:
    result = await health(NO_FEED)  # Gravity Forms' "Feed not found", with HTTP 200
    assert result.state == "missing" and "form 3" in result.detail and "Settings > Webhooks" in result.detail
    assert (await health([feed(1, PUBLIC, form="9")])).state == "missing"


@pytest.mark.anyio
async def test_webhook_health_disabled_where_the_site_lists_inactive_feeds() -> None:
    result = await health([feed(1, PUBLIC, is_active="0")])
    assert result.state == "disabled" and "inactive" in result.detail


@pytest.mark.anyio
async def test_webhook_health_elsewhere_names_hosts_only() -> None:
    result = await health([feed(1, "https://old-hub.example.org/hooks/gf-signup?token=s3cr3t")])
    assert result.state == "elsewhere" and "old-hub.example.org" in result.detail
    assert "s3cr3t" not in result.detail and "token" not in result.detail


@pytest.mark.anyio
async def test_webhook_health_can_be_turned_off_and_a_refusal_says_how() -> None:
    assert await health([feed(1, PUBLIC)], webhook_check=False) is None
    assert (await health([feed(1, "https://anywhere.example/x")], expected=None)).state == "ok"
    creds = {"username": "editor", "application_password": "abcdEFGH1234ijklMNOP5678"}
    with pytest.raises(ReconcileFailed) as caught:
        await health([], credentials=creds)
    message = str(caught.value)
    assert (
        caught.value.permanent and "gravityforms_edit_forms" in message and "webhook_check: false" in message
    )
