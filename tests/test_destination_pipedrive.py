"""`pipedrive` destination: recorded answers, exact requests, no duplicate on retry, rate limits, config.

Fixtures: tests/fixtures/destinations/pipedrive/*.json, replayed with respx at the step of the
find-or-create sequence they answer; the retry class of each case follows
docs/destinations/pipedrive.md ("Sources", retry classes: 429 and 5xx retry; 400/401/403/404/410 do not).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import ValidationError

from flows.delivery import deliver_chunk
from flows.destinations import get_destination
from flows.destinations._http import account_key
from flows.destinations.base import DeliveryContext, DeliveryItem, Outcome
from flows.destinations.pipedrive import PipedriveConfig, PipedriveDestination
from flows.destinations.pipedrive.api import Progress
from flows.pacing import Pacer
from hub.submission import Submission
from tests.destination_helpers import captured_logs, fake_pacer, replay
from tests.harness import DESTINATION_FIXTURES
from tests.httpx_senders import respx_sender

BASE = "https://api.pipedrive.com"
TOKEN = "pd7f3c0ffee0123456789SECRETtoken00000000"
SEARCH = f"{BASE}/api/v2/persons/search"
PERSONS = f"{BASE}/api/v1/persons"
LEADS = f"{BASE}/api/v1/leads"
DEALS = f"{BASE}/api/v1/deals"
KEY = account_key("pipedrive", TOKEN)
FIXTURES = DESTINATION_FIXTURES / "pipedrive"
CASES = sorted(FIXTURES.glob("*.json"))
LEAD_ID = "adf21080-0e10-11eb-879b-05d71fb426ec"
DONE = f"person:1042/lead:{LEAD_ID}"
# Where each recorded answer is replayed, and what the delivery must conclude:
# (step, status, remote_id, retry_after, part of the reason).
EXPECTED: dict[str, tuple[str, str, str | None, float | None, str | None]] = {
    "person_search_hit_200": ("search", "delivered", DONE, None, None),
    "person_search_empty_200": ("search", "delivered", DONE, None, None),
    "person_create_201": ("person", "delivered", DONE, None, None),
    "lead_create_201": ("lead", "delivered", DONE, None, None),
    "validation_400": (
        "lead",
        "failed",
        "person:1042",
        None,
        "'Lead must be linked to a person or organization'",
    ),
    "unauthorized_401": ("search", "failed", None, None, "the api_token is wrong or was rotated"),
    "plan_cap_403": ("deal", "failed", "person:1042", None, "[feature_capping_deals_limit]"),
    "rate_limited_429": ("search", "retry", None, 2.0, "this api_token waits 2 s"),
    "server_error_500": ("lead", "retry", "person:1042", None, "retrying may create it twice"),
}
STEP_URLS = {"search": SEARCH, "person": PERSONS, "lead": LEADS, "deal": DEALS}


def make_submission(n: int = 1, **changes: Any) -> Submission:
    data: dict[str, Any] = {
        "id": f"sub_{n:04d}",
        "source": "contact-form",
        "provider": "typeform",
        "form_id": "frm_contact",
        "form_title": "Contact us",
        "event_id": f"evt_{n}",
        "submitted_at": "2026-11-23T10:15:00Z",
        "email": "Ada@Example.com",
        "name": "Ada Lovelace",
        "hidden": {"campaign": "autumn"},
    }
    data.update(changes)
    return Submission.model_validate(data)


def item(n: int = 1, submission: Submission | None = None, **changes: Any) -> DeliveryItem:
    return DeliveryItem(key=f"dlv_{n}", submission=submission or make_submission(n), route="leads", **changes)


def config(**extra: Any) -> PipedriveConfig:
    return PipedriveConfig.model_validate({"type": "pipedrive", "api_token": TOKEN, **extra})


async def deliver(
    items: list[DeliveryItem], cfg: PipedriveConfig | None = None, pacer: Pacer | None = None
) -> list[Outcome]:
    http = respx_sender()
    context = DeliveryContext(http=http, pacer=pacer or fake_pacer()[0], destination_id="sales")
    dest = PipedriveDestination(wall_clock=lambda: 1_795_000_000.0)
    return await deliver_chunk(dest, items, cfg or config(), context)


def fixture(case: str) -> httpx.Response:
    return replay(FIXTURES / f"{case}.json")


DEAL_CREATED = {"success": True, "data": {"id": 77, "title": "Contact us: Ada Lovelace", "person_id": 1042}}


def mocked() -> respx.MockRouter:
    # Not every step is reached in every test: unreached routes are asserted where they matter.
    return respx.mock(assert_all_called=False)


def happy_routes(router: respx.MockRouter) -> dict[str, respx.Route]:
    """Every step answered the successful way; a test overrides the step it is about."""
    return {
        "search": router.get(SEARCH).mock(side_effect=lambda _r: fixture("person_search_empty_200")),
        "person": router.post(PERSONS).mock(side_effect=lambda _r: fixture("person_create_201")),
        "lead": router.post(LEADS).mock(side_effect=lambda _r: fixture("lead_create_201")),
        "deal": router.post(DEALS).mock(return_value=httpx.Response(201, json=DEAL_CREATED)),
    }


def body(route: respx.Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


# --- recorded answers ---------------------------------------------------------------------------


def test_fixture_folder_is_there() -> None:
    assert CASES, f"no fixtures under {FIXTURES}"


@pytest.mark.anyio
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
async def test_recorded_answer_is_classified(path: Path) -> None:
    case = path.stem
    status = json.loads(path.read_text())["status"]
    # A case added later without an entry above answers the lead step; judged by the documented status rule.
    rule = "delivered" if status < 300 else "retry" if status == 429 or status >= 500 else "failed"
    step, expected, remote_id, wait, part = EXPECTED.get(case, ("lead", rule, None, None, None))
    pacer, _ = fake_pacer()
    cfg = config(create="deal" if step == "deal" else "lead")
    with mocked() as router:
        routes = happy_routes(router)
        routes[step].mock(side_effect=None, return_value=fixture(case))
        [outcome] = await deliver([item()], cfg, pacer)
    assert routes[step].call_count == 1
    assert outcome.key == "dlv_1"
    if case not in EXPECTED and status < 300:
        return  # the shape of an unknown 2xx decides; nothing to conclude from the status alone
    assert outcome.status == expected, outcome.reason
    assert outcome.status_code == (201 if expected == "delivered" else status)  # the last answer's
    if case not in EXPECTED:
        return
    assert outcome.remote_id == remote_id
    assert outcome.retry_after == wait
    assert pacer.paused_for(KEY) == (wait or 0.0)
    assert (outcome.reason is None) == (expected == "delivered")
    assert part is None or part in (outcome.reason or ""), outcome.reason
    if case == "person_search_hit_200":
        assert routes["person"].call_count == 0  # found by e-mail: not created again


@pytest.mark.anyio
async def test_garbage_answers_are_recorded_failures_that_keep_what_exists() -> None:
    with mocked() as router:
        routes = happy_routes(router)
        routes["search"].mock(side_effect=None, return_value=httpx.Response(200, text="<html>login</html>"))
        [outcome] = await deliver([item()])
    assert (outcome.status, outcome.remote_id) == ("failed", None)
    assert "unexpected answer from Pipedrive to search persons by email (HTTP 200)" in (outcome.reason or "")
    with mocked() as router:
        routes = happy_routes(router)
        routes["lead"].mock(
            side_effect=None, return_value=httpx.Response(201, json={"success": True, "data": {}})
        )
        [outcome] = await deliver([item()])
    assert (outcome.status, outcome.remote_id) == ("failed", "person:1042")
    assert "the lead may have been created" in (outcome.reason or "")
    with mocked() as router:
        routes = happy_routes(router)
        routes["lead"].mock(
            side_effect=None,
            return_value=httpx.Response(
                200, json={"success": False, "error": "Title is required", "data": None}
            ),
        )
        [outcome] = await deliver([item()])
    assert outcome.status == "failed"
    assert outcome.reason == "Pipedrive refused to create the lead (HTTP 200): 'Title is required'"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("error", "note"), [(httpx.ReadTimeout("slow"), True), (httpx.ConnectError("no"), False)]
)
async def test_transport_errors_are_retried_and_say_when_a_duplicate_is_possible(
    error: Exception, note: bool
) -> None:
    with mocked() as router:
        routes = happy_routes(router)
        routes["lead"].mock(side_effect=error)
        [outcome] = await deliver([item()])
    assert (outcome.status, outcome.remote_id, outcome.status_code) == ("retry", "person:1042", None)
    assert ("retrying may create it twice" in (outcome.reason or "")) is note


# --- exact requests -----------------------------------------------------------------------------


def own_headers(request: httpx.Request) -> dict[str, str]:
    transport = {"host", "content-length", "accept-encoding", "connection", "x-api-token"}
    return {k: v for k, v in request.headers.items() if k not in transport}


@pytest.mark.anyio
async def test_golden_find_or_create_then_lead() -> None:
    with mocked() as router:
        routes = happy_routes(router)
        [outcome] = await deliver([item()])
    assert (outcome.status, outcome.status_code, outcome.remote_id) == ("delivered", 201, DONE)
    search = routes["search"].calls.last.request
    assert (search.method, search.url.path) == ("GET", "/api/v2/persons/search")
    assert dict(search.url.params) == {"term": "ada@example.com", "fields": "email", "exact_match": "true"}
    assert own_headers(search) == {"accept": "application/json", "user-agent": "hookhub-pipedrive/0.1"}
    assert search.content == b""
    person, lead = routes["person"].calls.last.request, routes["lead"].calls.last.request
    assert (person.method, str(person.url), lead.method, str(lead.url)) == ("POST", PERSONS, "POST", LEADS)
    for request in (search, person, lead):
        assert request.headers["x-api-token"] == TOKEN
        assert TOKEN not in str(request.url)
        assert request.extensions["timeout"]["read"] == 30.0
    assert own_headers(lead) == {
        "accept": "application/json",
        "user-agent": "hookhub-pipedrive/0.1",
        "content-type": "application/json",
    }
    assert json.loads(person.content) == {
        "name": "Ada Lovelace",
        "email": [{"value": "ada@example.com", "primary": True, "label": "work"}],
    }
    assert json.loads(lead.content) == {"title": "Contact us: Ada Lovelace", "person_id": 1042}


@pytest.mark.anyio
async def test_deal_mode_company_domain_route_template_and_map() -> None:
    base = "https://acme.pipedrive.com"
    cfg = config(
        base_url=base + "/",
        create="deal",
        timeout=12,
        map={
            "name": "{{ name | upper }}",
            "phone": "{{ answers['Phone'] | default('') }}",
            "email": "{{ email | lower }}",
        },
    )
    with mocked() as router:
        router.get(f"{base}/api/v2/persons/search").mock(return_value=fixture("person_search_empty_200"))
        person = router.post(f"{base}/api/v1/persons").mock(return_value=fixture("person_create_201"))
        deal = router.post(f"{base}/api/v1/deals").mock(return_value=httpx.Response(201, json=DEAL_CREATED))
        [outcome] = await deliver(
            [item(template="Web lead {{ id }}", mapping={"name": "{{ name }}", "x1": "{{ source }}"})], cfg
        )
    assert (outcome.status, outcome.remote_id) == ("delivered", "person:1042/deal:77")
    # The route's map replaced the destination's (no e-mail there: no search, a plain create).
    assert body(person) == {"name": "Ada Lovelace", "x1": "contact-form"}
    assert body(deal) == {"title": "Web lead sub_0001", "person_id": 1042}
    assert deal.calls.last.request.extensions["timeout"]["read"] == 12


@pytest.mark.anyio
async def test_without_an_email_the_person_is_created_without_searching() -> None:
    with mocked() as router:
        routes = happy_routes(router)
        [outcome] = await deliver([item(1, make_submission(email=None))])
    assert outcome.status == "delivered"
    assert routes["search"].call_count == 0
    assert body(routes["person"]) == {"name": "Ada Lovelace"}


# --- no duplicates on retry ---------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_retry_after_a_partial_success_reuses_the_person() -> None:
    with mocked() as router:
        routes = happy_routes(router)
        routes["lead"].mock(side_effect=[fixture("server_error_500"), fixture("lead_create_201")])
        [first] = await deliver([item()])
        assert (first.status, first.remote_id) == ("retry", "person:1042")
        [second] = await deliver([item(remote_id=first.remote_id)])  # the ledger hands back the remote_id
    assert (second.status, second.remote_id) == ("delivered", DONE)
    assert (routes["search"].call_count, routes["person"].call_count, routes["lead"].call_count) == (1, 1, 2)


@pytest.mark.anyio
async def test_a_delivery_whose_lead_exists_is_not_sent_again() -> None:
    with mocked() as router:
        routes = happy_routes(router)
        [outcome] = await deliver([item(remote_id=DONE)])
    assert (outcome.status, outcome.remote_id) == ("delivered", DONE)
    assert sum(route.call_count for route in routes.values()) == 0


@pytest.mark.parametrize(
    ("text", "person", "record"),
    [
        (None, None, None),
        ("", None, None),
        ("person:7", 7, None),
        (DONE, 1042, f"lead:{LEAD_ID}"),
        ("person:7/deal:9", 7, "deal:9"),
        ("person:x/lead:", None, None),
        ("garbage", None, None),
    ],
)
def test_remote_id_round_trip(text: str | None, person: int | None, record: str | None) -> None:
    progress = Progress.parse(text)
    assert (progress.person, progress.record) == (person, record)
    if person is not None:
        assert Progress.parse(progress.remote_id) == progress


@pytest.mark.anyio
async def test_a_mapping_error_fails_only_that_submission() -> None:
    cfg = config(title="{{ hidden.campaign }} lead")
    items = [item(1), item(2, make_submission(2, hidden={})), item(3, mapping={"email": "{{ email }}"})]
    with mocked() as router:
        routes = happy_routes(router)
        outcomes = await deliver(items, cfg)
    assert [o.status for o in outcomes] == ["delivered", "failed", "failed"]
    assert (outcomes[1].reason or "").startswith("title: cannot render")
    assert outcomes[2].reason == "map.name: rendered empty; Pipedrive needs a person name"
    assert routes["lead"].call_count == 1 and body(routes["lead"])["title"] == "autumn lead"


# --- rate limits --------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_an_empty_window_waits_for_its_reset() -> None:
    pacer, vt = fake_pacer()
    times: dict[str, list[float]] = {"search": [], "person": [], "lead": []}
    spent = httpx.Response(
        200,
        headers={"x-ratelimit-remaining": "0", "x-ratelimit-reset": "2"},
        json={"success": True, "data": {"items": []}},
    )

    def at(step: str, answer: httpx.Response) -> Any:
        def record(_request: httpx.Request) -> httpx.Response:
            times[step].append(vt.now)
            return answer

        return record

    with mocked() as router:
        router.get(SEARCH).mock(side_effect=at("search", spent))
        router.post(PERSONS).mock(side_effect=at("person", fixture("person_create_201")))
        router.post(LEADS).mock(side_effect=at("lead", fixture("lead_create_201")))
        outcomes = await deliver([item(1), item(2)], pacer=pacer)
    assert [o.status for o in outcomes] == ["delivered", "delivered"]
    # The search answer said the window is used up: nothing is sent until it resets, 2 s later.
    assert times == {"search": [1000.0, 1002.0], "person": [1002.0, 1004.0], "lead": [1002.0, 1004.0]}


@pytest.mark.anyio
async def test_the_budget_follows_the_tokens_own_rate_limit_headers() -> None:
    pacer, vt = fake_pacer()
    sent_at: list[float] = []
    headers = {"x-ratelimit-limit": "4", "x-ratelimit-remaining": "3", "x-ratelimit-reset": "2"}

    def answer(request: httpx.Request) -> httpx.Response:
        sent_at.append(vt.now)
        if request.method == "GET":
            return httpx.Response(
                200,
                headers=headers,
                json={"success": True, "data": {"items": [{"result_score": 1.0, "item": {"id": 1042}}]}},
            )
        return httpx.Response(201, headers=headers, json={"success": True, "data": {"id": LEAD_ID}})

    with mocked() as router:
        router.get(SEARCH).mock(side_effect=answer)
        router.post(LEADS).mock(side_effect=answer)
        outcomes = await deliver([item(n) for n in range(1, 4)], pacer=pacer)
    assert [o.status for o in outcomes] == ["delivered"] * 3
    # 4 calls per 2 s, as the token's headers say (not the default 20): the 5th waits for the window.
    assert sent_at == [1000.0, 1000.0, 1000.0, 1000.0, 1002.0, 1002.0]


@pytest.mark.anyio
async def test_searches_have_their_own_smaller_budget() -> None:
    pacer, vt = fake_pacer()
    searched_at: list[float] = []

    def search(_request: httpx.Request) -> httpx.Response:
        searched_at.append(vt.now)
        return fixture("person_search_hit_200")

    with mocked() as router:
        happy_routes(router)["search"].mock(side_effect=search)
        await deliver([item(n) for n in range(1, 12)], pacer=pacer)
    assert searched_at == [1000.0] * 10 + [1002.0]  # 10 searches per 2 s, on every plan


@pytest.mark.anyio
async def test_a_429_pauses_the_token_exactly_and_a_short_pause_queues_the_next_submission() -> None:
    pacer, vt = fake_pacer()
    sent_at: list[float] = []

    def lead(_request: httpx.Request) -> httpx.Response:
        sent_at.append(vt.now)
        return fixture("rate_limited_429") if len(sent_at) == 1 else fixture("lead_create_201")

    with mocked() as router:
        happy_routes(router)["lead"].mock(side_effect=lead)
        first, second = await deliver([item(1), item(2)], pacer=pacer)
    assert (first.status, first.retry_after, first.remote_id) == ("retry", 2.0, "person:1042")
    assert second.status == "delivered"
    assert sent_at[1] - sent_at[0] >= 2.0


@pytest.mark.anyio
async def test_a_long_pause_hands_the_rest_of_the_batch_back_unsent() -> None:
    pacer, vt = fake_pacer()
    limited = httpx.Response(
        429,
        headers={"Retry-After": "7200.5", "x-ratelimit-reset": "2"},
        json={"success": False, "error": "Request over limit"},
    )
    with mocked() as router:
        routes = happy_routes(router)
        routes["search"].mock(side_effect=[limited])
        first, second = await deliver([item(1), item(2)], pacer=pacer)
    assert (first.status, first.retry_after) == ("retry", 7200.5)  # never clamped
    assert (second.status, second.retry_after, second.status_code) == ("retry", 7200.5, None)
    assert "not sent: Pipedrive's rate limit holds this api_token" in (second.reason or "")
    assert routes["search"].call_count == 1
    vt.now += 7200.5
    assert pacer.paused_for(KEY) == 0.0


@pytest.mark.anyio
async def test_a_spent_daily_budget_parks_deliveries_for_an_hour() -> None:
    pacer, _ = fake_pacer()
    spent = httpx.Response(
        429,
        headers={"x-daily-requests-left": "0", "x-ratelimit-reset": "1"},
        json={"success": False, "error": "Daily limit reached"},
    )
    with mocked() as router:
        happy_routes(router)["search"].mock(side_effect=None, return_value=spent)
        [outcome] = await deliver([item()], pacer=pacer)
    assert (outcome.status, outcome.retry_after, pacer.paused_for(KEY)) == ("retry", 3600.0, 3600.0)


# --- config, check, registry, secrecy ------------------------------------------------------------


def test_registered_as_pipedrive() -> None:
    assert isinstance(get_destination("pipedrive"), PipedriveDestination)


def test_good_configs() -> None:
    cfg = config()
    assert (cfg.base_url, cfg.create, cfg.map, cfg.timeout) == (BASE, "lead", None, 30.0)
    assert config(base_url="https://acme.pipedrive.com/").base_url == "https://acme.pipedrive.com"
    assert config(base_url="http://localhost:9000").base_url == "http://localhost:9000"
    assert config(map={"name": "{{ name }}", "a1b2c3d4e5f6a1b2c3d4e5f6a1b2c3d4e5f6a1b2": "{{ id }}"}).map
    assert TOKEN not in repr(cfg) and TOKEN not in str(cfg.model_dump())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"api_token": ""}, "non-empty token"),
        ({"api_token": TOKEN + " x"}, "without spaces or line breaks"),
        ({"base_url": "http://api.pipedrive.com"}, "must start with https://"),
        ({"base_url": "api.pipedrive.com"}, "absolute URL"),
        ({"create": "activity"}, "'lead' or 'deal'"),
        ({"title": ""}, "at least 1 character"),
        ({"map": {"e-mail": "{{ email }}"}}, "not a Pipedrive person field key"),
        ({"token": TOKEN}, "Extra inputs are not permitted"),
    ],
)
def test_bad_configs_are_refused_without_echoing_the_token(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config(**changes)
    assert message in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_check_reports_template_errors_and_a_map_without_a_name() -> None:
    problems = PipedriveDestination().check(config(title="{{ name ", map={"email": "{% for %}"}))
    assert [p.split(":")[0] for p in problems] == ["title", "map.email", "map"]
    assert problems[2] == "map: needs a 'name' entry (Pipedrive requires a person name)"
    assert PipedriveDestination().check(config()) == []


@pytest.mark.anyio
async def test_logs_carry_facts_but_no_token_or_personal_data() -> None:
    with captured_logs("hookhub.destinations.pipedrive") as records, mocked() as router:
        routes = happy_routes(router)
        routes["lead"].mock(side_effect=[fixture("lead_create_201"), fixture("rate_limited_429")])
        outcomes = await deliver([item(1), item(2), item(3, make_submission(3, name=None, email=None))])
    assert [o.status for o in outcomes] == ["delivered", "retry", "failed"]
    dumped = " ".join(json.dumps(vars(r), default=str) for r in records)
    for secret in (TOKEN, "ada@example.com", "Ada@Example.com", "Lovelace", "Contact us:"):
        assert secret not in dumped
    facts = [(r.outcome, r.step, r.status_code) for r in records if hasattr(r, "outcome")]
    assert facts == [("delivered", "lead", 201), ("retry", "lead", 429), ("failed", "map", None)]
