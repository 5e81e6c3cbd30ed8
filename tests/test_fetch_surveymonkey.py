"""SurveyMonkey's fetch step: `expand` against recorded-looking API answers (respx), and end to end
through a running hub, a loopback SurveyMonkey API and a loopback webhook destination.

API shapes follow SurveyMonkey's API docs (public_api_docs: _responses.md, _surveys.md, _questions.md);
see connectors/surveymonkey/api.py for what is documented and what is only observed.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.base import FetchFailed, InboundRequest, NormalizeContext
from connectors.surveymonkey import SurveyMonkeyConnector, SurveyMonkeyOptions
from connectors.surveymonkey.api import SurveyCache
from hub.submission import Submission, parse_instant
from tests.fake_destination import FakeDestination, json_body
from tests.harness import PROVIDER_FIXTURES, FakeClock, epoch, load_fixture, serve_app, start_hub, wait_for
from tests.httpx_senders import respx_sender

FIXTURE = load_fixture(PROVIDER_FIXTURES / "surveymonkey" / "response_completed.json")
SURVEY_ID, RESPONSE_ID = "405631222", "175618370689"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
TOKEN = "sm-test-access-token"
BASE = "https://api.surveymonkey.com"
DETAILS_URL = f"{BASE}/v3/surveys/{SURVEY_ID}/responses/{RESPONSE_ID}/details"
SURVEY_URL = f"{BASE}/v3/surveys/{SURVEY_ID}/details"


def _choices(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [{"id": i, "text": t, "visible": True, "position": n} for n, (i, t) in enumerate(pairs, 1)]


def _q(
    qid: str, heading: str, family: str, subtype: str, answers: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    question = {
        "id": qid,
        "headings": [{"heading": heading}],
        "family": family,
        "subtype": subtype,
        "position": 1,
        "visible": True,
        "href": f"{BASE}/v3/surveys/{SURVEY_ID}/pages/1/questions/{qid}",
    }
    if answers is not None:
        question["answers"] = answers
    return {**question, **extra}


SURVEY = {
    "id": SURVEY_ID,
    "title": "Customer feedback 2026",
    "language": "en",
    "question_count": 13,
    "page_count": 2,
    "date_created": "2026-10-01T09:00:00+00:00",
    "date_modified": "2026-11-02T10:00:00+00:00",
    "pages": [
        {
            "id": "52210384",
            "title": "",
            "position": 1,
            "questions": [
                _q(
                    "158834601",
                    "How did you hear about us?",
                    "single_choice",
                    "vertical",
                    {
                        "choices": _choices(
                            ("1160233501", "Friend or colleague"), ("1160233502", "Search engine")
                        ),
                        "other": {
                            "id": "1160233509",
                            "text": "Other (please specify)",
                            "visible": True,
                            "is_answer_choice": True,
                            "apply_all_rows": False,
                            "num_lines": 1,
                            "num_chars": 50,
                        },
                    },
                ),
                _q(
                    "158834602",
                    "Which products do you use?",
                    "multiple_choice",
                    "vertical",
                    {
                        "choices": _choices(
                            ("1160233511", "Forms"), ("1160233512", "Surveys"), ("1160233513", "Quizzes")
                        )
                    },
                ),
                _q(
                    "158834603",
                    "How would you rate us overall?",
                    "matrix",
                    "rating",
                    {
                        "rows": [{"id": "1160233530", "text": "", "visible": True, "position": 1}],
                        "choices": [
                            {"id": f"116023353{n}", "text": "", "weight": n, "visible": True, "position": n}
                            for n in range(1, 6)
                        ],
                    },
                    display_options={"display_type": "emoji", "display_subtype": "star"},
                ),
                _q(
                    "158834604",
                    "How satisfied are you with…",
                    "matrix",
                    "single",
                    {
                        "rows": [
                            {"id": "1160233541", "text": "Speed"},
                            {"id": "1160233542", "text": "Support"},
                        ],
                        "choices": _choices(
                            ("1160233545", "Very satisfied"),
                            ("1160233546", "Satisfied"),
                            ("1160233547", "Neutral"),
                        ),
                    },
                ),
                _q(
                    "158834605",
                    "Preferred contact per team",
                    "matrix",
                    "menu",
                    {
                        "rows": [
                            {"id": "1160233551", "text": "Sales"},
                            {"id": "1160233552", "text": "Billing"},
                        ],
                        "cols": [
                            {
                                "id": "1160233555",
                                "text": "Channel",
                                "choices": _choices(("1160233556", "E-mail"), ("1160233557", "Phone")),
                            }
                        ],
                    },
                ),
            ],
        },
        {
            "id": "52210385",
            "title": "About you",
            "position": 2,
            "questions": [
                _q("158834606", "Anything else?", "open_ended", "essay"),
                _q(
                    "158834607",
                    "Your contact details",
                    "demographic",
                    "international",
                    {
                        "rows": [
                            {
                                "id": "1160233571",
                                "type": "name",
                                "text": "Full name",
                                "visible": True,
                                "required": True,
                            },
                            {
                                "id": "1160233572",
                                "type": "email",
                                "text": "Email Address",
                                "visible": True,
                                "required": True,
                            },
                            {
                                "id": "1160233573",
                                "type": "phone",
                                "text": "Phone Number",
                                "visible": True,
                                "required": False,
                            },
                        ]
                    },
                ),
                _q(
                    "158834608",
                    "How many people will attend?",
                    "open_ended",
                    "numerical",
                    {
                        "rows": [
                            {"id": "1160233581", "text": "Adults"},
                            {"id": "1160233582", "text": "Children"},
                        ]
                    },
                ),
                _q(
                    "158834609",
                    "When did you sign up?",
                    "datetime",
                    "date_only",
                    {"rows": [{"id": "1160233591", "text": "Date"}]},
                ),
                _q(
                    "158834610",
                    "Upload your invoice",
                    "open_ended",
                    "single",
                    display_options={"display_type": "file_upload"},
                ),
                _q("158834611", "Thank you!", "presentation", "descriptive_text"),
                _q(
                    "158834612",
                    "Would you recommend us?",
                    "single_choice",
                    "vertical",
                    {
                        "choices": _choices(("1160233601", "Yes"), ("1160233602", "No")),
                        "other": {
                            "id": "1160233609",
                            "text": "Comments",
                            "visible": True,
                            "is_answer_choice": False,
                        },
                    },
                ),
                _q("158834613", "Your website", "open_ended", "single"),
            ],
        },
    ],
}

DETAILS = {
    "id": RESPONSE_ID,
    "survey_id": SURVEY_ID,
    "collector_id": "491328943",
    "recipient_id": "0",
    "response_status": "completed",
    "collection_mode": "default",
    "total_time": 145,
    "date_created": "2026-11-20T14:01:02+00:00",
    "date_modified": "2026-11-20T14:03:27+00:00",
    "custom_variables": {"ref": "newsletter", "campaign": ""},
    "custom_value": "",
    "edit_url": "https://www.surveymonkey.com/r/?sm=secret-edit-link",
    "analyze_url": f"https://www.surveymonkey.com/analyze/browse/abc?respondent_id={RESPONSE_ID}",
    "ip_address": "203.0.113.9",
    "logic_path": {},
    "page_path": [],
    "current_page_id": "0",
    "metadata": {
        "contact": {
            "email": {"type": "string", "value": "renee.mueller@example.de"},
            "first_name": {"type": "string", "value": "Renée"},
            "last_name": {"type": "string", "value": "Müller"},
        }
    },
    "pages": [
        {
            "id": "52210384",
            "questions": [
                {"id": "158834601", "answers": [{"other_id": "1160233509", "text": "A podcast 🎧"}]},
                {"id": "158834602", "answers": [{"choice_id": "1160233512"}, {"choice_id": "1160233511"}]},
                {"id": "158834603", "answers": [{"row_id": "1160233530", "choice_id": "1160233534"}]},
                {
                    "id": "158834604",
                    "answers": [
                        {"row_id": "1160233541", "choice_id": "1160233546"},
                        {"row_id": "1160233542", "choice_id": "1160233545"},
                    ],
                },
                {
                    "id": "158834605",
                    "answers": [{"row_id": "1160233551", "col_id": "1160233555", "choice_id": "1160233557"}],
                },
            ],
        },
        {
            "id": "52210385",
            "questions": [
                {
                    "id": "158834606",
                    "answers": [{"text": "Great tool!\nSecond line with “quotes” & <b>markup</b>."}],
                },
                {
                    "id": "158834607",
                    "answers": [
                        {"row_id": "1160233571", "text": "Renée Müller"},
                        {"row_id": "1160233572", "text": "renee@example.de"},
                        {"row_id": "1160233573", "text": ""},
                    ],
                },
                {
                    "id": "158834608",
                    "answers": [{"row_id": "1160233581", "text": "2"}, {"row_id": "1160233582", "text": "1"}],
                },
                {"id": "158834609", "answers": [{"row_id": "1160233591", "text": "03/14/2026"}]},
                {
                    "id": "158834610",
                    "answers": [
                        {
                            "download_url": "https://www.surveymonkey.com/file/abc123",
                            "content_type": "application/pdf",
                            "text": "invoice.pdf",
                        }
                    ],
                },
                {
                    "id": "158834612",
                    "answers": [
                        {"choice_id": "1160233601"},
                        {"other_id": "1160233609", "text": "Already did!"},
                    ],
                },
                {"id": "158834613", "answers": [{"text": ""}]},
            ],
        },
    ],
}

EXPECTED = {
    "How did you hear about us?": "A podcast 🎧",
    "Which products do you use?": ["Surveys", "Forms"],
    "How would you rate us overall?": 4,
    "How satisfied are you with… [Speed]": "Satisfied",
    "How satisfied are you with… [Support]": "Very satisfied",
    "Preferred contact per team [Sales / Channel]": "Phone",
    "Anything else?": "Great tool!\nSecond line with “quotes” & <b>markup</b>.",
    "Your contact details [Full name]": "Renée Müller",
    "Your contact details [Email Address]": "renee@example.de",
    "How many people will attend? [Adults]": "2",
    "How many people will attend? [Children]": "1",
    "When did you sign up? [Date]": "03/14/2026",
    "Upload your invoice": "https://www.surveymonkey.com/file/abc123",
    "Would you recommend us?": "Yes",
    "Would you recommend us? [Comments]": "Already did!",
}


@dataclass(frozen=True)
class Source:
    options: BaseModel
    secrets: list[str] = field(default_factory=list)
    tolerance: int = 300
    public_url: str | None = None


def source(**options: Any) -> Source:
    return Source(options=SurveyMonkeyOptions.model_validate({"access_token": TOKEN, **options}))


def thin(fixture: dict[str, Any] = FIXTURE) -> Submission:
    request = InboundRequest(
        method="POST",
        url=fixture["url"],
        body=fixture["body"].encode("utf-8"),
        headers={k.lower(): v for k, v in fixture["headers"].items()},
    )
    context = NormalizeContext(
        submission_id="sub_1", source="surveymonkey", received_at=parse_instant(fixture["received_at"])
    )
    return SurveyMonkeyConnector().normalize(request, context)


async def expand(connector: SurveyMonkeyConnector, submission: Submission, src: Source) -> list[Submission]:
    http = respx_sender()
    return await connector.expand(submission, src, http)


def answers_of(submission: Submission | dict[str, Any]) -> dict[str, Any]:
    answers = submission.answers if isinstance(submission, Submission) else submission["answers"]
    return {
        (a.label if isinstance(a, BaseModel) else a["label"]): (
            a.value if isinstance(a, BaseModel) else a["value"]
        )
        for a in answers
    }


@pytest.mark.anyio
async def test_expand_maps_every_question_type_and_keeps_the_event() -> None:
    connector = SurveyMonkeyConnector()
    with respx.mock(assert_all_called=True) as mock:
        details = mock.get(DETAILS_URL).respond(200, json=DETAILS)
        survey = mock.get(SURVEY_URL).respond(200, json=SURVEY)
        [full] = await expand(connector, thin(), source())
    assert details.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
    assert survey.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"
    assert full.event_id == FIXTURE["expect"]["event_id"] and full.id == "sub_1"
    assert full.form_id == SURVEY_ID and full.form_title == "Customer feedback 2026"
    assert answers_of(full) == EXPECTED
    assert [a.label for a in full.answers] == list(EXPECTED)  # in the order answered
    assert isinstance(answers_of(full)["How would you rate us overall?"], int)  # a star rating's weight
    assert full.email == "renee.mueller@example.de" and full.name == "Renée Müller"  # the contact's
    assert full.submitted_at == datetime.fromisoformat("2026-11-20T14:03:27+00:00")  # date_modified
    assert full.hidden == {"ref": "newsletter"}
    assert "answers_pending" not in full.metadata
    assert full.metadata["details_href"] == DETAILS_URL and full.metadata["response_status"] == "completed"
    assert full.metadata["collector_id"] == "491328943"
    assert "edit_url" not in json.dumps(full.metadata)
    types = {a.label: a.type for a in full.answers}
    assert types["Your contact details [Email Address]"] == "email"
    assert types["Upload your invoice"] == "file_upload"
    assert types["Which products do you use?"] == "multiple_choice_vertical"


@pytest.mark.anyio
async def test_email_and_name_come_from_answers_without_a_contact() -> None:
    details = {k: v for k, v in DETAILS.items() if k != "metadata"}
    details["date_modified"] = ""
    with respx.mock() as mock:
        mock.get(DETAILS_URL).respond(200, json=details)
        mock.get(SURVEY_URL).respond(200, json=SURVEY)
        [full] = await expand(SurveyMonkeyConnector(), thin(), source())
    assert full.email == "renee@example.de"  # the demographic e-mail row
    assert full.submitted_at == datetime.fromisoformat("2026-11-20T14:01:02+00:00")  # date_created


@pytest.mark.anyio
async def test_survey_structure_is_cached_refreshed_and_refetched_for_new_questions() -> None:
    now = [0.0]
    connector = SurveyMonkeyConnector()
    connector.surveys = SurveyCache(ttl=300, clock=lambda: now[0])
    with respx.mock() as mock:
        mock.get(DETAILS_URL).respond(200, json=DETAILS)
        survey = mock.get(SURVEY_URL).respond(200, json=SURVEY)
        await expand(connector, thin(), source())
        await expand(connector, thin(), source())
        assert survey.call_count == 1
        now[0] = 301.0
        await expand(connector, thin(), source())
        assert survey.call_count == 2
        # A question added after the survey was cached: fetched again at once, labelled.
        edited = copy.deepcopy(SURVEY)
        edited["pages"][1]["questions"].append(_q("158834699", "New question", "open_ended", "single"))
        answered = copy.deepcopy(DETAILS)
        answered["pages"][1]["questions"].append({"id": "158834699", "answers": [{"text": "fresh"}]})
        mock.get(DETAILS_URL).respond(200, json=answered)
        survey.respond(200, json=edited)
        [full] = await expand(connector, thin(), source())
        assert survey.call_count == 3
    assert answers_of(full)["New question"] == "fresh"


@pytest.mark.anyio
async def test_regional_api_base_url() -> None:
    eu = "https://api.eu.surveymonkey.com"
    with respx.mock() as mock:
        details = mock.get(f"{eu}/v3/surveys/{SURVEY_ID}/responses/{RESPONSE_ID}/details").respond(
            200, json=DETAILS
        )
        mock.get(f"{eu}/v3/surveys/{SURVEY_ID}/details").respond(200, json=SURVEY)
        [full] = await expand(SurveyMonkeyConnector(), thin(), source(api_base_url=f"{eu}/v3/"))
    assert details.called and full.metadata["details_href"].startswith(eu)


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, "refused the access token"),
        (403, "View Response Details"),
        (404, "api_base_url"),
        (429, "rate limit"),
        (503, "tried again later"),
    ],
)
async def test_api_errors_become_fetch_failed_with_a_reason(status: int, expected: str) -> None:
    body = {
        "error": {"id": "1014", "name": "Authorization Error", "message": "Permission has not been granted"}
    }
    with respx.mock() as mock:
        mock.get(DETAILS_URL).respond(
            status, json=body, headers={"Retry-After": "60"} if status == 429 else {}
        )
        with pytest.raises(FetchFailed, match=expected) as caught:
            await expand(SurveyMonkeyConnector(), thin(), source())
    assert TOKEN not in str(caught.value)


@pytest.mark.anyio
async def test_unreachable_api_and_missing_token_fail_without_leaking_it() -> None:
    with respx.mock() as mock:
        mock.get(DETAILS_URL).mock(side_effect=httpx.ConnectError("refused"))
        with pytest.raises(FetchFailed, match="could not reach SurveyMonkey"):
            await expand(SurveyMonkeyConnector(), thin(), source())
    with respx.mock() as mock, pytest.raises(FetchFailed, match="access_token is not set"):
        await expand(SurveyMonkeyConnector(), thin(), Source(options=SurveyMonkeyOptions()))
    assert not mock.calls


def test_options_validation_and_warnings() -> None:
    connector = SurveyMonkeyConnector()
    assert SurveyMonkeyOptions().api_base_url == "https://api.surveymonkey.com"
    assert (
        SurveyMonkeyOptions(api_base_url="https://api.surveymonkey.ca/").api_base_url
        == "https://api.surveymonkey.ca"
    )
    with pytest.raises(ValidationError, match="environment variable unset"):
        SurveyMonkeyOptions(access_token="  ")
    with pytest.raises(ValidationError, match="must use https"):
        SurveyMonkeyOptions(api_base_url="http://api.surveymonkey.com")
    warnings = " ".join(connector.warnings(SurveyMonkeyOptions(api_key="k")))
    assert "answers will not be fetched; submissions become dead letters" in warnings
    assert connector.warnings(SurveyMonkeyOptions(api_key="k", access_token=TOKEN)) == []
    assert connector.fetches


# --- end to end ------------------------------------------------------------------------------


class FakeSurveyMonkey:
    """The two GET endpoints on loopback, answering only the right token."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    async def _details(self, request: Request) -> JSONResponse:
        return self._answer(request, DETAILS if request.path_params["rid"] == RESPONSE_ID else None)

    async def _survey(self, request: Request) -> JSONResponse:
        return self._answer(request, SURVEY if request.path_params["sid"] == SURVEY_ID else None)

    def _answer(self, request: Request, body: dict[str, Any] | None) -> JSONResponse:
        self.calls.append(request.url.path)
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return JSONResponse({"error": {"message": "Invalid token"}}, status_code=401)
        if body is None:
            return JSONResponse({"error": {"message": "Resource not found"}}, status_code=404)
        return JSONResponse(body)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v3/surveys/{sid}/responses/{rid}/details", self._details),
                Route("/v3/surveys/{sid}/details", self._survey),
            ]
        )


def test_callback_through_the_hub_is_delivered_with_its_fetched_answers(tmp_path: Path) -> None:
    api = FakeSurveyMonkey()
    api_server = serve_app(api.app())
    fake = FakeDestination().start()
    config = tmp_path / "connectors.yaml"
    config.write_text(
        "\n".join(
            [
                "sources:",
                "  surveymonkey:",
                "    provider: surveymonkey",
                f"    secret: {json.dumps(FIXTURE['secret'])}",
                f"    api_key: {json.dumps(FIXTURE['verify_config']['api_key'])}",
                "    access_token: ${SM_TOKEN}",
                f"    api_base_url: {api_server.url}",
                "destinations:",
                f"  out: {{type: webhook, url: {json.dumps(fake.url('/hook'))}, secret: {WHSEC}}}",
                "routes:",
                "  - {name: all, from: ['*'], to: [out]}",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    clock = FakeClock(epoch(FIXTURE["received_at"]))  # the signature is checked at the fixture's clock
    _, server = start_hub(config, tmp_path / "data", clock=clock, environ={"SM_TOKEN": TOKEN}, dispatch=True)
    try:
        answer = httpx.post(
            f"{server.url}/hooks/surveymonkey",
            content=FIXTURE["body"].encode("utf-8"),
            headers={k: v for k, v in FIXTURE["headers"].items() if k.lower() != "content-length"},
            timeout=30,
        )
        assert answer.status_code == 200, answer.text
        wait_for(lambda: fake.received("/hook"), timeout=180, what="the submission delivered")
        [sent] = [json_body(r) for r in fake.received("/hook")]
        assert sent["id"] == answer.json()["id"] and sent["event_id"] == FIXTURE["expect"]["event_id"]
        assert sent["form_id"] == SURVEY_ID and sent["form_title"] == "Customer feedback 2026"
        assert answers_of(sent) == EXPECTED
        assert sent["email"] == "renee.mueller@example.de"
        assert parse_instant(sent["submitted_at"]) == parse_instant("2026-11-20T14:03:27Z")
        assert sorted(set(api.calls)) == [
            f"/v3/surveys/{SURVEY_ID}/details",
            f"/v3/surveys/{SURVEY_ID}/responses/{RESPONSE_ID}/details",
        ]
    finally:
        server.stop()
        fake.stop()
        api_server.stop()
