"""`hubspot` destination: recorded answers, exact requests, per-contact judgement, the token's budget, config.

Fixtures: tests/fixtures/destinations/hubspot/*.json, replayed with respx; the retry class of each
case is HubSpot's (batch answers, rate limits, error handling: docs/destinations/hubspot.md, "How answers
are classified" and "Sources"). Time is virtual: the Pacer runs on a fake
clock whose sleep advances it, so nothing here waits for real.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import respx
from pydantic import ValidationError

from flows.delivery import deliver_chunk
from flows.destinations import get_destination
from flows.destinations._http import account_key
from flows.destinations.base import DeliveryContext, DeliveryItem, Outcome
from flows.destinations.hubspot import DEFAULT_MAP, HubspotConfig, HubspotDestination
from flows.destinations.hubspot.judge import seconds_to_next_hour
from flows.pacing import Pacer
from hub.config.loader import ConfigError, load_config
from hub.sender import Sender
from hub.submission import Answer, Submission
from tests.destination_helpers import VirtualTime, captured_logs, fake_pacer, loopback_server, replay
from tests.harness import DESTINATION_FIXTURES
from tests.httpx_senders import respx_sender

TOKEN = "pat-na1-5ecre7aa-1111-2222-3333-SECRETSECRET"
OTHER_TOKEN = "pat-eu1-0ther000-1111-2222-3333-OTHERSECRET"
BASE = "https://api.hubapi.com"
EU = "https://api-eu1.hubapi.com"
UPSERT = "/crm/v3/objects/contacts/batch/upsert"
NOTES = "/crm/v3/objects/notes"
WALL = 1_795_183_408.0
KEY = account_key("hubspot", TOKEN)
HUBSPOT_FIXTURES = DESTINATION_FIXTURES / "hubspot"
CASES = sorted(HUBSPOT_FIXTURES.glob("*.json"))
ADA, GRACE, BAD = "ada@example.com", "grace@example.com", "not-an-email"
NAMES = {ADA: "Ada Lovelace", GRACE: "Grace Hopper", BAD: "Bad Address"}
LIMIT_HEADERS = {
    "X-HubSpot-RateLimit-Max": "100",
    "X-HubSpot-RateLimit-Remaining": "99",
    "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
}


def make_submission(email: str | None = ADA, n: int = 1, **changes: Any) -> Submission:
    data: dict[str, Any] = {
        "id": f"sub_{n:04d}",
        "source": "contact-form",
        "provider": "typeform",
        "form_id": "frm_contact",
        "form_title": "Contact us",
        "event_id": f"evt_{n}",
        "submitted_at": "2026-11-23T10:15:00Z",
        "email": email,
        "name": NAMES.get(email or "", "Ada Lovelace"),
        "answers": [
            Answer(key="q1", label="Company", type="short_text", value="Engines & <Co>"),
            Answer(key="q2", label="Topics", type="multiple_choice", value=["Sales", "Support"]),
        ],
    }
    data.update(changes)
    return Submission.model_validate(data)


def item(email: str | None = ADA, n: int = 1, **changes: Any) -> DeliveryItem:
    return DeliveryItem(key=f"in_{n:04d}.crm", submission=make_submission(email, n, **changes), route="leads")


def items(*emails: str | None) -> list[DeliveryItem]:
    return [item(email, n) for n, email in enumerate(emails, start=1)]


def config(**extra: Any) -> HubspotConfig:
    return HubspotConfig.model_validate({"type": "hubspot", "token": TOKEN, **extra})


def context(http: Sender, pacer: Pacer, destination_id: str = "crm") -> DeliveryContext:
    return DeliveryContext(
        http=http,
        pacer=pacer,
        destination_id=destination_id,
        record_link=lambda _id: f"https://hub.example.com/submissions/{_id}",
    )


async def deliver(
    batch: list[DeliveryItem], cfg: HubspotConfig | None = None, pacer: Pacer | None = None
) -> list[Outcome]:
    http = respx_sender()
    return await deliver_chunk(
        HubspotDestination(wall_clock=lambda: WALL),
        batch,
        cfg or config(),
        context(http, pacer or fake_pacer()[0]),
    )


def by_email(batch: list[DeliveryItem], outcomes: list[Outcome]) -> dict[str | None, Outcome]:
    found = {o.key: o for o in outcomes}
    assert sorted(found) == sorted(i.key for i in batch)  # exactly one outcome per item
    return {i.submission.email: found[i.key] for i in batch}


class FakeHubSpot:
    """Answers upserts (echoing each input as a result), notes and updates; records when each came."""

    def __init__(self, vt: VirtualTime | None = None, headers: dict[str, str] | None = None) -> None:
        self.vt = vt
        self.headers = LIMIT_HEADERS if headers is None else headers
        self.ids: dict[str, str] = {}
        self.calls: list[tuple[float, str, str, Any]] = []

    def contact_id(self, email: str) -> str:
        return self.ids.setdefault(email.lower(), str(60001 + len(self.ids)))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        body = json.loads(request.content)
        self.calls.append((self.vt.now if self.vt else 0.0, request.method, request.url.path, body))
        if request.url.path.endswith(UPSERT):
            results = [
                {
                    "id": self.contact_id(i["id"]),
                    "new": False,
                    "archived": False,
                    "properties": {"email": i["id"].lower(), **i["properties"]},
                }
                for i in body["inputs"]
            ]
            return httpx.Response(200, headers=self.headers, json={"status": "COMPLETE", "results": results})
        if request.url.path.endswith(NOTES):
            return httpx.Response(
                201, headers=self.headers, json={"id": "88001", "properties": body["properties"]}
            )
        return httpx.Response(200, headers=self.headers, json={"id": request.url.path.rsplit("/", 1)[-1]})

    def upserts(self) -> list[tuple[float, list[str]]]:
        return [
            (t, [i["id"] for i in body["inputs"]]) for t, _, path, body in self.calls if path.endswith(UPSERT)
        ]


def mock_hubspot(
    router: respx.Router, handler: Callable[[httpx.Request], httpx.Response], base: str = BASE
) -> None:
    router.route(host=httpx.URL(base).host).mock(side_effect=handler)


# --- recorded answers ---------------------------------------------------------------------------

FAKE_ID = "<FakeHubSpot's id for the contact>"
"""In `Case.remote_ids`: the id FakeHubSpot gave the contact (the recorded answer names none)."""


@dataclass(frozen=True)
class Case:
    """Where a recorded answer is replayed, what is sent, what each contact must come to, and the
    details of that answer's handling that are checked (an empty field checks nothing).

    `where`: "upsert" (the answer to the batch upsert) or "note" (to the note create; note: true).
    Later requests get FakeHubSpot's ordinary answers, so a case that waits shows the wait and the resend.
    """

    where: str
    emails: list[str]
    statuses: dict[str, str]
    patch_answer: str | None = None
    """The recorded answer replayed for a PATCH (the update by id), else FakeHubSpot answers it."""
    remote_ids: dict[str, str] = field(default_factory=dict)
    status_codes: dict[str, int] = field(default_factory=dict)
    reason_is: dict[str, str] = field(default_factory=dict)
    reason_has: dict[str, tuple[str, ...]] = field(default_factory=dict)
    retry_after: dict[str, float | None] = field(default_factory=dict)
    paused_for: float | None = None
    """Seconds the token's account is paused for after the batch."""
    requests: int | None = None
    times: list[float] | None = None
    """Virtual times of the requests FakeHubSpot saw (the recorded answer's included)."""
    last_upsert: list[str] | None = None
    """The contacts in the last upsert sent."""
    last_call: tuple[str, str, dict[str, Any]] | None = None
    """(method, path, body) of the last request sent."""


EXPECTED: dict[str, Case] = {
    "batch_upsert_200": Case(
        "upsert",
        [ADA, GRACE],
        {ADA: "delivered", GRACE: "delivered"},
        remote_ids={ADA: "51209", GRACE: "51230"},
    ),
    "batch_upsert_207_partial": Case(
        "upsert",
        [ADA, BAD],
        {ADA: "delivered", BAD: "failed"},
        remote_ids={ADA: "51209"},
        status_codes={ADA: 207},
        reason_is={
            BAD: "HubSpot refused this contact (VALIDATION_ERROR: Email address not-an-email is "
            "invalid (INVALID_EMAIL)): HubSpot does not accept this submission's e-mail address"
        },
        requests=1,  # Ada is not sent again
    ),
    "contact_create_201": Case("note", [ADA], {ADA: "delivered"}, remote_ids={ADA: FAKE_ID}),
    "contact_exists_409": Case(  # updated by id (§2.1)
        "upsert",
        [ADA],
        {ADA: "delivered"},
        patch_answer="contact_create_201.json",
        remote_ids={ADA: "51209"},
        last_call=(
            "PATCH",
            "/crm/v3/objects/contacts/51209",
            {"properties": {"firstname": "Ada", "lastname": "Lovelace"}},
        ),
    ),
    "validation_400": Case(
        "upsert",
        [ADA, GRACE],
        {ADA: "failed", GRACE: "failed"},
        reason_has={
            ADA: ('Property "favourite_colour" does not exist', "create the property in HubSpot or fix map:")
        },
        requests=1,  # names no contact: the request as a whole is refused
    ),
    "unauthorized_401": Case(
        "upsert",
        [ADA],
        {ADA: "failed"},
        reason_has={ADA: ("HubSpot refused the token (401", "update token")},
    ),
    "missing_scopes_403": Case(
        "upsert",
        [ADA],
        {ADA: "failed"},
        reason_has={ADA: ("give the private app scope crm.objects.contacts.write",)},
    ),
    "locked_423": Case("upsert", [ADA], {ADA: "delivered"}, times=[1000.0, 1002.0]),  # after waiting 2 s
    "rate_limit_ten_secondly_429": Case(
        "upsert",
        [ADA, GRACE],
        {ADA: "delivered", GRACE: "delivered"},
        times=[1000.0, 1010.0],  # the documented interval, then both contacts in one resend
        last_upsert=[ADA, GRACE],
    ),
    "rate_limit_daily_429": Case(
        "upsert",
        [ADA],
        {ADA: "retry"},
        retry_after={ADA: seconds_to_next_hour(WALL)},
        paused_for=seconds_to_next_hour(WALL),
        reason_has={ADA: ("daily API limit of 250000 calls",)},
        requests=1,
    ),
    "bad_gateway_502": Case(
        "upsert",
        [ADA],
        {ADA: "retry"},
        retry_after={ADA: None},
        paused_for=0,
        reason_has={ADA: ("HubSpot server error (HTTP 502)",)},
        requests=1,
    ),
    # The Forms API's answers, which this destination never calls: from the upsert endpoint
    # they are answers without per-contact results (200) or a plain refusal (400).
    "forms_submit_200": Case("upsert", [ADA], {ADA: "failed"}, requests=1),
    "forms_submit_400": Case("upsert", [ADA], {ADA: "failed"}, requests=1),
}


def _rule(status: int) -> str | None:
    """For a case added later: HubSpot's documented retry classes; None = cannot tell from the status."""
    if status in (423, 429, 477):
        return "delivered"  # waited out inline, then FakeHubSpot accepts the resend
    if status >= 500:
        return "retry"
    if 300 <= status < 500:
        return "failed"
    return None


def test_fixture_folder_is_there() -> None:
    assert CASES, f"no fixtures under {HUBSPOT_FIXTURES}"


@pytest.mark.anyio
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
async def test_recorded_answer_is_classified(path: Path) -> None:
    status = json.loads(path.read_text())["status"]
    case = EXPECTED.get(path.stem, Case("upsert", [ADA], {ADA: _rule(status) or "?"}))
    pacer, vt = fake_pacer()
    fake = FakeHubSpot(vt)
    batch = items(*case.emails)
    with respx.mock(assert_all_called=True) as router:
        mock_hubspot(router, _replaying(path, case, fake, vt))
        outcomes = by_email(batch, await deliver(batch, config(note=case.where == "note"), pacer))
    got = {email: outcome.status for email, outcome in outcomes.items()}
    if "?" in case.statuses.values():  # a 2xx case nobody classified yet: it must at least be judged
        assert set(got.values()) <= {"delivered", "retry", "failed"}
        return
    assert got == case.statuses, {e: o.reason for e, o in outcomes.items()}
    for outcome in outcomes.values():
        if outcome.status != "delivered":
            assert outcome.reason and len(outcome.reason) < 600 and TOKEN not in outcome.reason
    _check_outcomes(case, outcomes, fake)
    _check_requests(case, fake, pacer)


def _replaying(
    path: Path, case: Case, fake: FakeHubSpot, vt: VirtualTime
) -> Callable[[httpx.Request], httpx.Response]:
    """A handler answering the case's first request at `case.where` with the recorded answer."""
    answers: dict[str, list[float]] = {"upsert": [], "note": []}

    def handler(request: httpx.Request) -> httpx.Response:
        kind = "note" if request.url.path.endswith(NOTES) else "upsert" if UPSERT in request.url.path else ""
        if kind == case.where and not answers[kind]:
            answers[kind].append(vt.now)
            fake.calls.append((vt.now, request.method, request.url.path, json.loads(request.content)))
            return replay(path)
        if request.method == "PATCH" and case.patch_answer:
            fake.calls.append((vt.now, request.method, request.url.path, json.loads(request.content)))
            return replay(HUBSPOT_FIXTURES / case.patch_answer)
        return fake(request)

    return handler


def _check_outcomes(case: Case, outcomes: dict[str | None, Outcome], fake: FakeHubSpot) -> None:
    """The case's remote ids, status codes, reasons and retry times, contact by contact."""
    reason = {email: outcomes[email].reason or "" for email in outcomes}
    if case.remote_ids:
        want = {e: fake.contact_id(e) if i == FAKE_ID else i for e, i in case.remote_ids.items()}
        assert {e: outcomes[e].remote_id for e in want} == want
    for email, code in case.status_codes.items():
        assert outcomes[email].status_code == code
    for email, text in case.reason_is.items():
        assert reason[email] == text
    for email, parts in case.reason_has.items():
        for part in parts:
            assert part in reason[email]
    for email, wait in case.retry_after.items():
        assert outcomes[email].retry_after == wait


def _check_requests(case: Case, fake: FakeHubSpot, pacer: Pacer) -> None:
    """The case's requests: how many, when, the last upsert's contacts and the last request."""
    times = [t for t, *_ in fake.calls]
    if case.requests is not None:
        assert len(times) == case.requests
    if case.times is not None:
        assert times == case.times
    if case.last_upsert is not None:
        assert fake.upserts()[-1][1] == case.last_upsert
    if case.last_call is not None:
        method, patch_path, patch_body = fake.calls[-1][1:]
        assert (method, patch_path) == case.last_call[:2]
        assert patch_body == case.last_call[2]
    if case.paused_for is not None:
        assert pacer.paused_for(KEY) == case.paused_for


# --- exact requests -----------------------------------------------------------------------------


@pytest.mark.anyio
async def test_golden_upsert_request() -> None:
    fake = FakeHubSpot()
    cfg = config(
        map={
            "email": "{{ email | lower }}",
            "firstname": "{{ name | first_name }}",
            "company": "{{ answers['Company'] }}",
            "topics": "{{ answers['Topics'] | join(';') }}",
            "phone": "{{ answers['Phone'] | default('') }}",
        }
    )
    batch = [item("Ada@Example.com", 1), item(GRACE, 2)]
    with respx.mock() as router:
        route = router.post(BASE + UPSERT).mock(side_effect=fake)
        outcomes = await deliver(batch, cfg)
    assert [o.status for o in outcomes] == ["delivered", "delivered"]
    assert [o.remote_id for o in outcomes] == ["60001", "60002"]
    request = route.calls.last.request
    assert (request.method, str(request.url)) == (
        "POST",
        "https://api.hubapi.com/crm/v3/objects/contacts/batch/upsert",
    )
    headers = {k: v for k, v in request.headers.items() if k not in ("authorization", "content-length")}
    # What the destination sets and the request's host; no client defaults (accept-encoding...).
    assert headers == {
        "host": "api.hubapi.com",
        "accept": "application/json",
        "user-agent": "hookhub-hubspot/0.1",
        "content-type": "application/json",
    }
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    expected = {
        "inputs": [
            {
                "idProperty": "email",
                "id": "ada@example.com",
                "properties": {"firstname": "Ada", "company": "Engines & <Co>", "topics": "Sales;Support"},
                "objectWriteTraceId": "in_0001.crm",
            },
            {
                "idProperty": "email",
                "id": "grace@example.com",
                "properties": {"firstname": "Grace", "company": "Engines & <Co>", "topics": "Sales;Support"},
                "objectWriteTraceId": "in_0002.crm",
            },
        ]
    }
    assert json.loads(request.content) == expected
    assert request.content == json.dumps(expected, ensure_ascii=False, separators=(",", ":")).encode()


@pytest.mark.anyio
async def test_golden_note_request_with_the_full_answers() -> None:
    fake = FakeHubSpot()
    with respx.mock() as router:
        mock_hubspot(router, fake)
        [outcome] = await deliver([item()], config(note=True))
    assert outcome.status == "delivered" and outcome.remote_id == "60001"
    [(_, method, path, body)] = [c for c in fake.calls if c[2] == NOTES]
    assert (method, path) == ("POST", NOTES)
    assert body == {
        "properties": {
            "hs_timestamp": "2026-11-23T10:15:00Z",
            "hs_note_body": "Contact us: new submission<br>Submitted 2026-11-23 10:15 UTC · "
            "source contact-form<br><br>Company: Engines &amp; &lt;Co&gt;<br>Topics: Sales, Support<br><br>"
            "In hookhub: https://hub.example.com/submissions/sub_0001",
        },
        "associations": [
            {
                "to": {"id": "60001"},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": 202}],
            }
        ],
    }


@pytest.mark.anyio
async def test_route_mapping_and_template_win_over_the_config() -> None:
    fake = FakeHubSpot()
    routed = item().replace(
        mapping={"email": "{{ email }}", "company": "{{ answers['Company'] | upper }}"},
        template="Lead from {{ form_title }}\n{{ answers['Company'] }}",
    )
    with respx.mock() as router:
        mock_hubspot(router, fake)
        await deliver([routed], config(note=True, note_template="ignored {{ email }}"))
    upsert, note = fake.calls[0][3], fake.calls[1][3]
    assert upsert["inputs"][0]["properties"] == {"company": "ENGINES & <CO>"}
    assert note["properties"]["hs_note_body"] == "Lead from Contact us<br>Engines &amp; &lt;Co&gt;"


@pytest.mark.anyio
async def test_a_huge_note_is_clipped_to_hubspot_limit() -> None:
    answers = [Answer(key=f"q{i}", label=f"Essay {i}", type="long_text", value="&" * 5000) for i in range(20)]
    fake = FakeHubSpot()
    with respx.mock() as router:
        mock_hubspot(router, fake)
        await deliver([item(answers=answers)], config(note=True))
    text = fake.calls[1][3]["properties"]["hs_note_body"]
    assert len(text) <= 65_536 and text.endswith("HubSpot notes hold at most 65,536 characters)")
    assert "&am<br>" not in text and "&a<br>" not in text  # never a broken entity


# --- one contact at a time ----------------------------------------------------------------------


@pytest.mark.anyio
async def test_mapping_errors_fail_only_that_item() -> None:
    fake = FakeHubSpot()
    broken = item(GRACE, 2).replace(mapping={"email": "{{ email }}", "city": "{{ hidden.city }}"})
    no_email = item(None, 3)
    bad_note = item(BAD, 4).replace(template="{{ answers['Company'] | nope }}")
    batch = [item(ADA, 1), broken, no_email, bad_note]
    with respx.mock() as router:
        mock_hubspot(router, fake)
        outcomes = await deliver(batch, config(note=True))
    assert [o.status for o in outcomes] == ["delivered", "failed", "failed", "failed"]
    assert outcomes[1].reason == "map.city: cannot render: 'dict object' has no attribute 'city'"
    assert outcomes[2].reason == (
        "no e-mail address: map.email is empty for this submission, and HubSpot upserts contacts by email"
    )
    assert (outcomes[3].reason or "").startswith("note_template: ")
    assert fake.upserts() == [(0.0, [ADA])]  # the others were never sent


@pytest.mark.anyio
async def test_one_contact_refused_in_a_400_fails_alone_and_the_rest_go_again() -> None:
    pacer, vt = fake_pacer()
    fake = FakeHubSpot(vt)
    refusal = {
        "status": "error",
        "category": "VALIDATION_ERROR",
        "message": "Property values were not valid: "
        '[{"message":"Email address grace@example.com is invalid"}]',
        "errors": [{"message": "Email address grace@example.com is invalid", "code": "INVALID_EMAIL"}],
    }
    answers = iter([httpx.Response(400, json=refusal)])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or fake(request)

    batch = items(ADA, GRACE, "alan@example.com")
    with respx.mock() as router:
        mock_hubspot(router, handler)
        outcomes = by_email(batch, await deliver(batch, config(), pacer))
    assert {e: o.status for e, o in outcomes.items()} == {
        ADA: "delivered",
        GRACE: "failed",
        "alan@example.com": "delivered",
    }
    assert fake.upserts() == [(1000.0, [ADA, "alan@example.com"])]


@pytest.mark.anyio
async def test_an_answer_that_leaves_contacts_unclear_sends_each_alone() -> None:
    fake = FakeHubSpot()
    unclear = {
        "status": "COMPLETE",
        "results": [{"id": "1"}],
        "numErrors": 1,
        "errors": [{"status": "error", "category": "VALIDATION_ERROR", "message": "something was wrong"}],
    }
    answers = iter([httpx.Response(207, json=unclear)])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or fake(request)

    batch = items(ADA, GRACE)
    with respx.mock() as router:
        mock_hubspot(router, handler)
        outcomes = by_email(batch, await deliver(batch))
    assert [o.status for o in outcomes.values()] == ["delivered", "delivered"]
    assert [emails for _, emails in fake.upserts()] == [[ADA], [GRACE]]


@pytest.mark.anyio
@pytest.mark.parametrize("note", [False, True])
async def test_results_that_name_nobody_count_as_upserted_but_a_note_needs_the_id(note: bool) -> None:
    fake = FakeHubSpot()
    nameless = {"status": "COMPLETE", "results": [{"id": "1"}, {"id": "2"}]}
    answers = iter([httpx.Response(200, json=nameless)])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or fake(request)

    batch = items(ADA, GRACE)
    with respx.mock() as router:
        mock_hubspot(router, handler)
        outcomes = await deliver(batch, config(note=note))
    assert [o.status for o in outcomes] == ["delivered", "delivered"]
    if note:  # each sent again alone, so its id is unambiguous, then the notes
        assert [emails for _, emails in fake.upserts()] == [[ADA], [GRACE]]
        assert [o.remote_id for o in outcomes] == ["60001", "60002"]
        assert len([c for c in fake.calls if c[2] == NOTES]) == 2
    else:  # upserted for sure; which id is whose is unknown, and nothing needs it
        assert fake.calls == [] and [o.remote_id for o in outcomes] == [None, None]


@pytest.mark.anyio
async def test_a_route_map_without_email_fails_that_route_only() -> None:
    routed = item(GRACE, 2).replace(mapping={"firstname": "{{ name | first_name }}"})
    with respx.mock() as router:
        mock_hubspot(router, FakeHubSpot())
        outcomes = await deliver([item(), routed])
    assert [o.status for o in outcomes] == ["delivered", "failed"]
    assert "the route's map has no email key" in (outcomes[1].reason or "")


@pytest.mark.anyio
async def test_per_contact_transient_error_is_retried() -> None:
    answer = {
        "status": "COMPLETE",
        "results": [],
        "numErrors": 1,
        "errors": [{"status": "error", "category": "LOCKED", "message": "locked", "context": {"id": [ADA]}}],
    }
    with respx.mock() as router:
        router.post(BASE + UPSERT).mock(return_value=httpx.Response(207, json=answer))
        [outcome] = await deliver([item()])
    assert outcome.status == "retry" and "cannot duplicate" in (outcome.reason or "")


@pytest.mark.anyio
async def test_repeated_emails_go_in_later_requests_and_batches_hold_100() -> None:
    fake = FakeHubSpot()
    batch = [item(f"p{n % 120}@example.com", n) for n in range(250)]
    with respx.mock() as router:
        mock_hubspot(router, fake)
        outcomes = await deliver(batch)
    assert {o.status for o in outcomes} == {"delivered"}
    sizes = [len(emails) for _, emails in fake.upserts()]
    assert sizes == [100, 100, 50]
    for _, emails in fake.upserts():
        assert len(set(emails)) == len(emails)
    assert fake.upserts()[0][1][:2] == ["p0@example.com", "p1@example.com"]


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "content", "expected"),
    [
        (200, b"<html>captive portal</html>", "failed"),
        (200, b"{}", "failed"),
        (200, b'{"results": "nope"}', "failed"),
        (201, b"", "failed"),
        (302, b"", "failed"),
        (400, b"\xff\xfe\x00garbage\x80", "failed"),
        (404, b"not found", "failed"),
        (500, b"<html>oops</html>", "retry"),
        (503, b"x" * 2_000_000, "retry"),
        (521, b"", "retry"),
    ],
)
async def test_garbage_answers_are_recorded_not_raised(status: int, content: bytes, expected: str) -> None:
    with respx.mock() as router:
        router.post(BASE + UPSERT).mock(return_value=httpx.Response(status, content=content))
        [outcome] = await deliver([item()])
    assert outcome.status == expected
    assert outcome.reason and len(outcome.reason) < 600


@pytest.mark.anyio
@pytest.mark.parametrize(
    "error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow"), httpx.RemoteProtocolError("eof")]
)
async def test_transport_errors_are_retried(error: Exception) -> None:
    with respx.mock() as router:
        router.post(BASE + UPSERT).mock(side_effect=error)
        [outcome] = await deliver([item()])
    assert outcome.status == "retry" and outcome.status_code is None
    assert TOKEN not in (outcome.reason or "") and "hubapi" not in (outcome.reason or "")


@pytest.mark.anyio
async def test_request_uses_the_configured_timeout() -> None:
    with respx.mock() as router:
        route = router.post(BASE + UPSERT).mock(side_effect=FakeHubSpot())
        await deliver([item()], config(timeout=7))
    assert route.calls.last.request.extensions["timeout"] == {"connect": 7, "read": 7, "write": 7, "pool": 7}


@pytest.mark.anyio
async def test_a_failed_note_keeps_the_contact_id_and_says_what_happened() -> None:
    scopes = replay(HUBSPOT_FIXTURES / "missing_scopes_403.json")
    fake = FakeHubSpot()
    with respx.mock() as router:
        router.post(BASE + NOTES).mock(side_effect=[scopes, httpx.Response(502, text="bad gateway")])
        mock_hubspot(router, fake)
        [failed] = await deliver([item()], config(note=True))
        [retried] = await deliver([item(GRACE, 2)], config(note=True))
    assert failed.status == "failed" and failed.remote_id == "60001"
    assert (failed.reason or "").startswith("contact 60001 upserted, but the note was not created: ")
    assert retried.status == "retry" and retried.remote_id == "60002"
    assert (retried.reason or "").endswith("the retry may add the note twice")


# --- the token's budget -------------------------------------------------------------------------


@pytest.mark.anyio
@pytest.mark.parametrize("headers", ["recorded", "none"])
async def test_a_429_pauses_every_route_using_the_token_then_everything_is_delivered(headers: str) -> None:
    """Two routes, two destinations with different configs, one token: one budget for both.

    "recorded" replays the fixture with its X-HubSpot-RateLimit-* headers (Remaining: 0);
    "none" strips them, so only the 429's policy and the documented 10 s interval tell.
    """
    pacer, vt = fake_pacer()
    fake = FakeHubSpot(vt, headers=None if headers == "recorded" else {})
    recorded = json.loads((HUBSPOT_FIXTURES / "rate_limit_ten_secondly_429.json").read_text())
    if headers == "none":
        recorded["headers"] = {"Content-Type": "application/json"}
    limited = httpx.Response(429, headers=recorded["headers"], content=json.dumps(recorded["body"]).encode())
    window: dict[str, float] = {}
    early: list[float] = []
    sent: list[tuple[float, str, list[str]]] = []

    def hubspot(request: httpx.Request) -> httpx.Response:
        sent.append((vt.now, request.url.host, [i["id"] for i in json.loads(request.content)["inputs"]]))
        # HubSpot's side: the token's window is spent at the first call and opens 10 s later.
        if "closed_until" not in window:
            window["closed_until"] = vt.now + 10
            return limited
        if vt.now < window["closed_until"]:
            early.append(vt.now)
            return limited
        return fake(request)

    leads = config()
    eu = config(
        base_url=EU, map={"email": "{{ email }}", "company": "{{ answers['Company'] }}"}, batch_size=1
    )

    with respx.mock() as router:
        mock_hubspot(router, hubspot)
        mock_hubspot(router, hubspot, EU)
        dest = HubspotDestination(wall_clock=lambda: WALL)
        http = respx_sender()
        first = asyncio.create_task(dest.deliver(items(ADA, GRACE), leads, context(http, pacer, "crm")))
        while "closed_until" not in window:  # the second route starts once the first got its 429
            await asyncio.sleep(0)
        second = dest.deliver(
            [item("alan@example.com", 3), item("edsger@example.com", 4)],
            eu,
            context(http, pacer, "crm-eu"),
        )
        outcomes = list(await asyncio.gather(first, second))
    assert [[o.status for o in batch] for batch in outcomes] == [["delivered"] * 2, ["delivered"] * 2]
    assert early == []  # nothing reached HubSpot while the token was paused
    assert sent[0] == (1000.0, "api.hubapi.com", [ADA, GRACE])
    # After exactly the documented interval: the first route's resend and the EU route's
    # two single-contact requests (batch_size 1), none before.
    assert sorted(sent[1:]) == [
        (1010.0, "api-eu1.hubapi.com", ["alan@example.com"]),
        (1010.0, "api-eu1.hubapi.com", ["edsger@example.com"]),
        (1010.0, "api.hubapi.com", [ADA, GRACE]),
    ]


@pytest.mark.anyio
async def test_sends_stay_within_the_rolling_budget_hubspot_reports() -> None:
    pacer, vt = fake_pacer()
    sent: list[float] = []

    def hubspot(request: httpx.Request) -> httpx.Response:
        sent.append(vt.now)
        used = len([t for t in sent if t > vt.now - 10])
        headers = {
            "X-HubSpot-RateLimit-Max": "2",
            "X-HubSpot-RateLimit-Remaining": str(2 - used),
            "X-HubSpot-RateLimit-Interval-Milliseconds": "10000",
        }
        return FakeHubSpot(vt, headers)(request)

    with respx.mock() as router:
        mock_hubspot(router, hubspot)
        outcomes = await deliver(
            items(ADA, GRACE, "a@example.com", "b@example.com", "c@example.com"), config(batch_size=1), pacer
        )
    assert {o.status for o in outcomes} == {"delivered"}
    assert sent == [1000.0, 1000.0, 1010.0, 1010.0, 1020.0]


@pytest.mark.anyio
async def test_calls_made_elsewhere_with_the_token_count_against_the_budget() -> None:
    pacer, vt = fake_pacer()
    sent: list[float] = []

    def hubspot(request: httpx.Request) -> httpx.Response:
        sent.append(vt.now)  # another process spent the window: HubSpot says nothing is left
        headers = {**LIMIT_HEADERS, "X-HubSpot-RateLimit-Remaining": "0" if len(sent) == 1 else "50"}
        return FakeHubSpot(vt, headers)(request)

    with respx.mock() as router:
        mock_hubspot(router, hubspot)
        await deliver(items(ADA, GRACE), config(batch_size=1), pacer)
    assert sent == [1000.0, 1010.0]


@pytest.mark.anyio
@pytest.mark.parametrize(("status", "wait"), [(429, 7.0), (477, 4.5)])
async def test_retry_after_is_honoured_exactly(status: int, wait: float) -> None:
    pacer, vt = fake_pacer()
    sent: list[float] = []
    answers = iter(
        [
            httpx.Response(
                status,
                headers={"Retry-After": f"{wait:g}", **LIMIT_HEADERS},
                json={"status": "error", "policyName": "TEN_SECONDLY_ROLLING"},
            )
        ]
    )

    def hubspot(request: httpx.Request) -> httpx.Response:
        sent.append(vt.now)
        return next(answers, None) or FakeHubSpot(vt)(request)

    with respx.mock() as router:
        mock_hubspot(router, hubspot)
        [outcome] = await deliver([item()], pacer=pacer)
    assert outcome.status == "delivered"
    assert sent == [1000.0, 1000.0 + wait]


@pytest.mark.anyio
async def test_a_long_retry_after_hands_items_back_unclamped_and_holds_other_routes() -> None:
    pacer, _ = fake_pacer()
    migrating = httpx.Response(
        477, headers={"Retry-After": "7200"}, json={"status": "error", "message": "Migration in progress"}
    )
    with respx.mock(assert_all_called=False) as router:
        route = router.post(BASE + UPSERT).mock(side_effect=[migrating])
        eu_route = router.post(EU + UPSERT).mock(side_effect=AssertionError("sent while paused"))
        first = await deliver(items(ADA, GRACE), pacer=pacer)
        later = await deliver([item("alan@example.com", 3)], config(base_url=EU, note=True), pacer)
        other_route = router.post("https://api-other.hubapi.com" + UPSERT).mock(side_effect=FakeHubSpot())
        other = await deliver(
            [item("barbara@example.com", 4)],
            config(token=OTHER_TOKEN, base_url="https://api-other.hubapi.com"),
            pacer,
        )
    assert route.call_count == 1 and eu_route.call_count == 0
    assert other[0].status == "delivered" and other_route.call_count == 1  # another account: its own budget
    assert [(o.status, o.retry_after) for o in first] == [("retry", 7200.0)] * 2
    assert later[0].status == "retry" and later[0].retry_after == 7200.0
    assert "holds every route" in (later[0].reason or "")
    assert pacer.paused_for(KEY) == 7200.0


@pytest.mark.anyio
async def test_a_persistent_rate_limit_hands_back_after_three_waits() -> None:
    pacer, vt = fake_pacer()
    sent: list[float] = []

    def hubspot(request: httpx.Request) -> httpx.Response:
        sent.append(vt.now)
        return replay(HUBSPOT_FIXTURES / "rate_limit_ten_secondly_429.json")

    with respx.mock() as router:
        mock_hubspot(router, hubspot)
        [outcome] = await deliver([item()], pacer=pacer)
    assert sent == [1000.0, 1010.0, 1020.0, 1030.0]
    assert outcome.status == "retry" and outcome.retry_after == 10.0
    assert "TEN_SECONDLY_ROLLING" in (outcome.reason or "")


@pytest.mark.anyio
async def test_a_spent_daily_quota_on_a_success_parks_the_token_until_the_next_hour() -> None:
    pacer, _ = fake_pacer()
    headers = {
        **LIMIT_HEADERS,
        "X-HubSpot-RateLimit-Daily": "250000",
        "X-HubSpot-RateLimit-Daily-Remaining": "0",
    }
    with respx.mock() as router:
        route = router.post(BASE + UPSERT).mock(side_effect=FakeHubSpot(headers=headers))
        first = await deliver([item()], config(batch_size=1), pacer)
        later = await deliver([item(GRACE, 2)], pacer=pacer)
    assert first[0].status == "delivered" and route.call_count == 1
    assert later[0].status == "retry" and later[0].retry_after == seconds_to_next_hour(WALL)


@pytest.mark.anyio
async def test_the_pacer_budget() -> None:
    pacer, vt = fake_pacer()
    times = []
    for _ in range(3):
        assert await pacer.acquire("k", 2, 10.0)
        times.append(vt.now)
    pacer.pause("k", 100)
    assert await pacer.acquire("k", 2, 10.0, max_wait=30) is False  # not counted, not slept
    assert vt.now == 1010.0 and pacer.budget_left("k") == 1
    assert times == [1000.0, 1000.0, 1010.0]
    pacer.observe("other", remaining=0)  # nothing known about the budget yet: nothing to do
    assert pacer.budget_left("other") is None
    pacer.observe("other", remaining=3, limit=5, window=10)
    assert pacer.budget_left("other") == 3
    with pytest.raises(ValueError):
        await pacer.acquire("k", 0, 10)


# --- config, registry, secrecy ------------------------------------------------------------------


def test_registered_as_hubspot() -> None:
    assert isinstance(get_destination("hubspot"), HubspotDestination)


def test_defaults() -> None:
    cfg = config()
    assert cfg.base_url == BASE and cfg.mapping() == DEFAULT_MAP and cfg.note is False
    assert cfg.batch_size == 100 and cfg.timeout == 30 and cfg.retry.horizon == 2 * 24 * 3600


@pytest.mark.parametrize(
    "extra",
    [
        {"base_url": EU + "/"},
        {"base_url": "http://127.0.0.1:8080/hubspot"},
        {"map": {"email": "{{ email }}", "hs_lead_status": "NEW", "company": "{{ answers['Company'] }}"}},
        {"note": True, "note_template": "{{ answer_list | length }} answers"},
        {"batch_size": 1, "timeout": 5, "retry": {"initial": 30, "max_attempts": 10}},
    ],
)
def test_good_configs(extra: dict[str, Any]) -> None:
    cfg = config(**extra)
    assert not cfg.base_url.endswith("/")
    assert get_destination("hubspot").check(cfg) == []


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"token": None}, "Field required"),
        ({"token": "pat na1 " + TOKEN}, "one word, no spaces"),
        ({"token": "  "}, "one word, no spaces"),
        ({"base_url": "http://api.hubapi.com"}, "must start with https://"),
        ({"base_url": f"ftp://{TOKEN}@x"}, "must start with https://"),
        ({"map": {"firstname": "{{ name }}"}}, "must set email"),
        ({"map": {"email": "{{ email }}", "first name": "x"}}, "is not a HubSpot property internal name"),
        ({"note_template": "x"}, "note_template is set but note is false"),
        ({"tokn": TOKEN}, "Extra inputs are not permitted"),
        ({"batch_size": 101}, "less than or equal to 100"),
    ],
)
def test_bad_configs_are_rejected_without_echoing_the_token(data: dict[str, Any], message: str) -> None:
    raw = {"type": "hubspot", "token": TOKEN, **data}
    with pytest.raises(ValidationError) as caught:
        HubspotConfig.model_validate({k: v for k, v in raw.items() if v is not None})
    assert message in str(caught.value)
    assert TOKEN not in str(caught.value) and "SECRETSECRET" not in str(caught.value)
    assert TOKEN not in repr(config())


def test_check_reports_template_syntax_errors() -> None:
    cfg = config(
        map={"email": "{{ email }", "company": "{{ answers['Company'] }}"},
        note=True,
        note_template="{% if %}",
    )
    problems = get_destination("hubspot").check(cfg)
    assert len(problems) == 2
    assert problems[0].startswith("map.email: ") and "(line 1)" in problems[0]
    assert problems[1].startswith("note_template: ")


def test_config_problems_are_reported_by_the_loader(tmp_path: Path) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(
        "destinations:\n"
        "  crm:\n    type: hubspot\n    token: ${HUBSPOT_TOKEN}\n"
        '    map:\n      email: "{{ email | lower }}"\n      company: "{{ answers[\'Company\'] "\n'
        "  eu:\n    type: hubspot\n    token: ${HUBSPOT_TOKEN}\n    base_url: http://api-eu1.hubapi.com\n"
        "  none:\n    type: hubspot\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"HUBSPOT_TOKEN": TOKEN})
    problems = "\n".join(str(p) for p in caught.value.problems)
    assert "destinations.crm: map.company: " in problems
    assert "destinations.eu.base_url: must start with https://" in problems
    assert "destinations.none" in problems and "token" in problems
    assert TOKEN not in problems


@pytest.mark.anyio
async def test_logs_carry_facts_but_no_token_or_personal_data() -> None:
    pacer, _ = fake_pacer()
    fake = FakeHubSpot()
    partial = replay(HUBSPOT_FIXTURES / "batch_upsert_207_partial.json")
    daily = replay(HUBSPOT_FIXTURES / "rate_limit_daily_429.json")
    answers = iter([partial, daily])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or fake(request)

    with captured_logs("hookhub.destinations.hubspot") as records, respx.mock() as router:
        mock_hubspot(router, handler)
        await deliver(items(ADA, BAD), config(), pacer)
        await deliver([item(GRACE, 3)], config(note=True), pacer)
    assert records
    dumped = " ".join(json.dumps(vars(r), default=str) for r in records)
    for secret in (TOKEN, "SECRETSECRET", ADA, GRACE, BAD, "Ada", "Lovelace", "Engines", "hubapi.com"):
        assert secret not in dumped
    outcomes = [(r.delivery_key, r.outcome) for r in records if hasattr(r, "delivery_key")]
    assert outcomes == [("in_0001.crm", "delivered"), ("in_0002.crm", "failed"), ("in_0003.crm", "retry")]
    assert any(getattr(r, "pacing_key", None) == KEY for r in records)


class _HubSpotLike(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, str, dict[str, Any]]]] = []

    def do_POST(self) -> None:  # http.server's name
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", "0"))))
        self.received.append((self.path, self.headers.get("authorization", ""), body))
        answer = json.dumps(
            {
                "status": "COMPLETE",
                "results": [{"id": "7", "properties": {"email": i["id"]}} for i in body["inputs"]],
            }
        ).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.mark.anyio
async def test_upserts_to_a_real_loopback_server() -> None:
    with loopback_server(_HubSpotLike) as port:
        cfg = config(base_url=f"http://127.0.0.1:{port}/proxy/")
        [outcome] = await deliver([item()], cfg)
    assert (outcome.status, outcome.remote_id) == ("delivered", "7")
    path, authorization, body = _HubSpotLike.received[-1]
    assert path == "/proxy" + UPSERT and authorization == f"Bearer {TOKEN}"
    assert body["inputs"][0]["id"] == ADA


@pytest.mark.anyio
async def test_a_409_in_a_batch_updates_the_named_contact_and_sends_the_others_again() -> None:
    fake = FakeHubSpot()
    conflict = replay(HUBSPOT_FIXTURES / "contact_exists_409.json")  # names ada@example.com, id 51209
    answers = iter([conflict])

    def handler(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or fake(request)

    batch = items(GRACE, ADA)
    with respx.mock() as router:
        mock_hubspot(router, handler)
        outcomes = by_email(batch, await deliver(batch))
    assert (outcomes[ADA].status, outcomes[ADA].remote_id) == ("delivered", "51209")
    assert (outcomes[GRACE].status, outcomes[GRACE].remote_id) == ("delivered", "60001")
    sent = [(method, path, body) for _, method, path, body in fake.calls]
    assert (
        "PATCH",
        "/crm/v3/objects/contacts/51209",
        {"properties": {"firstname": "Ada", "lastname": "Lovelace"}},
    ) in sent
    assert fake.upserts()[0][1] == [GRACE]


def test_test_route_shows_the_upsert_without_the_token(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from hub.cli import main as cli
    from tests.harness import PROVIDER_FIXTURES

    path = tmp_path / "connectors.yaml"
    path.write_text(
        "sources:\n  contact-form: {provider: typeform, secret: x}\n"
        f'destinations:\n  crm: {{type: hubspot, token: "{TOKEN}", note: true}}\n'
        "routes:\n  - name: leads\n    from: [contact-form]\n    to: [crm]\n",
        encoding="utf-8",
    )
    fixture = PROVIDER_FIXTURES / "typeform" / "full_event_registration.json"
    assert cli(["test-route", "leads", "--fixture", str(fixture), "--config", str(path)]) == 0
    out = capsys.readouterr().out
    assert "=== crm (hubspot) — not sent" in out
    assert "POST https://api.hubapi.com/crm/v3/objects/contacts/batch/upsert" in out
    assert '"idProperty": "email"' in out
    assert TOKEN not in out and "SECRETSECRET" not in out
