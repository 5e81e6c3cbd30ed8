"""Typeform reconciliation (connectors/typeform/api.py) against a fake of Typeform's APIs (respx).

The fake follows the documented behaviour (docs/providers/typeform.md, "Reconciliation"):
GET /forms/{form_id}/responses takes `page_size`, `since` and `until` (UTC to the second, both
inclusive, on `submitted_at` for completed responses), `response_type=completed`, and `before=<token>`
(responses processed before that one, exclusive); it answers `{total_items, page_count, items}`
newest first (the default sort `submitted_at,desc`). GET /forms/{form_id} is the form definition,
GET /forms/{form_id}/webhooks `{items: [{tag, url, enabled, ...}]}`. Every call needs
`Authorization: Bearer <token>`; a refused token is a 401.
"""

from __future__ import annotations

import copy
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel, ValidationError

from connectors.base import InboundRequest, NoOptions, NormalizeContext
from connectors.reconciling import ReconcileFailed, ResponsePage, Window
from connectors.typeform import TypeformConnector, connector
from connectors.typeform.api import TypeformReconciler, TypeformReconcileSettings
from hub.submission import Submission, parse_instant
from tests.harness import PROVIDER_FIXTURES, load_fixture
from tests.httpx_senders import respx_sender
from tests.reconcile_cases import VirtualTime, assert_refused_without, assert_set_aside, ids_of, rate_limited

FIXTURE = load_fixture(PROVIDER_FIXTURES / "typeform" / "full_event_registration.json")
WEBHOOK = json.loads(FIXTURE["body"])
FORM_ID = WEBHOOK["form_response"]["form_id"]
TOKEN = "tfp_hookhubTestTokenNotReal00000000000000000000"  # fake
BASE = "https://api.typeform.com"
HUB_URL = "https://hub.example.org/hooks/typeform-signup"
WINDOW = Window(
    since=datetime(2026, 11, 20, 0, 0, tzinfo=UTC), until=datetime(2026, 11, 21, 0, 0, tzinfo=UTC)
)


def settings(**overrides: Any) -> TypeformReconcileSettings:
    return TypeformReconcileSettings.model_validate(
        {"form_id": FORM_ID, "credentials": {"token": TOKEN}, **overrides}
    )


@dataclass
class Source:
    options: BaseModel = field(default_factory=NoOptions)
    secrets: list[str] = field(default_factory=list)
    tolerance: int = 300
    public_url: str | None = None


def form_definition() -> dict[str, Any]:
    """GET /forms/{form_id}: the webhook's `definition` with what the Create API adds around it."""
    definition = copy.deepcopy(WEBHOOK["form_response"]["definition"])
    for f in definition["fields"]:
        f["validations"] = {"required": False}
    return {**definition, "type": "quiz", "settings": {"language": "en", "is_public": True}, "hidden": []}


def api_item(token: str, submitted_at: str | None, **changes: Any) -> dict[str, Any]:
    """A Responses API item: the webhook's form_response without form_id and definition."""
    item = {
        k: copy.deepcopy(v)
        for k, v in WEBHOOK["form_response"].items()
        if k not in ("form_id", "definition", "ending")
    }
    item.update(
        landing_id=token,
        token=token,
        response_id=token,
        submitted_at=submitted_at,
        metadata={
            "user_agent": "Mozilla/5.0",
            "platform": "other",
            "referer": "",
            "network_id": "n",
            "browser": "default",
        },
        **changes,
    )
    if submitted_at is None:  # a partial response: landed, never submitted
        item["submitted_at"] = "0001-01-01T00:00:00Z"
        item.pop("calculated", None)
    return item


def at(hour: int, minute: int = 0, second: int = 0) -> str:
    return datetime(2026, 11, 20, hour, minute, second, tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class FakeTypeform:
    """Typeform's three GET endpoints over `items`, `webhooks` and `failures` (answers given first)."""

    def __init__(self, items: list[dict[str, Any]], webhooks: list[dict[str, Any]] | None = None) -> None:
        self.items = items
        self.webhooks = webhooks or []
        self.failures: list[httpx.Response] = []
        self.listings: list[httpx.QueryParams] = []

    def install(self, mock: respx.MockRouter, base: str = BASE) -> None:
        mock.get(f"{base}/forms/{FORM_ID}").mock(side_effect=self._guarded(lambda _: self.form()))
        mock.get(f"{base}/forms/{FORM_ID}/responses").mock(side_effect=self._guarded(self.list))
        mock.get(f"{base}/forms/{FORM_ID}/webhooks").mock(
            side_effect=self._guarded(lambda _: httpx.Response(200, json={"items": self.webhooks}))
        )
        mock.get(url__startswith=f"{base}/forms/").respond(404, json={"code": "FORM_NOT_FOUND"})

    def _guarded(self, answer: Any) -> Any:
        def handler(request: httpx.Request) -> httpx.Response:
            if request.headers.get("authorization") != f"Bearer {TOKEN}":
                return httpx.Response(
                    401,
                    json={
                        "code": "AUTHENTICATION_FAILED",
                        "description": "Authentication credentials not found",
                    },
                )
            if self.failures:
                return self.failures.pop(0)
            response: httpx.Response = answer(request)
            return response

        return handler

    def form(self) -> httpx.Response:
        return httpx.Response(200, json=form_definition())

    def list(self, request: httpx.Request) -> httpx.Response:
        params = request.url.params
        self.listings.append(params)
        completed = params.get("response_type") == "completed"

        def submitted(item: dict[str, Any]) -> datetime:
            return parse_instant(item["submitted_at"])

        matching = [i for i in self.items if not completed or not i["submitted_at"].startswith("0001")]
        since, until = params.get("since"), params.get("until")
        if since:
            matching = [i for i in matching if submitted(i) >= parse_instant(since)]
        if until:
            matching = [i for i in matching if submitted(i) <= parse_instant(until)]
        matching.sort(key=submitted, reverse=True)  # default sort: submitted_at,desc
        if "before" in params:
            tokens = [i["token"] for i in matching]
            matching = matching[tokens.index(params["before"]) + 1 :]
        size = int(params.get("page_size", "25"))
        body = {
            "total_items": len(matching),
            "page_count": math.ceil(len(matching) / size),
            "items": matching[:size],
        }
        return httpx.Response(200, json=body)


class SmallPages(TypeformReconciler):
    page_size = 3


async def listed(
    reconciler: TypeformReconciler, s: TypeformReconcileSettings | None = None
) -> list[ResponsePage]:
    return [page async for page in reconciler.responses(Source(), s or settings(), WINDOW, respx_sender())]


def webhook_submission() -> Submission:
    request = fixture_request(FIXTURE["body"])
    context = NormalizeContext(
        submission_id="pending", source="typeform", received_at=parse_instant(FIXTURE["received_at"])
    )
    return connector.normalize(request, context)


def fixture_request(body: str) -> InboundRequest:
    return InboundRequest(
        method="POST",
        url=FIXTURE["url"],
        headers={k.lower(): v for k, v in FIXTURE["headers"].items()},
        body=body.encode("utf-8"),
    )


# -- (1) paging -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_listing_reads_every_page_once_within_the_window() -> None:
    inside = [api_item(f"tok{n:02d}", at(9, n)) for n in range(8)]
    partial = api_item("partial01", None, landed_at=at(10))
    earlier = api_item("yesterday", "2026-11-19T23:59:59Z")
    at_until = api_item("midnight", "2026-11-21T00:00:00Z")  # `until` is inclusive at Typeform, not here
    fake = FakeTypeform([*inside, partial, earlier, at_until])
    with respx.mock(assert_all_called=False) as mock:
        fake.install(mock)
        pages = await listed(SmallPages())
    tokens = [r.response_id for page in pages for r in page.responses]
    assert sorted(tokens) == [f"tok{n:02d}" for n in range(8)]
    assert len(tokens) == len(set(tokens))
    assert len(pages) == 3 and len(fake.listings) == 3  # 3 + 3 + 3 (the one at `until` read, not listed)
    assert {page.total for page in pages} == {9}  # the first page's total_items: the whole window
    first = fake.listings[0]
    assert first["since"] == "2026-11-20T00:00:00" and first["until"] == "2026-11-21T00:00:00"
    assert first["page_size"] == "3" and first["response_type"] == "completed" and "before" not in first
    # Each next page starts before the last token of the page before.
    assert [p.get("before") for p in fake.listings[1:]] == ["tok06", "tok03"]
    assert all(p["since"] == first["since"] and p["until"] == first["until"] for p in fake.listings)
    one = next(r for page in pages for r in page.responses if r.response_id == "tok03")
    assert one.submitted_at == datetime(2026, 11, 20, 9, 3, tzinfo=UTC) == one.submission.submitted_at


@pytest.mark.anyio
async def test_a_window_with_fractions_keeps_since_and_drops_until() -> None:
    window = Window(
        since=datetime(2026, 11, 20, 9, 0, 0, 500000, tzinfo=UTC),
        until=datetime(2026, 11, 20, 9, 2, 0, 250000, tzinfo=UTC),
    )
    fake = FakeTypeform([api_item(f"t{n}", at(9, n)) for n in range(4)])
    with respx.mock(assert_all_called=False) as mock:
        fake.install(mock)
        pages = [
            p async for p in TypeformReconciler().responses(Source(), settings(), window, respx_sender())
        ]
    assert (
        fake.listings[0]["since"] == "2026-11-20T09:00:00"
        and fake.listings[0]["until"] == "2026-11-20T09:02:00"
    )
    # 09:00:00 is before since (09:00:00.5); 09:02:00 is before until (09:02:00.25).
    assert sorted(ids_of(pages)) == ["t1", "t2"]


# -- (2) identity and normalization -------------------------------------------------------------


@pytest.mark.anyio
async def test_webhook_and_listing_carry_the_same_response_id_and_answers() -> None:
    envelope = connector.envelope(fixture_request(FIXTURE["body"]))
    token = WEBHOOK["form_response"]["token"]
    assert envelope.kind == "submission" and envelope.response_id == token
    assert envelope.event_id == FIXTURE["expect"]["event_id"] != token  # the event id is the delivery's

    fake = FakeTypeform([api_item(token, WEBHOOK["form_response"]["submitted_at"])])
    with respx.mock(assert_all_called=False) as mock:
        fake.install(mock)
        [page] = await listed(TypeformReconciler())
    [response] = page.responses
    assert response.response_id == envelope.response_id

    webhook, api = webhook_submission(), response.submission
    assert api.answers == webhook.answers  # keys, labels, types and values
    assert {a.label: a.value for a in api.answers} == FIXTURE["expect"]["answers"]
    assert (api.form_id, api.form_title, api.submitted_at) == (
        webhook.form_id,
        webhook.form_title,
        webhook.submitted_at,
    )
    assert (api.email, api.name, api.hidden) == (webhook.email, webhook.name, webhook.hidden)
    # The API's items are not documented to carry the `ending` the webhook has: all else is the same.
    assert api.metadata == {k: v for k, v in webhook.metadata.items() if k != "ending"}
    assert api.event_id == token and api.provider == "typeform"


def test_only_submission_events_carry_a_response_id() -> None:
    body = json.loads(FIXTURE["body"])
    body["event_type"] = "form_response_partial"
    envelope = connector.envelope(fixture_request(json.dumps(body)))
    assert envelope.kind == "ignored" and envelope.response_id is None
    sample = TypeformConnector().sample_request(Source(secrets=["s"]), HUB_URL, 1_790_000_000.0)
    sent = json.loads(sample.body)["form_response"]["token"]
    assert connector.envelope(sample).response_id == sent


# -- (3) rate limits and (4) refused tokens -------------------------------------------------------


@pytest.mark.anyio
async def test_429_waits_for_retry_after_then_succeeds() -> None:
    time = VirtualTime()
    fake = FakeTypeform([api_item("tok01", at(9))])
    fake.failures = [rate_limited("7", json={"code": "TOO_MANY_REQUESTS"})]
    with respx.mock(assert_all_called=False) as mock:
        fake.install(mock)
        pages = await listed(TypeformReconciler(sleep=time.sleep))
    assert time.sleeps == [7.0]
    assert ids_of(pages) == ["tok01"]


@pytest.mark.anyio
@pytest.mark.parametrize("status", [401, 403])
async def test_a_refused_token_is_permanent_and_says_what_to_do(status: int) -> None:
    fake = FakeTypeform([api_item("tok01", at(9))])
    fake.failures = [httpx.Response(status, json={"code": "AUTHENTICATION_FAILED"})]
    with respx.mock(assert_all_called=False) as mock:
        fake.install(mock)
        with pytest.raises(ReconcileFailed) as caught:
            await listed(TypeformReconciler(sleep=VirtualTime().sleep))
    hints = ("Personal tokens", "forms:read", "reconcile.credentials.token")
    assert_refused_without((TOKEN, TOKEN[4:]), caught, *hints)


@pytest.mark.anyio
async def test_an_unknown_form_is_permanent_and_names_it() -> None:
    with respx.mock(assert_all_called=False) as mock:
        FakeTypeform([]).install(mock)
        with pytest.raises(ReconcileFailed, match="no form other123") as caught:
            await listed(TypeformReconciler(), settings(form_id="other123"))
    assert caught.value.permanent


# -- (5) a response deleted at Typeform --------------------------------------------------------------


@pytest.mark.anyio
async def test_a_deleted_response_is_simply_not_listed() -> None:
    items = [api_item(f"tok{n:02d}", at(9, n)) for n in range(5)]
    fake = FakeTypeform(items)
    with respx.mock(assert_all_called=False) as mock:
        fake.install(mock)
        before = await listed(SmallPages())
        fake.items = [i for i in items if i["token"] != "tok02"]  # deleted through the Responses API
        after = await listed(SmallPages())
    assert sorted(r.response_id for p in before for r in p.responses) == [f"tok{n:02d}" for n in range(5)]
    assert sorted(r.response_id for p in after for r in p.responses) == ["tok00", "tok01", "tok03", "tok04"]


@pytest.mark.anyio
async def test_an_unreadable_response_is_set_aside_and_the_others_are_listed() -> None:
    odd = api_item("odd01", at(9, 30), answers={"email": "not a list"})
    fake = FakeTypeform([*(api_item(f"tok{n:02d}", at(9, n)) for n in range(5)), odd])
    with respx.mock(assert_all_called=False) as mock:
        fake.install(mock)
        pages = await listed(SmallPages())
    assert sorted(ids_of(pages)) == [f"tok{n:02d}" for n in range(5)]
    problem = "form_response.answers is not a list of objects"
    assert_set_aside(pages, "odd01", datetime(2026, 11, 20, 9, 30, tzinfo=UTC), problem)


# -- (6) settings ------------------------------------------------------------------------------------


def test_settings_defaults_and_base_url() -> None:
    s = settings(api_base_url="https://api.eu.typeform.com/")
    assert s.api_base_url == "https://api.eu.typeform.com"
    assert settings().api_base_url == BASE and settings().settle == 1800.0
    assert settings(every="15m", lookback="2d").every == 900.0
    assert TOKEN not in repr(s) and TOKEN not in str(s.model_dump())
    legacy = "943af478d3ff3d4d760020c11af102b79c440513"  # tokens from before the tfp_ prefix
    assert settings(credentials={"token": legacy}).credentials.token.get_secret_value() == legacy
    assert settings(credentials={"token": f"  {TOKEN}\n"}).credentials.token.get_secret_value() == TOKEN


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"credentials": None}, "credentials"),
        ({"credentials": {}}, "credentials.token\n  Field required"),
        ({"credentials": {"token": ""}}, "is its environment variable"),
        ({"credentials": {"token": "abc123"}}, "start with tfp_"),
        ({"credentials": {"token": f"Bearer {TOKEN}"}}, "without 'Bearer '"),
        ({"credentials": {"token": "tfp_abc def"}}, "must not contain spaces"),
        ({"credentials": {"token": TOKEN, "secret": "x"}}, "Extra inputs are not permitted"),
        ({"form_id": "https://acme.typeform.com/to/u6nXL7"}, "the id at the end of the form's URL"),
        ({"api_base_url": "ftp://api.typeform.com"}, "must be an https URL such as https://api.typeform.com"),
        ({"api_base_url": "http://api.typeform.com"}, "must use https"),
        ({"api_base_url": "https://api.typeform.com/?x=1"}, "plain URL such as https://api.typeform.com"),
        ({"api_base_url": "https://user:pw@api.typeform.com"}, "no query, fragment or user:password@"),
        ({"webhook": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_settings_refuse_ill_shaped_values(changes: dict[str, Any], message: str) -> None:
    raw: dict[str, Any] = {"form_id": FORM_ID, "credentials": {"token": TOKEN}, **changes}
    if changes.get("credentials") is None and "credentials" in changes:
        del raw["credentials"]
    with pytest.raises(ValidationError, match=message.replace("(", r"\(")) as caught:
        TypeformReconcileSettings.model_validate(raw)
    assert TOKEN not in str(caught.value)


def test_http_is_allowed_on_loopback_for_tests() -> None:
    assert settings(api_base_url="http://127.0.0.1:8080/").api_base_url == "http://127.0.0.1:8080"


# -- (7) webhook health ---------------------------------------------------------------------------------


def hook(tag: str, url: str, enabled: bool = True) -> dict[str, Any]:
    return {
        "id": f"id-{tag}",
        "form_id": FORM_ID,
        "tag": tag,
        "url": url,
        "enabled": enabled,
        "verify_ssl": True,
        "secret": "whsec-never-shown",
        "created_at": "2026-01-01T00:00:00.000Z",
        "updated_at": "2026-01-01T00:00:00.000Z",
    }


OTHER = hook("zapier", "https://hooks.zapier.com/hooks/catch/123/abc/")


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("hooks", "expected_url", "tag", "state"),
    [
        ([OTHER, hook("hub", f"{HUB_URL}?token=s3cr3t")], HUB_URL, None, "ok"),
        ([hook("hub", f"{HUB_URL}/")], f"{HUB_URL}?token=s3cr3t", None, "ok"),
        ([OTHER, hook("hub", f"{HUB_URL}?token=s3cr3t", enabled=False)], HUB_URL, None, "disabled"),
        ([], HUB_URL, None, "missing"),
        ([OTHER], HUB_URL, None, "elsewhere"),
        (
            [hook("hub", "https://old-hub.example.org/hooks/typeform-signup?token=s3cr3t")],
            HUB_URL,
            None,
            "elsewhere",
        ),
        # The hub does not know its public URL: only enabled / missing are judged.
        ([OTHER], None, None, "ok"),
        ([hook("hub", HUB_URL, enabled=False)], None, None, "disabled"),
        ([], None, None, "missing"),
        # A named webhook_tag.
        ([OTHER, hook("hub", HUB_URL)], HUB_URL, "hub", "ok"),
        ([OTHER, hook("hub", HUB_URL, enabled=False)], HUB_URL, "hub", "disabled"),
        ([OTHER], HUB_URL, "hub", "missing"),
        ([hook("hub", "https://elsewhere.example.com/in?token=s3cr3t")], HUB_URL, "hub", "elsewhere"),
        ([hook("hub", "https://elsewhere.example.com/in")], None, "hub", "ok"),
    ],
)
async def test_webhook_health(
    hooks: list[dict[str, Any]], expected_url: str | None, tag: str | None, state: str
) -> None:
    fake = FakeTypeform([], webhooks=hooks)
    with respx.mock(assert_all_called=False) as mock:
        fake.install(mock)
        health = await TypeformReconciler().webhook_health(
            Source(), settings(webhook_tag=tag), expected_url, respx_sender()
        )
    assert health is not None and health.state == state, health
    assert FORM_ID in health.detail
    assert "s3cr3t" not in health.detail and "whsec" not in health.detail and "catch/123" not in health.detail


@pytest.mark.anyio
async def test_webhook_health_without_webhooks_read_scope_says_so() -> None:
    fake = FakeTypeform([])
    fake.failures = [httpx.Response(403, json={"code": "FORBIDDEN"})]
    with respx.mock(assert_all_called=False) as mock:
        fake.install(mock)
        with pytest.raises(ReconcileFailed, match="webhooks:read scope") as caught:
            await TypeformReconciler().webhook_health(Source(), settings(), HUB_URL, respx_sender())
    assert_refused_without([TOKEN], caught)


def test_the_connector_offers_its_reconciler() -> None:
    assert isinstance(TypeformConnector.reconciler, TypeformReconciler)
    assert TypeformConnector.reconciler.Settings is TypeformReconcileSettings
    assert TypeformConnector.reconciler.page_size == 1000
    assert timedelta(seconds=settings().settle) == timedelta(minutes=30)
