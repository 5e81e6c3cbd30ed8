"""HubSpot reconciliation: a form's submissions listed against a fake HubSpot Forms API (respx).

The fake follows HubSpot's reference for "Get submissions for a form" (docs/providers/hubspot.md,
"Reconciliation"): `GET /form-integrations/v1/submissions/forms/{form_guid}` with a private app's bearer
token, `limit` (1-50, default 20) and an opaque `after` cursor; the answer's `results[]` are
{conversionId, submittedAt (epoch ms), values[{name, value}], pageUrl}, newest first, and `paging.next`
{after, link} while more remain. There is no date filter and no total. HubSpot's workflow API does not
document the "Send a webhook" action: no webhook health.
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
from connectors.hubspot import connector
from connectors.hubspot.api import HubSpotReconciler, HubSpotReconcileSettings
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

FORM = "8a127002-724d-46be-a109-b1b34d544d1e"
TOKEN = "pat-eu1-0c8e5d2a-6b1f-4e55-9a3b-7d2f1c0e9b44"
LIST_URL = f"https://api.hubapi.com/form-integrations/v1/submissions/forms/{FORM}"
SINCE = datetime(2026, 11, 1, tzinfo=UTC)
UNTIL = datetime(2026, 11, 21, tzinfo=UTC)
SOURCE = FixtureSource(secrets=["07fb7cea-f831-4cba-ae58-aa625610baae"])
FIXTURE = load_fixture(PROVIDER_FIXTURES / "hubspot" / "contact_form_submission.json")


def settings(**extra: Any) -> HubSpotReconcileSettings:
    return HubSpotReconcileSettings.model_validate(
        {"form_id": FORM, "credentials": {"access_token": TOKEN}, **extra}
    )


def ms(at: datetime) -> int:
    return int(at.timestamp() * 1000)


def item(cid: str, at: datetime, first: str) -> dict[str, Any]:
    return {
        "conversionId": cid,
        "submittedAt": ms(at),
        "values": [
            {"name": "email", "value": f"{first.lower()}@example.org"},
            {"name": "firstname", "value": first},
        ],
        "pageUrl": "https://www.example.org/contact",
    }


@dataclass
class FakeHubSpot:
    """A form's submissions, newest first, `limit` at most 50, by an opaque `after`; 401 for another token."""

    items: list[dict[str, Any]]
    asked: list[dict[str, str]] = field(default_factory=list)

    def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return httpx.Response(
                401,
                json={
                    "status": "error",
                    "message": "Authentication credentials not found.",
                    "category": "INVALID_AUTHENTICATION",
                },
            )
        query = dict(request.url.params)
        self.asked.append(query)
        limit = int(query.get("limit", "20"))
        if not 1 <= limit <= 50:
            return httpx.Response(400, json={"status": "error", "message": "limit must be 1-50"})
        start = int(query["after"].removeprefix("cursor-")) if "after" in query else 0
        ordered = sorted(self.items, key=lambda i: i["submittedAt"], reverse=True)
        page = ordered[start : start + limit]
        body: dict[str, Any] = {"results": page}
        if start + limit < len(ordered):
            after = f"cursor-{start + limit}"
            body["paging"] = {"next": {"after": after, "link": f"?limit={limit}&after={after}"}}
        return httpx.Response(200, json=body)


def many() -> FakeHubSpot:
    """130 submissions in the window, 3 after it, 400 before it (HubSpot keeps a form's history)."""
    items = [item(f"in-{n:03d}", SINCE + timedelta(hours=2 * n), f"Person{n}") for n in range(130)]
    items += [item(f"later-{n}", UNTIL + timedelta(minutes=n), "Later") for n in range(3)]  # one at `until`
    items += [item(f"old-{n:03d}", SINCE - timedelta(minutes=n + 1), "Old") for n in range(400)]
    return FakeHubSpot(items)


async def listing(fake: Any, reconciler: HubSpotReconciler | None = None, **kw: Any) -> list[Any]:
    reconciler = reconciler or HubSpotReconciler(sleep=VirtualTime().sleep)
    with respx.mock() as mock:
        mock.get(LIST_URL).mock(side_effect=fake)
        return await pages_of(reconciler, SOURCE, settings(**kw), Window(SINCE, UNTIL))


def webhook_request() -> InboundRequest:
    headers = {k.lower(): v for k, v in FIXTURE["headers"].items()}
    return InboundRequest(FIXTURE["method"], FIXTURE["url"], headers, FIXTURE["body"].encode("utf-8"))


@pytest.mark.anyio
async def test_listing_reads_newest_first_until_it_reaches_back_before_the_window() -> None:
    fake = many()
    pages = await listing(fake)
    ids = ids_of(pages)
    # 3 later + 130 in the window = 133: the third page of 50 reaches back before `since`, so the 400
    # older submissions are not paged through (HubSpot has no date filter: the window is applied here).
    assert len(pages) == 3 and len(fake.asked) == 3
    assert [q.get("after") for q in fake.asked] == [None, "cursor-50", "cursor-100"]
    assert all(q["limit"] == "50" and set(q) <= {"limit", "after"} for q in fake.asked)
    assert sorted(ids) == [f"in-{n:03d}" for n in range(130)]  # each once, none outside [since, until)
    assert [r.response_id for r in pages[1].responses][:2] == ["in-033", "in-034"]  # oldest first per page
    assert all(p.total is None for p in pages)
    listed = next(r for p in pages for r in p.responses if r.response_id == "in-007")
    assert listed.submitted_at == SINCE + timedelta(hours=14)
    got = listed.submission
    assert got.answer_map() == {"email": "person7@example.org", "firstname": "Person7"}
    assert (got.event_id, got.form_id, got.email, got.name) == (
        "in-007",
        FORM,
        "person7@example.org",
        "Person7",
    )
    assert got.metadata == {"page_url": "https://www.example.org/contact"}


@pytest.mark.anyio
async def test_a_listing_that_ends_inside_the_window_is_read_to_its_last_page() -> None:
    fake = FakeHubSpot([item(f"s-{n}", SINCE + timedelta(minutes=n), "X") for n in range(101)])
    pages = await listing(fake)
    assert len(fake.asked) == 3 and sum(len(p.responses) for p in pages) == 101


@pytest.mark.anyio
async def test_a_listed_submission_has_the_webhooks_response_id_and_answers() -> None:
    request = webhook_request()
    envelope = connector.envelope(request)
    webhook = connector.normalize(request, NormalizeContext("sub", "hubspot-contact", datetime.now(UTC)))
    body = json.loads(FIXTURE["body"])
    [entry] = body["form-submissions"]
    # The same submission as the Forms API lists it: the values the form wrote, by property name.
    api_item = {
        "conversionId": entry["conversion-id"],
        "submittedAt": entry["timestamp"],
        "values": [
            {"name": name, "value": body["properties"][name]["value"]}
            for name in ("email", "firstname", "lastname", "company", "phone", "message")
        ]
        + [
            {"name": "how_did_you_hear_about_us_", "value": "Messe"},  # if the API lists choices apart
            {"name": "how_did_you_hear_about_us_", "value": "Empfehlung"},
        ],
        "pageUrl": entry["page-url"],
    }
    [page] = await listing(FakeHubSpot([api_item]))
    [listed] = page.responses
    assert envelope.kind == "submission"
    assert envelope.response_id == listed.response_id == "01988221-fd21-449b-a1ca-a257038c5a3c"
    got = listed.submission
    assert got.answer_map() == webhook.answer_map() == FIXTURE["expect"]["answers"]
    assert [(a.key, a.label, a.type) for a in got.answers] == [
        (a.key, a.label, a.type) for a in webhook.answers
    ]
    assert (got.event_id, got.form_id, got.email, got.name) == (
        webhook.event_id,
        webhook.form_id,
        webhook.email,
        webhook.name,
    )
    assert got.submitted_at == webhook.submitted_at == listed.submitted_at
    assert got.metadata["page_url"] == webhook.metadata["page_url"]
    assert got.form_title is None  # the listing has no form name (the webhook's is the form's `title`)


def test_only_a_submission_event_carries_a_response_id() -> None:
    body = json.loads(FIXTURE["body"])
    body["form-submissions"] = []  # a contact enrolled by something other than a form
    headers = {"content-type": "application/json"}
    ignored = connector.envelope(InboundRequest("POST", FIXTURE["url"], headers, json.dumps(body).encode()))
    assert ignored.kind == "ignored" and ignored.response_id is None


@pytest.mark.anyio
async def test_a_429_is_waited_out_for_its_retry_after_then_read() -> None:
    fake, time = many(), VirtualTime()
    limited = first_answer_then(rate_limited("10", json={"status": "error"}), fake)
    pages = await listing(limited, HubSpotReconciler(sleep=time.sleep))
    assert time.sleeps == [10.0] and sum(len(p.responses) for p in pages) == 130


@pytest.mark.anyio
async def test_a_revoked_token_stops_the_run_saying_what_to_do_without_the_token() -> None:
    other = "pat-eu1-rotatedrotated-0000-1111-2222-333344445555"
    with pytest.raises(ReconcileFailed) as caught:
        await listing(many(), credentials={"access_token": other})
    assert_refused_without(
        (other, TOKEN), caught, "HTTP 401", "Private Apps", "reconcile.credentials.access_token"
    )


@pytest.mark.anyio
async def test_an_unknown_form_says_where_to_find_its_guid() -> None:
    with respx.mock() as mock:
        mock.get(LIST_URL).respond(404, json={"status": "error", "message": "Form not found"})
        with pytest.raises(ReconcileFailed) as caught:
            async for _ in HubSpotReconciler().responses(
                SOURCE, settings(), Window(SINCE, UNTIL), respx_sender()
            ):
                pass
    assert caught.value.permanent and "reconcile.form_id" in str(caught.value)


@pytest.mark.anyio
async def test_a_submission_deleted_at_hubspot_is_simply_not_listed() -> None:
    fake = many()
    fake.items = [i for i in fake.items if i["conversionId"] != "in-079"]
    ids = ids_of(await listing(fake))
    assert "in-079" not in ids and len(ids) == len(set(ids)) == 129


@pytest.mark.anyio
async def test_an_unreadable_submission_is_set_aside_and_the_others_are_listed() -> None:
    fake = many()
    odd = item("odd-one", SINCE + timedelta(minutes=7), "x")
    odd["values"] = {"email": "not a list"}
    fake.items.append(odd)
    pages = await listing(fake)
    assert sorted(ids_of(pages)) == [f"in-{n:03d}" for n in range(130)]
    assert_set_aside(
        pages, "odd-one", SINCE + timedelta(minutes=7), "results[].values is not a list of objects"
    )


@pytest.mark.anyio
async def test_a_submission_without_its_id_or_time_stops_the_run() -> None:
    for broken in ({"submittedAt": ms(SINCE), "values": []}, {"conversionId": "x", "submittedAt": "soon"}):
        with pytest.raises(ReconcileFailed) as caught:
            await listing(FakeHubSpot([broken]))
        assert "conversionId" in str(caught.value) or "submittedAt" in str(caught.value)


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ({"form_id": FORM}, "credentials"),
        ({"form_id": FORM, "credentials": {"token": TOKEN}}, "access_token"),
        ({"form_id": FORM, "credentials": {"access_token": ""}}, "empty"),
        (
            {"form_id": FORM, "credentials": {"access_token": "${HUBSPOT_ACCESS_TOKEN}"}},
            "environment variable",
        ),
        ({"form_id": FORM, "credentials": {"access_token": f"Bearer {TOKEN}"}}, "without 'Bearer '"),
        ({"form_id": FORM, "credentials": {"access_token": "pat-na1"}}, "whole access token"),
        (
            {"form_id": FORM, "credentials": {"access_token": "07fb7cea-f831-4cba-ae58-aa625610baae"}},
            "client secret",
        ),
        ({"credentials": {"access_token": TOKEN}}, "form_id"),
        ({"form_id": "Kontaktformular", "credentials": {"access_token": TOKEN}}, "GUID"),
        (
            {
                "form_id": f"https://app.hubspot.com/forms/1/{FORM}/edit",
                "credentials": {"access_token": TOKEN},
            },
            "GUID",
        ),
        (
            {
                "form_id": FORM,
                "credentials": {"access_token": TOKEN},
                "api_base_url": "http://api.hubapi.com",
            },
            "https",
        ),
        ({"form_id": FORM, "credentials": {"access_token": TOKEN}, "portal_id": 1}, "Extra inputs"),
    ],
)
def test_settings_say_what_is_wrong(raw: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError) as caught:
        HubSpotReconcileSettings.model_validate(raw)
    assert says in str(caught.value)
    assert all(TOKEN not in e["msg"] for e in caught.value.errors())


def test_settings_defaults_and_the_token_stays_secret() -> None:
    ok = settings(form_id=FORM.upper())
    assert ok.form_id == FORM and ok.api_base_url == "https://api.hubapi.com" and TOKEN not in repr(ok)
    assert settings(api_base_url="http://localhost:9000/").api_base_url == "http://localhost:9000"
    assert connector.reconciler is not None and connector.reconciler.Settings is HubSpotReconcileSettings


@pytest.mark.anyio
async def test_hubspot_cannot_say_how_its_workflow_webhook_is() -> None:
    reconciler = HubSpotReconciler()
    url = "https://hub.example.org/hooks/hubspot-contact"
    assert await reconciler.webhook_health(SOURCE, settings(), url, respx_sender()) is None


def test_check_warns_that_hubspots_identity_rule_is_unconfirmed() -> None:
    from hub.config.loader import parse_config

    text = (
        "sources:\n  crm-forms:\n    provider: hubspot\n    secret: s3cretvalue12345\n"
        "    reconcile: {form_id: 0f5c3b4e-1234-4abc-9def-0123456789ab,"
        " credentials: {access_token: pat-na1-0f5c3b4e-1234-4abc-9def-0123456789ab}}\n"
    )
    _, warnings = parse_config(text, "c.yaml", {})
    [warning] = [str(w) for w in warnings if "reconcile" in str(w)]
    assert warning.startswith("c.yaml:5:5: sources.crm-forms.reconcile: HubSpot does not document")
    assert "--dry-run" in warning
