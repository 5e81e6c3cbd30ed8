"""`salesforce` destination: recorded answers, exact requests, per-record results, org budget, config.

Fixtures: tests/fixtures/destinations/salesforce/*.json, replayed with respx; the retry class
of each case follows docs/destinations/salesforce.md ("How answers are classified"; retry classes,
duplicates and limits with their sources under "Sources").
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
from flows.destinations.salesforce import SalesforceConfig, SalesforceDestination
from flows.pacing import Pacer
from hub.config.loader import ConfigError, load_config
from hub.submission import Answer, Submission
from tests.destination_helpers import captured_logs, fake_pacer, replay
from tests.harness import DESTINATION_FIXTURES
from tests.httpx_senders import respx_sender

BASE = "https://acme.my.salesforce.com"
TOKEN = "00DTESTsecret!AQ4AQHookhubAccessToken0000"
API = f"{BASE}/services/data/v62.0"
COLLECTION = f"{API}/composite/sobjects/Lead/Hookhub_Id__c"
ORG = account_key("salesforce", BASE)
FIXTURES = DESTINATION_FIXTURES / "salesforce"
CASES = sorted(FIXTURES.glob("*.json"))
LEAD_ID = "00Q5g00000A1b2CEAR"
# What each recorded answer means: (records in the request, statuses, remote ids, retry_after, reason part).
# Two records go to the collection upsert, one to the single-record upsert.
EXPECTED: dict[str, tuple[int, list[str], list[str | None], float | None, str | None]] = {
    "lead_create_201": (1, ["delivered"], [LEAD_ID], None, None),
    "lead_upsert_created_201": (1, ["delivered"], [LEAD_ID], None, None),
    "lead_upsert_updated_200": (1, ["delivered"], [LEAD_ID], None, None),
    "lead_upsert_updated_204": (1, ["delivered"], [None], None, None),
    "upsert_multiple_matches_300": (1, ["failed"], [None], None, "matches 2 Lead records"),
    "required_field_missing_400": (1, ["failed"], [None], None, "REQUIRED_FIELD_MISSING on Company"),
    "duplicates_detected_400": (1, ["failed"], [None], None, "00Q5g00000A1b9ZEAR"),
    "duplicate_value_400": (1, ["failed"], [None], None, "DUPLICATE_VALUE"),
    "unable_to_lock_row_400": (1, ["retry"], [None], None, "UNABLE_TO_LOCK_ROW"),
    "invalid_session_401": (1, ["retry"], [None], None, "set a fresh access_token"),
    "request_limit_exceeded_403": (1, ["retry"], [None], 3600.0, "REQUEST_LIMIT_EXCEEDED"),
    "server_unavailable_503": (1, ["retry"], [None], None, "SERVER_UNAVAILABLE"),
    "composite_sobjects_partial_200": (
        2,
        ["delivered", "failed"],
        [LEAD_ID, None],
        None,
        "REQUIRED_FIELD_MISSING on LastName",
    ),
    # A /composite answer is not what the collection upsert returns: unreadable, so no record counts.
    "composite_partial_200": (2, ["failed", "failed"], [None, None], None, "no list of results"),
}


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
        "answers": [Answer(key="q1", label="Company", type="short_text", value="Analytical Engines Ltd")],
        "hidden": {"campaign": "autumn"},
    }
    data.update(changes)
    return Submission.model_validate(data)


def item(n: int = 1, submission: Submission | None = None, **changes: Any) -> DeliveryItem:
    return DeliveryItem(key=f"dlv_{n}", submission=submission or make_submission(n), route="leads", **changes)


def config(**extra: Any) -> SalesforceConfig:
    data = {
        "type": "salesforce",
        "instance_url": BASE,
        "access_token": TOKEN,
        "external_id_field": "Hookhub_Id__c",
        **extra,
    }
    return SalesforceConfig.model_validate(data)


def single(n: int = 1) -> str:
    return f"{API}/sobjects/Lead/Hookhub_Id__c/sub_{n:04d}"


async def deliver(
    items: list[DeliveryItem], cfg: SalesforceConfig | None = None, pacer: Pacer | None = None
) -> list[Outcome]:
    http = respx_sender()
    context = DeliveryContext(http=http, pacer=pacer or fake_pacer()[0], destination_id="crm")
    dest = SalesforceDestination(wall_clock=lambda: 1_795_000_000.0)
    return await deliver_chunk(dest, items, cfg or config(), context)


def sent(route: respx.Route, index: int = -1) -> Any:
    return json.loads(route.calls[index].request.content)


# --- recorded answers ---------------------------------------------------------------------------


def test_fixture_folder_is_there() -> None:
    assert CASES, f"no fixtures under {FIXTURES}"


@pytest.mark.anyio
@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
async def test_recorded_answer_is_classified(path: Path) -> None:
    case = path.stem
    status = json.loads(path.read_text())["status"]
    # A case added later without an entry above is judged by the documented status rule.
    rule = "delivered" if status < 300 else "retry" if status >= 500 else "failed"
    count, statuses, remote_ids, wait, part = EXPECTED.get(case, (1, [rule], [None], None, None))
    pacer, _ = fake_pacer()
    with respx.mock(assert_all_called=True) as router:
        route = router.patch(COLLECTION if count > 1 else single()).mock(return_value=replay(path))
        outcomes = await deliver([item(n) for n in range(1, count + 1)], pacer=pacer)
    assert route.call_count == 1
    assert [o.key for o in outcomes] == [f"dlv_{n}" for n in range(1, count + 1)]
    assert [o.status for o in outcomes] == statuses, [o.reason for o in outcomes]
    assert all(o.status_code == status for o in outcomes)
    if case not in EXPECTED:
        return
    assert [o.remote_id for o in outcomes] == remote_ids
    assert [o.retry_after for o in outcomes if o.status == "retry"] == [wait] * statuses.count("retry")
    assert pacer.paused_for(ORG) == (wait or 0.0)
    for outcome in outcomes:
        assert (outcome.reason is None) == (outcome.status == "delivered")
    assert part is None or any(part in (o.reason or "") for o in outcomes), [o.reason for o in outcomes]


@pytest.mark.anyio
async def test_duplicate_rule_reason_names_the_rule_and_what_to_do() -> None:
    with respx.mock() as router:
        router.patch(single()).mock(return_value=replay(FIXTURES / "duplicates_detected_400.json"))
        [outcome] = await deliver([item()])
    assert outcome.reason is not None
    assert (
        "Standard_Lead_Duplicate_Rule blocks the save (matching records: 00Q5g00000A1b9ZEAR)"
        in outcome.reason
    )
    alert = [
        {
            "errorCode": "DUPLICATES_DETECTED",
            "message": "Use one of these records?",
            "duplicateResult": {"allowSave": True, "duplicateRule": "Lead_Alert", "matchResults": []},
        }
    ]
    with respx.mock() as router:
        router.patch(single()).mock(return_value=httpx.Response(400, json=alert))
        [outcome] = await deliver([item()])
    assert outcome.status == "failed"
    assert "Lead_Alert only alerts (no matching record listed); set allow_duplicates: true" in (
        outcome.reason or ""
    )


@pytest.mark.anyio
async def test_204_update_keeps_the_id_of_the_earlier_attempt() -> None:
    with respx.mock() as router:
        router.patch(single()).mock(return_value=replay(FIXTURES / "lead_upsert_updated_204.json"))
        [outcome] = await deliver([item(remote_id="00Q000000000042AAA")])
    assert (outcome.status, outcome.remote_id) == ("delivered", "00Q000000000042AAA")


@pytest.mark.anyio
@pytest.mark.parametrize(
    "answer",
    [
        httpx.Response(200, text="<html>proxy</html>"),
        httpx.Response(201, json=[]),
        httpx.Response(200, json={"id": LEAD_ID}),
    ],
)
async def test_a_2xx_without_an_upsert_result_is_a_recorded_failure(answer: httpx.Response) -> None:
    with respx.mock() as router:
        router.patch(single()).mock(return_value=answer)
        [outcome] = await deliver([item()])
    assert outcome.status == "failed"
    assert "replaying is safe (upsert)" in (outcome.reason or "")


@pytest.mark.anyio
@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), httpx.ReadTimeout("slow")])
async def test_transport_errors_are_retried_because_the_upsert_is_idempotent(error: Exception) -> None:
    with respx.mock() as router:
        router.patch(single()).mock(side_effect=error)
        [outcome] = await deliver([item()])
    assert (outcome.status, outcome.status_code) == ("retry", None)
    assert "the retry is safe (upsert)" in (outcome.reason or "")


# --- exact requests -----------------------------------------------------------------------------

EXPECTED_HEADERS = {
    "content-type": "application/json; charset=UTF-8",
    "accept": "application/json",
    "user-agent": "hookhub-salesforce/0.1",
}
LEAD = {
    "FirstName": "Ada",
    "LastName": "Lovelace",
    "Email": "ada@example.com",
    "Company": "Analytical Engines Ltd",
    "LeadSource": "Web",
}


def own_headers(request: httpx.Request) -> dict[str, str]:
    transport = {"host", "content-length", "accept-encoding", "connection", "authorization"}
    return {k: v for k, v in request.headers.items() if k not in transport}


@pytest.mark.anyio
async def test_golden_single_record_upsert() -> None:
    with respx.mock() as router:
        route = router.patch(single()).mock(return_value=replay(FIXTURES / "lead_upsert_created_201.json"))
        await deliver([item()])
    request = route.calls.last.request
    assert (request.method, str(request.url)) == ("PATCH", single())
    assert own_headers(request) == EXPECTED_HEADERS
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.extensions["timeout"]["read"] == 30.0
    # The value is in the path; the body must not repeat it (upsert by external ID).
    assert json.loads(request.content) == LEAD


@pytest.mark.anyio
async def test_golden_collection_upsert() -> None:
    answer = [
        {"id": "00Q1", "success": True, "errors": [], "created": True},
        {"id": "00Q2", "success": True, "errors": [], "created": False},
    ]
    cfg = config(api_version="v61.0", allow_duplicates=True)
    url = f"{BASE}/services/data/v61.0/composite/sobjects/Lead/Hookhub_Id__c"
    with respx.mock() as router:
        route = router.patch(url).mock(return_value=httpx.Response(200, json=answer))
        outcomes = await deliver(
            [item(1), item(2, make_submission(2, name="Grace", email=None, answers=[]))], cfg
        )
    assert [(o.status, o.remote_id) for o in outcomes] == [("delivered", "00Q1"), ("delivered", "00Q2")]
    request = route.calls.last.request
    assert own_headers(request) == {**EXPECTED_HEADERS, "sforce-duplicate-rule-header": "allowSave=true"}
    assert json.loads(request.content) == {
        "allOrNone": False,
        "records": [
            {"attributes": {"type": "Lead"}, **LEAD, "Hookhub_Id__c": "sub_0001"},
            {
                "attributes": {"type": "Lead"},
                "FirstName": "Grace",
                "LastName": "Grace",
                "Company": "[not provided]",
                "LeadSource": "Web",
                "Hookhub_Id__c": "sub_0002",
            },
        ],
    }


@pytest.mark.anyio
async def test_external_id_value_is_path_encoded() -> None:
    cfg = config(external_id="{{ hidden.campaign }}/{{ id }}")
    with respx.mock() as router:
        route = router.patch(f"{API}/sobjects/Lead/Hookhub_Id__c/autumn%2Fsub_0001").mock(
            return_value=httpx.Response(201, json={"id": LEAD_ID, "success": True, "errors": []})
        )
        [outcome] = await deliver([item()], cfg)
    assert outcome.status == "delivered" and route.call_count == 1


@pytest.mark.anyio
async def test_route_mapping_wins_over_the_config_and_other_objects_take_their_own_map() -> None:
    cfg = config(sobject="Web_Form__c", map={"Email__c": "{{ email }}"})
    url = f"{API}/sobjects/Web_Form__c/Hookhub_Id__c/sub_0001"
    with respx.mock() as router:
        route = router.patch(url).mock(return_value=httpx.Response(204))
        await deliver([item()], cfg)
        await deliver([item(mapping={"Topic__c": "{{ form_title | upper }}"}, template="ignored")], cfg)
    assert sent(route, 0) == {"Email__c": "Ada@Example.com"}
    assert sent(route, 1) == {"Topic__c": "CONTACT US"}


# --- batches: per-record results, mapping errors, chunks ------------------------------------------


@pytest.mark.anyio
async def test_each_record_of_a_collection_answer_is_judged_on_its_own() -> None:
    answer = [
        {"id": "00Q1", "success": True, "errors": []},
        {
            "success": False,
            "errors": [{"statusCode": "UNABLE_TO_LOCK_ROW", "message": "locked", "fields": []}],
        },
        {
            "success": False,
            "errors": [
                {
                    "statusCode": "STRING_TOO_LONG",
                    "message": "Company: data value too large",
                    "fields": ["Company"],
                }
            ],
        },
        {
            "success": False,
            "errors": [{"statusCode": "INVALID_FIELD", "message": "No such column 'Foo__c'", "fields": []}],
        },
    ]
    with respx.mock() as router:
        router.patch(COLLECTION).mock(return_value=httpx.Response(200, json=answer))
        outcomes = await deliver([item(n) for n in range(1, 5)])
    assert [o.status for o in outcomes] == ["delivered", "retry", "failed", "failed"]
    assert outcomes[0].remote_id == "00Q1"
    assert (outcomes[2].reason or "").startswith("Salesforce says STRING_TOO_LONG on Company:")
    assert "fix map:" in (outcomes[3].reason or "")


@pytest.mark.anyio
async def test_a_mapping_error_fails_only_that_submission() -> None:
    cfg = config(map={"LastName": "{{ name }}", "Campaign__c": "{{ hidden.campaign }}"})
    items = [item(1), item(2, make_submission(2, hidden={})), item(3)]
    answer = [{"id": "00Q1", "success": True, "errors": []}, {"id": "00Q3", "success": True, "errors": []}]
    with respx.mock() as router:
        route = router.patch(COLLECTION).mock(return_value=httpx.Response(200, json=answer))
        outcomes = await deliver(items, cfg)
    assert [o.status for o in outcomes] == ["delivered", "failed", "delivered"]
    assert (outcomes[1].reason or "").startswith("map.Campaign__c: cannot render")
    assert [r["Hookhub_Id__c"] for r in sent(route)["records"]] == ["sub_0001", "sub_0003"]


@pytest.mark.anyio
async def test_an_empty_external_id_fails_that_submission() -> None:
    with respx.mock() as router:  # nothing may be sent
        [outcome] = await deliver(
            [item(1, make_submission(hidden={"crm_id": " "}))], config(external_id="{{ hidden.crm_id }}")
        )
    assert not router.calls
    assert outcome.status == "failed"
    assert outcome.reason == "external_id: rendered empty; the upsert needs a value"


@pytest.mark.anyio
async def test_batches_are_split_and_one_external_id_is_never_twice_in_a_request() -> None:
    def answer(request: httpx.Request) -> httpx.Response:
        records = json.loads(request.content)["records"]
        return httpx.Response(
            200, json=[{"id": f"00Q{i}", "success": True, "errors": []} for i in range(len(records))]
        )

    cfg = config(batch_size=2, external_id="{{ email | lower }}")
    items = [item(1), item(2), item(3, make_submission(3, email="grace@example.com")), item(4)]
    with respx.mock() as router:
        collection = router.patch(COLLECTION).mock(side_effect=answer)
        one = router.patch(f"{API}/sobjects/Lead/Hookhub_Id__c/ada%40example.com").mock(
            return_value=httpx.Response(204)
        )
        outcomes = await deliver(items, cfg)
    assert [o.status for o in outcomes] == ["delivered"] * 4
    ids = [
        [r["Hookhub_Id__c"] for r in json.loads(call.request.content)["records"]] for call in collection.calls
    ]
    assert ids == [["ada@example.com", "grace@example.com"]]  # 1 and 3 together
    assert one.call_count == 2  # then 2 and 4, one by one, each updating what 1 created


@pytest.mark.anyio
async def test_an_answer_with_the_wrong_number_of_results_is_a_recorded_failure() -> None:
    with respx.mock() as router:
        router.patch(COLLECTION).mock(
            return_value=httpx.Response(200, json=[{"id": "00Q1", "success": True}])
        )
        outcomes = await deliver([item(1), item(2)])
    assert [o.status for o in outcomes] == ["failed", "failed"]
    assert "1 results for 2 records" in (outcomes[0].reason or "")


@pytest.mark.anyio
async def test_a_non_list_record_result_fails_that_record_only() -> None:
    with respx.mock() as router:
        router.patch(COLLECTION).mock(
            return_value=httpx.Response(200, json=[{"id": "00Q1", "success": True}, "x"])
        )
        outcomes = await deliver([item(1), item(2)])
    assert [o.status for o in outcomes] == ["delivered", "failed"]


# --- the org's budget ---------------------------------------------------------------------------


@pytest.mark.anyio
async def test_request_limit_exceeded_parks_the_whole_org_for_every_token() -> None:
    pacer, vt = fake_pacer()
    limited = replay(FIXTURES / "request_limit_exceeded_403.json")
    ok = httpx.Response(201, json={"id": LEAD_ID, "success": True, "errors": []})
    with respx.mock() as router:
        route = router.patch(single()).mock(side_effect=[limited, ok])
        [first] = await deliver([item()], pacer=pacer)
        # Another token on the same org shares the allocation: nothing is sent during the pause.
        [second] = await deliver([item()], config(access_token="another-token-same-org"), pacer)
        assert route.call_count == 1
        vt.now += 3600
        [third] = await deliver([item()], pacer=pacer)
    assert (first.status, first.retry_after) == ("retry", 3600.0)
    assert (second.status, second.retry_after, second.status_code) == ("retry", 3600.0, None)
    assert "hold off this org (3600 s left)" in (second.reason or "")
    assert third.status == "delivered" and route.call_count == 2
    assert TOKEN not in ORG and BASE not in ORG


@pytest.mark.anyio
async def test_concurrent_request_limit_is_a_short_pause() -> None:
    pacer, _ = fake_pacer()
    body = [{"errorCode": "REQUEST_LIMIT_EXCEEDED", "message": "ConcurrentPerOrgLongTxn Limit exceeded"}]
    with respx.mock() as router:
        router.patch(single()).mock(return_value=httpx.Response(403, json=body))
        [outcome] = await deliver([item()], pacer=pacer)
    assert (outcome.status, outcome.retry_after, pacer.paused_for(ORG)) == ("retry", 20.0, 20.0)


@pytest.mark.anyio
async def test_api_usage_at_its_limit_pauses_before_the_org_is_refused() -> None:
    pacer, _ = fake_pacer()
    ok = httpx.Response(
        201,
        headers={"Sforce-Limit-Info": "api-usage=100000/100000"},
        json={"id": LEAD_ID, "success": True, "errors": []},
    )
    with respx.mock() as router:
        route = router.patch(single()).mock(return_value=ok)
        [first] = await deliver([item()], pacer=pacer)
        [later] = await deliver([item()], pacer=pacer)
    assert first.status == "delivered" and first.retry_after is None
    assert (later.status, later.retry_after) == ("retry", 3600.0)
    assert route.call_count == 1


@pytest.mark.anyio
async def test_retry_after_is_honoured_exactly_and_a_short_one_queues_instead_of_failing() -> None:
    pacer, vt = fake_pacer()
    unavailable = httpx.Response(503, headers={"Retry-After": "7200.5"}, json=[])
    with respx.mock() as router:
        router.patch(single()).mock(return_value=unavailable)
        [outcome] = await deliver([item()], pacer=pacer)
    assert (outcome.status, outcome.retry_after, pacer.paused_for(ORG)) == ("retry", 7200.5, 7200.5)

    pacer, vt = fake_pacer()
    sent_at: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        sent_at.append(vt.now)
        if len(sent_at) == 1:
            return httpx.Response(503, headers={"Retry-After": "3"}, json=[])
        return httpx.Response(204)

    with respx.mock() as router:
        router.patch(single()).mock(side_effect=answer)
        [first] = await deliver([item()], pacer=pacer)
        [second] = await deliver([item()], pacer=pacer)
    assert (first.status, first.retry_after) == ("retry", 3.0)
    assert second.status == "delivered"
    assert sent_at == [1000.0, 1003.0]


# --- config, check, registry, secrecy ------------------------------------------------------------


def test_registered_as_salesforce() -> None:
    assert isinstance(get_destination("salesforce"), SalesforceDestination)


def test_good_configs() -> None:
    cfg = config()
    assert (cfg.api_version, cfg.sobject, cfg.external_id, cfg.batch_size) == (
        "62.0",
        "Lead",
        "{{ id }}",
        200,
    )
    assert cfg.root == API
    assert config(instance_url=None, base_url=BASE + "/").root == API
    assert config(base_url=BASE).root == API
    assert (
        config(instance_url="http://127.0.0.1:8080", api_version="v60.0").root
        == "http://127.0.0.1:8080/services/data/v60.0"
    )
    assert config(sobject="Contact").sobject == "Contact"
    assert TOKEN not in repr(cfg) and TOKEN not in str(cfg.model_dump())


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"instance_url": None}, "missing required key 'instance_url'"),
        ({"base_url": "https://other.my.salesforce.com"}, "give one of them"),
        ({"instance_url": "http://acme.my.salesforce.com"}, "must start with https://"),
        ({"access_token": " "}, "non-empty token"),
        ({"access_token": TOKEN + "\nX-Evil: 1"}, "without spaces or line breaks"),
        ({"api_version": "sixty"}, "must look like 62.0"),
        ({"api_version": "45.0"}, "46.0 or later"),
        ({"sobject": "Lead/../Account"}, "Salesforce API name"),
        ({"external_id_field": "Hookhub Id"}, "Salesforce API name"),
        ({"map": {"Hookhub_Id__c": "{{ id }}"}}, "is set by hookhub"),
        ({"map": {"Id": "{{ id }}"}}, "is set by hookhub"),
        ({"map": {"Bad-Field": "x"}}, "not a Salesforce field API name"),
        ({"sobject": "Web_Form__c"}, "map is required for sobject Web_Form__c"),
        ({"batch_size": 201}, "less than or equal to 200"),
        ({"acces_token": TOKEN}, "Extra inputs are not permitted"),
    ],
)
def test_bad_configs_are_refused_without_echoing_the_token(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        config(**changes)
    assert message in str(caught.value)
    assert TOKEN not in str(caught.value)


def test_external_id_field_is_required() -> None:
    with pytest.raises(ValidationError) as caught:
        SalesforceConfig.model_validate({"type": "salesforce", "instance_url": BASE, "access_token": TOKEN})
    assert "external_id_field" in str(caught.value)


def test_check_reports_template_errors_before_start() -> None:
    cfg = config(map={"LastName": "{{ name | last_name }", "Email": "{{ email }}"}, external_id="{% if %}")
    problems = SalesforceDestination().check(cfg)
    assert len(problems) == 2
    assert problems[0].startswith("external_id: template error:")
    assert problems[1].startswith("map.LastName: template error:")
    assert SalesforceDestination().check(config()) == []


def test_loader_reports_problems_with_their_position_and_no_token(tmp_path: Path) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(
        "destinations:\n"
        "  crm:\n    type: salesforce\n    instance_url: https://acme.my.salesforce.com\n"
        "    access_token: ${SF_ACCESS_TOKEN}\n    external_id_field: Hookhub_Id__c\n"
        "    map: {LastName: '{{ name | last_name'}\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {"SF_ACCESS_TOKEN": TOKEN})
    problems = [str(p) for p in caught.value.problems]
    assert any("destinations.crm: map.LastName: template error:" in p for p in problems), problems
    assert TOKEN not in "\n".join(problems)


@pytest.mark.anyio
async def test_logs_carry_facts_but_no_token_url_or_personal_data() -> None:
    answer = [
        {"id": "00Q1", "success": True, "errors": []},
        {
            "success": False,
            "errors": [
                {
                    "statusCode": "INVALID_EMAIL_ADDRESS",
                    "message": "invalid email: grace@example.com",
                    "fields": ["Email"],
                }
            ],
        },
    ]
    cfg = config(map={"LastName": "{{ name }}", "Email": "{{ email }}", "Secret__c": "{{ hidden.missing }}"})
    items = [
        item(1, mapping={"LastName": "{{ name }}"}),
        item(2, make_submission(2, email="grace@example.com"), mapping={"Email": "{{ email }}"}),
        item(3),
    ]
    with captured_logs("hookhub.destinations.salesforce") as records, respx.mock() as router:
        router.patch(COLLECTION).mock(return_value=httpx.Response(200, json=answer))
        router.patch(single(4)).mock(return_value=replay(FIXTURES / "request_limit_exceeded_403.json"))
        outcomes = await deliver(items, cfg) + await deliver([item(4)])
    assert [o.status for o in outcomes] == ["delivered", "failed", "failed", "retry"]
    dumped = " ".join(json.dumps(vars(r), default=str) for r in records)
    for secret in (
        TOKEN,
        "acme.my.salesforce.com",
        "ada@example.com",
        "Ada@Example.com",
        "grace@example.com",
        "Lovelace",
        "Analytical",
    ):
        assert secret not in dumped
    facts = [(r.outcome, r.salesforce_errors) for r in records if hasattr(r, "outcome")]
    assert facts == [  # one line per outcome, in the order of the items (flows/delivery.py)
        ("delivered", []),
        ("failed", ["INVALID_EMAIL_ADDRESS"]),
        ("failed", []),
        ("retry", ["REQUEST_LIMIT_EXCEEDED"]),
    ]
