"""Wufoo reconciliation: the entries listing, the identity rule (per form) and errors, against a fake of
Wufoo's REST API v3 (respx) built from Wufoo's API docs (docs/providers/wufoo.md, "Reconciliation"):
`GET https://{subdomain}.wufoo.com/api/v3/forms/{hash or title}/entries.json` with `pageStart`,
`pageSize` (at most 100), `FilterN=DateCreated+Is_after+<YYYY-MM-DD HH:MM:SS>` read as Pacific time,
`sort`/`sortDirection` and `system` (IP, CompleteSubmission); `DateCreated` answered in the zone of the
key's user; `/fields.json` (`Fields`) and `/forms/{id}.json` (`Forms[0].Hash`); HTTP Basic with the API
key as user name. Wufoo's API cannot list webhooks: no webhook check.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl
from zoneinfo import ZoneInfo

import httpx
import pytest
import respx
from pydantic import ValidationError

from connectors.base import InboundRequest, NormalizeContext, response_key
from connectors.reconciling import ReconcileFailed, Window
from connectors.wufoo import connector
from connectors.wufoo.api import WufooReconciler, WufooReconcileSettings
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

KEY = "AOI6-LFKL-VM1Q-IEX9"
TITLE = "pyconf-2026-registration"  # the form's URL title; its hash is in the fixture
BASE = f"https://acme.wufoo.com/api/v3/forms/{TITLE}"
PACIFIC = ZoneInfo("America/Los_Angeles")
SINCE = datetime(2026, 11, 10, tzinfo=UTC)
UNTIL = datetime(2026, 11, 21, tzinfo=UTC)
SOURCE = FixtureSource(secrets=["s"])
FULL = load_fixture(PROVIDER_FIXTURES / "wufoo" / "full_with_metadata.json")
MINIMAL = load_fixture(PROVIDER_FIXTURES / "wufoo" / "minimal_no_metadata.json")
POSTED = dict(parse_qsl(FULL["body"], keep_blank_values=True))
STRUCTURE = json.loads(POSTED["FieldStructure"])["Fields"]
FORM = json.loads(POSTED["FormStructure"])
SYSTEM_FIELDS = [{"Title": "Entry Id", "Type": "text", "ID": "EntryId"}]
SYSTEM_FIELDS_AFTER = [
    {"Title": "Date Created", "Type": "date", "ID": "DateCreated"},
    {"Title": "Created By", "Type": "text", "ID": "CreatedBy"},
]


def settings(**extra: Any) -> WufooReconcileSettings:
    raw = {"subdomain": "acme", "form_id": TITLE, "credentials": {"api_key": KEY}, **extra}
    return WufooReconcileSettings.model_validate(raw)


def entry(entry_id: int, at: datetime, values: dict[str, str], complete: bool = True) -> dict[str, Any]:
    return {"EntryId": str(entry_id), **values, "_at": at, "_complete": complete}


@dataclass
class FakeWufoo:
    """Wufoo's entries list: filters strict and read as Pacific time, `pageSize` at most 100, by
    `pageStart`; `DateCreated` written in the zone of the key's user (`user_zone`)."""

    entries: list[dict[str, Any]]
    user_zone: ZoneInfo = field(default_factory=lambda: ZoneInfo("UTC"))
    asked: list[dict[str, str]] = field(default_factory=list)
    structure_calls: int = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        user = base64.b64decode(request.headers.get("authorization", "Basic ").split(" ", 1)[1]).decode()
        if user.split(":", 1)[0] != KEY:
            return httpx.Response(401, json={"Text": "Authentication failed", "HTTPCode": 401})
        path = request.url.path
        if path.endswith("/fields.json"):
            self.structure_calls += 1
            return httpx.Response(200, json={"Fields": SYSTEM_FIELDS + STRUCTURE + SYSTEM_FIELDS_AFTER})
        if path.endswith(f"/forms/{TITLE}.json"):
            self.structure_calls += 1
            return httpx.Response(200, json={"Forms": [{**FORM, "Url": FORM["Url"], "IsPublic": "1"}]})
        query = dict(request.url.params)
        self.asked.append(query)
        size, start = int(query.get("pageSize", "25")), int(query.get("pageStart", "0"))
        if size > 100:
            return httpx.Response(400, json={"Text": "pageSize may be 100 at most", "HTTPCode": 400})
        bounds = {}
        for name in ("Filter1", "Filter2"):
            column, operator, value = query[name].split(" ", 2)
            assert column == "DateCreated" and query["match"] == "AND"
            bounds[operator] = datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=PACIFIC)
        chosen = sorted(
            (e for e in self.entries if bounds["Is_after"] < e["_at"] < bounds["Is_before"]),
            key=lambda e: int(e["EntryId"]),
            reverse=query.get("sortDirection") == "DESC",
        )
        page = [self._shown(e, query.get("system") == "true") for e in chosen[start : start + size]]
        return httpx.Response(200, json={"Entries": page})

    def _shown(self, e: dict[str, Any], system: bool) -> dict[str, Any]:
        shown = {k: v for k, v in e.items() if not k.startswith("_")}
        shown |= {"DateCreated": e["_at"].astimezone(self.user_zone).strftime("%Y-%m-%d %H:%M:%S")}
        shown |= {"CreatedBy": "public", "DateUpdated": "", "UpdatedBy": None}
        if system:
            shown |= {
                "IP": "192.0.2.44",
                "LastPage": "1",
                "CompleteSubmission": "1" if e["_complete"] else "0",
            }
        return shown


def many() -> FakeWufoo:
    entries = [
        entry(n, SINCE + timedelta(minutes=5 * n), {"Field3": f"p{n}@example.org"}) for n in range(1, 251)
    ]
    entries += [
        entry(400, SINCE + timedelta(hours=3), {"Field3": "halfway@example.org"}, complete=False),
        entry(401, SINCE - timedelta(seconds=2), {"Field3": "early@example.org"}),
        entry(402, UNTIL + timedelta(seconds=2), {"Field3": "late@example.org"}),
    ]
    return FakeWufoo(entries)


async def listing(fake: Any, reconciler: WufooReconciler | None = None, **kw: Any) -> list[Any]:
    reconciler = reconciler or WufooReconciler(sleep=VirtualTime().sleep)
    with respx.mock(assert_all_called=False) as mock:  # the structure is read only when something is listed
        mock.get(url__startswith=BASE).mock(side_effect=fake)
        return await pages_of(reconciler, SOURCE, settings(**kw), Window(SINCE, UNTIL))


def webhook(fixture: dict[str, Any]) -> InboundRequest:
    headers = {k.lower(): v for k, v in fixture["headers"].items()}
    return InboundRequest(fixture["method"], fixture["url"], headers, fixture["body"].encode("utf-8"))


@pytest.mark.anyio
async def test_listing_reads_every_page_once_with_the_window_in_pacific_time() -> None:
    fake = many()
    pages = await listing(fake)
    ids = ids_of(pages)
    assert len(pages) == 3 and [q["pageStart"] for q in fake.asked] == ["0", "100", "200"]
    assert ids == [str(n) for n in range(1, 251)]  # each once, by EntryId; no partial entry, none outside
    first = fake.asked[0]
    assert (first["pageSize"], first["sort"], first["sortDirection"], first["system"]) == (
        "100",
        "EntryId",
        "ASC",
        "true",
    )
    # 2026-11-10T00:00:00Z less a second is 15:59:59 the day before in Los Angeles (PST, UTC-8).
    assert first["Filter1"] == "DateCreated Is_after 2026-11-09 15:59:59"
    assert first["Filter2"] == "DateCreated Is_before 2026-11-20 16:00:01"
    assert fake.structure_calls == 2  # fields and form, once a run
    listed = next(r for p in pages for r in p.responses if r.response_id == "7")
    assert listed.submitted_at == SINCE + timedelta(minutes=35)
    got = listed.submission
    assert got.answer_map() == {"Work email": "p7@example.org"} and got.email == "p7@example.org"
    assert (got.event_id, got.form_id, got.form_title) == ("7", FORM["Hash"], FORM["Name"])


@pytest.mark.anyio
async def test_the_webhook_and_the_listing_name_the_same_response_per_form_with_the_same_answers() -> None:
    request = webhook(FULL)
    envelope = connector.envelope(request)
    expected = connector.normalize(request, NormalizeContext("sub", "wufoo-pyconf", datetime.now(UTC)))
    values = {k: v for k, v in POSTED.items() if k.startswith("Field") and not k.endswith("-url")}
    # The API's shapes where they differ from the webhook's: a date as YYYY-MM-DD, an upload as "name (url)".
    values["Field10"] = "2026-03-14"
    values["Field11"] = f"passport scan.pdf ({POSTED['Field11-url']})"
    at = datetime(2026, 11, 20, 14, 3, 27, tzinfo=UTC)
    [page] = await listing(FakeWufoo([entry(181, at, values)]))
    [listed] = page.responses
    assert envelope.kind == "submission" and envelope.response_id == listed.response_id == "181"
    got = listed.submission
    # The hub keys a listed response on (submission.form_id, response_id), a webhook on its envelope.
    assert got.form_id == envelope.form_id == "6h1xofyjl3idm7"
    assert response_key(connector, envelope) == f"{got.form_id}/{listed.response_id}" == "6h1xofyjl3idm7/181"
    assert got.answer_map() == expected.answer_map() == FULL["expect"]["answers"]
    assert [(a.key, a.label, a.type) for a in got.answers] == [
        (a.key, a.label, a.type) for a in expected.answers
    ]
    assert (got.event_id, got.email, got.name, got.form_title) == (
        expected.event_id,
        expected.email,
        expected.name,
        expected.form_title,
    )
    assert got.metadata == expected.metadata and got.submitted_at == expected.submitted_at == at


@pytest.mark.anyio
async def test_a_webhook_without_metadata_is_matched_by_a_listing_without_a_form_id() -> None:
    request = webhook(MINIMAL)
    envelope = connector.envelope(request)
    expected = connector.normalize(request, NormalizeContext("sub", "wufoo-pyconf", datetime.now(UTC)))
    at = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
    fake = FakeWufoo([entry(723, at, {"Field1": "min@example.org"})])
    [page] = await listing(fake, webhook_metadata=False)
    [listed] = page.responses
    assert envelope.form_id is None and listed.submission.form_id is None
    assert response_key(connector, envelope) == listed.response_id == "723"
    assert listed.submission.answer_map() == expected.answer_map() == {"Email": "min@example.org"}
    assert fake.structure_calls == 1  # fields only (uploads), no form


@pytest.mark.anyio
async def test_date_created_is_read_in_the_zone_of_the_keys_user() -> None:
    at = SINCE + timedelta(hours=5)
    fake = FakeWufoo([entry(9, at, {"Field3": "a@example.org"})], user_zone=ZoneInfo("America/Chicago"))
    [page] = await listing(fake, timezone="America/Chicago")
    assert page.responses[0].submitted_at == at == page.responses[0].submission.submitted_at


@pytest.mark.anyio
async def test_a_429_is_waited_out_for_its_retry_after_then_read() -> None:
    fake, time = many(), VirtualTime()
    limited = first_answer_then(rate_limited("9", json={"Text": "Slow Down", "HTTPCode": 429}), fake)
    pages = await listing(limited, WufooReconciler(sleep=time.sleep))
    assert time.sleeps == [9.0] and sum(len(p.responses) for p in pages) == 250


@pytest.mark.anyio
async def test_a_reset_key_stops_the_run_saying_what_to_do_without_the_key() -> None:
    other = "ZZZZ-YYYY-XXXX-WWWW"
    with pytest.raises(ReconcileFailed) as caught:
        await listing(many(), credentials={"api_key": other})
    assert_refused_without(
        (other, KEY), caught, "HTTP 401", "API Information", "reconcile.credentials.api_key"
    )


@pytest.mark.anyio
async def test_an_entry_deleted_at_wufoo_is_simply_not_listed() -> None:
    fake = many()
    fake.entries = [e for e in fake.entries if e["EntryId"] != "150"]
    ids = [r.response_id for p in await listing(fake) for r in p.responses]
    assert "150" not in ids and len(ids) == len(set(ids)) == 249


@pytest.mark.anyio
async def test_an_unreadable_entry_is_set_aside_and_the_others_are_listed() -> None:
    fake = many()
    fake.entries.append(entry(300, SINCE + timedelta(minutes=7), {"Field3": {"not": "text"}}))  # type: ignore[dict-item]
    pages = await listing(fake)
    assert len(ids_of(pages)) == 250
    unreadable = assert_set_aside(
        pages, "300", SINCE + timedelta(minutes=7), "entry field Field3 is not text"
    )
    # Its dead letter is keyed per form, as its webhook would be: `<form Hash>/<EntryId>`.
    assert unreadable.form_id == FORM["Hash"] == pages[0].responses[0].submission.form_id


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"subdomain": "acme", "form_id": TITLE}, "credentials"),
        ({"subdomain": "acme", "form_id": TITLE, "credentials": {"key": KEY}}, "api_key"),
        ({"subdomain": "acme", "form_id": TITLE, "credentials": {"api_key": ""}}, "empty"),
        (
            {"subdomain": "acme", "form_id": TITLE, "credentials": {"api_key": "${WUFOO_API_KEY}"}},
            "unexpanded",
        ),
        (
            {"subdomain": "acme", "form_id": TITLE, "credentials": {"api_key": "AOI6LFKLVM1QIEX9"}},
            "four groups",
        ),
        (
            {"subdomain": "acme", "form_id": TITLE, "credentials": {"api_key": f"{KEY}:footastic"}},
            "four groups",
        ),
        ({"form_id": TITLE, "credentials": {"api_key": KEY}}, "subdomain"),
        ({"subdomain": "acme.wufoo.com", "form_id": TITLE, "credentials": {"api_key": KEY}}, "<subdomain>"),
        (
            {
                "subdomain": "acme",
                "form_id": "https://acme.wufoo.com/forms/x/",
                "credentials": {"api_key": KEY},
            },
            "hash",
        ),
        ({"subdomain": "acme", "form_id": TITLE, "credentials": {"api_key": KEY}, "timezone": "PST"}, "IANA"),
        (
            {
                "subdomain": "acme",
                "form_id": TITLE,
                "credentials": {"api_key": KEY},
                "api_base_url": "http://a.io",
            },
            "https",
        ),
        (
            {"subdomain": "acme", "form_id": TITLE, "credentials": {"api_key": KEY}, "filter": "x"},
            "Extra inputs",
        ),
    ],
)
def test_settings_say_what_is_wrong(raw: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        WufooReconcileSettings.model_validate(raw)
    assert says in str(caught.value)
    assert all(KEY not in e["msg"] for e in caught.value.errors())


def test_settings_defaults_and_the_key_stays_secret() -> None:
    ok = settings(subdomain="Acme")
    assert ok.api_base_url == "https://acme.wufoo.com" and ok.timezone == "UTC" and ok.webhook_metadata
    assert settings(api_base_url="http://127.0.0.1:9000/").api_base_url == "http://127.0.0.1:9000"
    assert KEY not in repr(ok)
    assert connector.reconciler is not None and connector.reconciler.Settings is WufooReconcileSettings
    [warning] = connector.reconciler.warnings(settings(webhook_metadata=False))
    assert "does not send" in warning and "--dry-run" in warning


@pytest.mark.anyio
async def test_wufoo_cannot_say_how_its_webhook_is() -> None:
    with respx.mock() as mock:  # no route: any call would fail
        result = await WufooReconciler().webhook_health(
            SOURCE, settings(), "https://hub.example.org/x", respx_sender()
        )
    assert result is None and not mock.calls
