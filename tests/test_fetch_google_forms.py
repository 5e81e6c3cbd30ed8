"""The Forms API watch's fetch step and watch upkeep: `expand`/`maintain` against recorded-looking Forms
API answers (respx), service-account token minting with a generated RSA key, and end to end through a
running hub with a loopback Forms API: 2 responses → 2 submissions; a later notification listing them
again plus a new one → exactly 1 more.

Shapes follow the Forms API v1 reference (forms.get, forms.responses.list, forms.watches) and the OAuth 2.0
JWT bearer grant; see connectors/google_forms_pubsub/forms_api.py.
"""

from __future__ import annotations

import json
import sqlite3
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
import respx
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import BaseModel, ValidationError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from connectors.base import FetchFailed, InboundRequest, NormalizeContext
from connectors.google_forms_pubsub import GoogleFormsPubSubConnector
from connectors.google_forms_pubsub.forms_api import SCOPES
from connectors.google_forms_pubsub.options import GoogleFormsPubSubOptions
from hub.submission import Submission, parse_instant
from tests.fake_destination import FakeDestination, json_body
from tests.harness import PROVIDER_FIXTURES, FakeClock, epoch, load_fixture, serve_app, start_hub, wait_for
from tests.httpx_senders import respx_sender

FIXTURE = load_fixture(PROVIDER_FIXTURES / "google_forms_pubsub" / "responses_event.json")
FORM_ID = FIXTURE["expect"]["form_id"]
WATCH_ID = "88a5e0c8-7001-4a79-a63e-f53f16f02b27"
TOKEN = "ya29.test-access-token"
API = "https://forms.googleapis.com/v1"
TOKEN_URL = "https://oauth2.googleapis.com/token"
TOPIC = "projects/acme-forms-prod/topics/forms-events"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def _question(qid: str, **kind: Any) -> dict[str, Any]:
    return {"questionItem": {"question": {"questionId": qid, "required": False, **kind}}}


def _item(title: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"itemId": uuid.uuid5(uuid.NAMESPACE_OID, title).hex[:8], "title": title, **body}


def _grid(title: str, kind: str, rows: list[tuple[str, str]]) -> dict[str, Any]:
    return _item(
        title,
        {
            "questionGroupItem": {
                "questions": [{"questionId": q, "rowQuestion": {"title": t}} for q, t in rows],
                "grid": {"columns": {"type": kind, "options": [{"value": "Good"}, {"value": "OK"}]}},
            }
        },
    )


FORM = {
    "formId": FORM_ID,
    "revisionId": "00000042",
    "responderUri": f"https://docs.google.com/forms/d/e/{FORM_ID}/viewform",
    "info": {"title": "PyConf 2026 — Anmeldung", "documentTitle": "Registration (internal)"},
    "items": [
        _item("Full name", _question("6a401f94", textQuestion={})),
        _item("Anything else we should know?", _question("2063e2c0", textQuestion={"paragraph": True})),
        _item(
            "Dietary preference",
            _question(
                "1e3f5a77",
                choiceQuestion={
                    "type": "RADIO",
                    "options": [{"value": "Vegetarian"}, {"value": "Vegan"}, {"isOther": True}],
                },
            ),
        ),
        _item(
            "Which sessions will you attend?",
            _question(
                "3c2b1a00",
                choiceQuestion={
                    "type": "CHECKBOX",
                    "options": [{"value": "Keynote"}, {"value": "Workshop: Async Python 🐍"}],
                },
            ),
        ),
        _item(
            "T-shirt size",
            _question("4d5e6f70", choiceQuestion={"type": "DROP_DOWN", "options": [{"value": "M"}]}),
        ),
        _item(
            "How would you rate last year's event?",
            _question("5f6a7b80", scaleQuestion={"low": 1, "high": 5}),
        ),
        _item("Arrival date", _question("60718293", dateQuestion={"includeYear": True})),
        _item("Arrival time", _question("7182a3b4", timeQuestion={})),
        _item("Upload your ID", _question("8293b4c5", fileUploadQuestion={"folderId": "f0", "maxFiles": 2})),
        _item("About the venue", {"textItem": {}}),
        _grid("Rate the talks", "RADIO", [("93a4c5d6", "Keynote"), ("a4b5d6e7", "Workshops")]),
        _grid("Which days suit you?", "CHECKBOX", [("b5c6e7f8", "Morning")]),
        _item("", {"pageBreakItem": {}}),
        _item("Mobile phone", _question("c6d7f809", textQuestion={})),
    ],
}


def _text(qid: str, *values: str) -> dict[str, Any]:
    return {"questionId": qid, "textAnswers": {"answers": [{"value": v} for v in values]}}


RESPONSE_1 = {
    "responseId": "ACYDBNj1_first_response",
    "createTime": "2026-11-20T14:04:58.123Z",
    "lastSubmittedTime": "2026-11-20T14:04:58.123456789Z",
    "respondentEmail": "renee.mueller@example.de",
    "answers": {  # keyed by questionId, not in form order
        "b5c6e7f8": _text("b5c6e7f8", "Good", "OK"),
        "6a401f94": _text("6a401f94", "Renée Müller-Lüdenscheidt"),
        "2063e2c0": _text(
            "2063e2c0", "Looking forward to it!\nSecond line with “curly quotes” & <b>markup</b>."
        ),
        "1e3f5a77": _text("1e3f5a77", "Vegetarian"),
        "3c2b1a00": _text("3c2b1a00", "Keynote", "Workshop: Async Python 🐍"),
        "4d5e6f70": _text("4d5e6f70", "M"),
        "5f6a7b80": _text("5f6a7b80", "4"),
        "60718293": _text("60718293", "2026-03-14"),
        "7182a3b4": _text("7182a3b4", "09:30"),
        "8293b4c5": {
            "questionId": "8293b4c5",
            "fileUploadAnswers": {
                "answers": [
                    {"fileId": "1AbCdEf", "fileName": "id-front.jpg", "mimeType": "image/jpeg"},
                    {"fileId": "2GhIjKl", "fileName": "id-back.jpg", "mimeType": "image/jpeg"},
                ]
            },
        },
        "93a4c5d6": _text("93a4c5d6", "Good"),
        "a4b5d6e7": _text("a4b5d6e7", "OK"),
        "c6d7f809": {"questionId": "c6d7f809", "textAnswers": {"answers": []}},
    },
}
EXPECTED_1 = {
    "Full name": "Renée Müller-Lüdenscheidt",
    "Anything else we should know?": (
        "Looking forward to it!\nSecond line with “curly quotes” & <b>markup</b>."
    ),
    "Dietary preference": "Vegetarian",
    "Which sessions will you attend?": ["Keynote", "Workshop: Async Python 🐍"],
    "T-shirt size": "M",
    "How would you rate last year's event?": "4",
    "Arrival date": "2026-03-14",
    "Arrival time": "09:30",
    "Upload your ID": [
        "https://drive.google.com/open?id=1AbCdEf",
        "https://drive.google.com/open?id=2GhIjKl",
    ],
    "Rate the talks [Keynote]": "Good",
    "Rate the talks [Workshops]": "OK",
    "Which days suit you? [Morning]": ["Good", "OK"],
}


def response(n: int, name: str, email: str) -> dict[str, Any]:
    at = f"2026-11-20T14:0{n}:00.5Z"
    return {
        "responseId": f"ACYDBNj{n}_response",
        "createTime": at,
        "lastSubmittedTime": at,
        "answers": {"6a401f94": _text("6a401f94", name), "c6d7f809": _text("c6d7f809", email)},
    }


@dataclass(frozen=True)
class Source:
    options: BaseModel
    secrets: list[str] = field(default_factory=list)
    tolerance: int = 300
    public_url: str | None = FIXTURE["url"]


def options(**extra: Any) -> GoogleFormsPubSubOptions:
    settings = {**FIXTURE["verify_config"], "access_token": TOKEN, **extra}
    return GoogleFormsPubSubOptions.model_validate({k: v for k, v in settings.items() if v is not None})


def thin() -> Submission:
    request = InboundRequest(
        method="POST",
        url=FIXTURE["url"],
        body=FIXTURE["body"].encode("utf-8"),
        headers={k.lower(): v for k, v in FIXTURE["headers"].items()},
    )
    context = NormalizeContext(
        submission_id="sub_1", source="gforms", received_at=parse_instant(FIXTURE["received_at"])
    )
    return GoogleFormsPubSubConnector().normalize(request, context)


async def run(coro_fn: Any, *args: Any) -> Any:
    http = respx_sender()
    return await coro_fn(*args, http)


def answers_of(submission: Submission | dict[str, Any]) -> dict[str, Any]:
    data = submission.model_dump() if isinstance(submission, Submission) else submission
    return {a["label"]: a["value"] for a in data["answers"]}


def mock_api(mock: respx.MockRouter, *pages: list[dict[str, Any]]) -> tuple[respx.Route, respx.Route]:
    form = mock.get(f"{API}/forms/{FORM_ID}").respond(200, json=FORM)
    answers = [
        httpx.Response(
            200,
            json={"responses": page, **({"nextPageToken": f"page-{n + 2}"} if n + 1 < len(pages) else {})},
        )
        for n, page in enumerate(pages)
    ]
    listing = mock.get(f"{API}/forms/{FORM_ID}/responses").mock(side_effect=answers)
    return form, listing


@pytest.mark.anyio
async def test_expand_lists_responses_since_the_notification_and_maps_them() -> None:
    connector = GoogleFormsPubSubConnector()
    with respx.mock(assert_all_called=True) as mock:
        form, listing = mock_api(mock, [RESPONSE_1], [response(5, "Ada Lovelace", "ada@example.org")])
        found = await run(connector.expand, thin(), Source(options()))
    # publishTime 14:05:12.733Z minus the default 1 h look-back; the page token follows with the same filter.
    first, second = (parse_qs(c.request.url.query.decode()) for c in listing.calls)
    assert first == {"filter": ["timestamp > 2026-11-20T13:05:12.733Z"]}
    assert second == {"filter": ["timestamp > 2026-11-20T13:05:12.733Z"], "pageToken": ["page-2"]}
    assert all(c.request.headers["authorization"] == f"Bearer {TOKEN}" for c in [*listing.calls, *form.calls])
    one, two = found
    assert answers_of(one) == EXPECTED_1 and [a.label for a in one.answers] == list(EXPECTED_1)  # form order
    assert one.event_id == RESPONSE_1["responseId"] and one.form_id == FORM_ID
    assert one.form_title == "PyConf 2026 — Anmeldung" and one.email == "renee.mueller@example.de"
    assert one.submitted_at == parse_instant("2026-11-20T14:04:58.123Z")  # lastSubmittedTime, to the ms
    assert one.metadata["notification_id"] == FIXTURE["expect"]["event_id"]
    assert one.metadata["watch_id"] == WATCH_ID and one.metadata["response_id"] == RESPONSE_1["responseId"]
    assert {a.label: a.type for a in one.answers}["Rate the talks [Keynote]"] == "grid"
    assert {a.label: a.type for a in one.answers}["Which days suit you? [Morning]"] == "checkbox_grid"
    assert two.email == "ada@example.org" and answers_of(two) == {
        "Full name": "Ada Lovelace",
        "Mobile phone": "ada@example.org",
    }
    assert two.name == "Ada Lovelace"


@pytest.mark.anyio
async def test_look_back_option_and_no_responses_yet() -> None:
    with respx.mock() as mock:
        _, listing = mock_api(mock, [])
        with pytest.raises(FetchFailed, match="no response of form"):
            await run(GoogleFormsPubSubConnector().expand, thin(), Source(options(lookback_seconds=120)))
    assert parse_qs(listing.calls.last.request.url.query.decode())["filter"] == [
        "timestamp > 2026-11-20T14:03:12.733Z"
    ]


@pytest.mark.anyio
async def test_form_is_cached_and_refetched_when_a_question_is_new() -> None:
    connector = GoogleFormsPubSubConnector()
    added = {**RESPONSE_1, "answers": {**RESPONSE_1["answers"], "ffff0001": _text("ffff0001", "new")}}
    edited = {**FORM, "items": [*FORM["items"], _item("Added later", _question("ffff0001", textQuestion={}))]}
    with respx.mock() as mock:
        form, _ = mock_api(mock, [RESPONSE_1])
        await run(connector.expand, thin(), Source(options()))
        mock_api(mock, [RESPONSE_1])
        await run(connector.expand, thin(), Source(options()))
        assert form.call_count == 1
        form.mock(return_value=httpx.Response(200, json=edited))
        mock.get(f"{API}/forms/{FORM_ID}/responses").respond(200, json={"responses": [added]})
        [found] = await run(connector.expand, thin(), Source(options()))
        assert form.call_count == 2  # the cached form lacked the question: fetched again at once
    assert answers_of(found)["Added later"] == "new"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (401, "access_token expires after 1 h"),
        (403, "share the form"),
        (404, "check the form id"),
        (429, "tried again later"),
        (500, "tried again later"),
    ],
)
async def test_api_errors_become_fetch_failed(status: int, expected: str) -> None:
    with respx.mock() as mock:
        mock.get(f"{API}/forms/{FORM_ID}").respond(
            status, json={"error": {"code": status, "message": "nope"}}
        )
        with pytest.raises(FetchFailed, match=expected) as caught:
            await run(GoogleFormsPubSubConnector().expand, thin(), Source(options()))
    assert TOKEN not in str(caught.value)


# --- service account tokens ------------------------------------------------------------------


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    path = tmp_path / "sa.json"
    path.write_text(
        json.dumps(
            {
                "type": "service_account",
                "project_id": "acme-forms-prod",
                "private_key_id": "k3y1d",
                "private_key": pem,
                "client_email": "forms-reader@acme-forms-prod.iam.gserviceaccount.com",
                "client_id": "1234567890",
                "token_uri": TOKEN_URL,
            }
        ),
        encoding="utf-8",
    )
    return path, key


@pytest.mark.anyio
async def test_service_account_token_is_minted_cached_and_renewed(
    key_file: tuple[Path, rsa.RSAPrivateKey],
) -> None:
    path, key = key_file
    connector = GoogleFormsPubSubConnector()
    now = [time.time()]
    connector.api.clock = lambda: now[0]
    opts = options(
        access_token=None, service_account_file=str(path), delegated_user="forms-admin@example.org"
    )
    minted: list[dict[str, Any]] = []

    def token_endpoint(request: httpx.Request) -> httpx.Response:
        form = parse_qs(request.content.decode())
        minted.append(form)
        return httpx.Response(
            200,
            json={"access_token": f"ya29.minted-{len(minted)}", "expires_in": 3599, "token_type": "Bearer"},
        )

    with respx.mock() as mock:
        mock.post(TOKEN_URL).mock(side_effect=token_endpoint)
        form = mock.get(f"{API}/forms/{FORM_ID}").respond(200, json=FORM)
        mock.get(f"{API}/forms/{FORM_ID}/responses").respond(200, json={"responses": [RESPONSE_1]})
        await run(connector.expand, thin(), Source(opts))
        await run(connector.expand, thin(), Source(opts))
        assert len(minted) == 1  # cached
        now[0] += 3599 - 200  # within the renewal margin before expiry
        await run(connector.expand, thin(), Source(opts))
        assert len(minted) == 2
        assert form.calls.last.request.headers["authorization"] == "Bearer ya29.minted-1"  # form still cached
        last_api_call = mock.calls.last.request
    assert last_api_call.headers["authorization"] == "Bearer ya29.minted-2"
    grant = minted[0]
    assert grant["grant_type"] == ["urn:ietf:params:oauth:grant-type:jwt-bearer"]
    assertion = grant["assertion"][0]
    assert jwt.get_unverified_header(assertion)["kid"] == "k3y1d"
    claims = jwt.decode(assertion, key.public_key(), algorithms=["RS256"], audience=TOKEN_URL)
    assert claims["iss"] == "forms-reader@acme-forms-prod.iam.gserviceaccount.com"
    assert claims["sub"] == "forms-admin@example.org"
    assert set(claims["scope"].split()) == set(SCOPES)
    assert claims["exp"] - claims["iat"] == 3600


@pytest.mark.anyio
async def test_refused_key_and_revoked_token(key_file: tuple[Path, rsa.RSAPrivateKey]) -> None:
    path, _ = key_file
    opts = options(access_token=None, service_account_file=str(path))
    with respx.mock() as mock:
        mock.post(TOKEN_URL).respond(
            400, json={"error": "invalid_grant", "error_description": "Invalid JWT Signature."}
        )
        with pytest.raises(FetchFailed, match="Invalid JWT Signature.*service account key"):
            await run(GoogleFormsPubSubConnector().expand, thin(), Source(opts))
    connector = GoogleFormsPubSubConnector()
    with respx.mock() as mock:
        tokens = mock.post(TOKEN_URL).respond(200, json={"access_token": "ya29.x", "expires_in": 3600})
        mock.get(f"{API}/forms/{FORM_ID}").respond(401, json={"error": {"code": 401, "message": "expired"}})
        for _ in range(2):
            with pytest.raises(FetchFailed, match="401"):
                await run(connector.expand, thin(), Source(opts))
    assert tokens.call_count == 2  # a refused token is not reused


def test_options_validation_and_warnings(key_file: tuple[Path, rsa.RSAPrivateKey]) -> None:
    path, _ = key_file
    connector = GoogleFormsPubSubConnector()
    for bad, message in [
        ({"service_account_file": str(path)}, "not both"),
        ({"access_token": None, "service_account_file": "/no/such/key.json"}, "cannot be read"),
        ({"watch_id": WATCH_ID}, "needs form_id"),
        ({"topic_name": "forms-events"}, "projects/<project>/topics/<topic>"),
        ({"api_base_url": "http://forms.example.com"}, "must use https"),
        ({"access_token": ""}, "environment variable unset"),
    ]:
        with pytest.raises(ValidationError, match=message):
            options(**bad)
    assert (
        options(api_base_url="https://forms.googleapis.com/v1/").api_base_url
        == "https://forms.googleapis.com"
    )
    none = " ".join(connector.warnings(options(access_token=None)))
    assert "answers will not be fetched; submissions become dead letters" in none
    assert "not renewed" in none
    assert "valid for 1 hour" in " ".join(connector.warnings(options()))
    clean = options(access_token=None, service_account_file=str(path), form_id=FORM_ID, watch_id=WATCH_ID)
    assert connector.warnings(clean) == []
    assert connector.fetches and connector.maintenance_interval == 24 * 3600


# --- watch upkeep ----------------------------------------------------------------------------

RENEW = f"{API}/forms/{FORM_ID}/watches/{WATCH_ID}:renew"
WATCHES = f"{API}/forms/{FORM_ID}/watches"


def watch(watch_id: str) -> dict[str, Any]:
    return {
        "id": watch_id,
        "eventType": "RESPONSES",
        "target": {"topic": {"topicName": TOPIC}},
        "createTime": "2026-11-20T00:00:00Z",
        "expireTime": "2026-11-27T00:00:00Z",
        "state": "ACTIVE",
    }


async def maintain(opts: GoogleFormsPubSubOptions) -> str:
    connector = GoogleFormsPubSubConnector()
    return await run(connector.maintain, "gforms", Source(opts))


@pytest.mark.anyio
async def test_maintain_renews_the_watch() -> None:
    with respx.mock() as mock:
        renew = mock.post(RENEW).respond(200, json=watch(WATCH_ID))
        done = await maintain(options(form_id=FORM_ID, watch_id=WATCH_ID))
    assert done == f"renewed watch {WATCH_ID} of form {FORM_ID} until 2026-11-27T00:00:00Z"
    assert renew.calls.last.request.headers["authorization"] == f"Bearer {TOKEN}"


@pytest.mark.anyio
async def test_maintain_recreates_a_gone_watch_under_its_id() -> None:
    with respx.mock() as mock:
        mock.post(RENEW).respond(404, json={"error": {"code": 404, "status": "NOT_FOUND"}})
        create = mock.post(WATCHES).respond(200, json=watch(WATCH_ID))
        done = await maintain(options(form_id=FORM_ID, watch_id=WATCH_ID, topic_name=TOPIC))
    assert json.loads(create.calls.last.request.content) == {
        "watch": {"target": {"topic": {"topicName": TOPIC}}, "eventType": "RESPONSES"},
        "watchId": WATCH_ID,
    }
    assert (
        done.startswith(f"watch {WATCH_ID} was gone; created watch {WATCH_ID}") and "set watch_id" not in done
    )


@pytest.mark.anyio
async def test_maintain_reports_a_new_watch_id_when_the_old_one_cannot_be_reused() -> None:
    with respx.mock() as mock:
        mock.post(RENEW).respond(404, json={"error": {"code": 404}})
        create = mock.post(WATCHES).mock(
            side_effect=[
                httpx.Response(400, json={"error": {"code": 400, "message": "watch id in use"}}),
                httpx.Response(200, json=watch("generated-7f3a")),
            ]
        )
        mock.get(WATCHES).respond(200, json={})
        done = await maintain(options(form_id=FORM_ID, watch_id=WATCH_ID, topic_name=TOPIC))
    assert "watchId" not in json.loads(create.calls.last.request.content)
    assert "created watch generated-7f3a" in done
    assert done.endswith("set watch_id: generated-7f3a for source gforms in connectors.yaml")


@pytest.mark.anyio
async def test_maintain_renews_an_existing_watch_it_did_not_know() -> None:
    with respx.mock() as mock:
        mock.post(RENEW).respond(404, json={"error": {"code": 404}})
        mock.post(WATCHES).respond(409, json={"error": {"code": 409, "status": "ALREADY_EXISTS"}})
        mock.get(WATCHES).respond(200, json={"watches": [watch("existing-1")]})
        mock.post(f"{WATCHES}/existing-1:renew").respond(200, json=watch("existing-1"))
        done = await maintain(options(form_id=FORM_ID, watch_id=WATCH_ID, topic_name=TOPIC))
    assert "renewed the existing watch existing-1" in done and "set watch_id: existing-1" in done


@pytest.mark.anyio
async def test_maintain_failures_and_nothing_to_do() -> None:
    with respx.mock() as mock:
        mock.post(RENEW).respond(404, json={"error": {"code": 404}})
        with pytest.raises(FetchFailed, match="gone .* set topic_name"):
            await maintain(options(form_id=FORM_ID, watch_id=WATCH_ID))
        mock.post(RENEW).respond(403, json={"error": {"code": 403, "message": "denied"}})
        with pytest.raises(FetchFailed, match="403"):
            await maintain(options(form_id=FORM_ID, watch_id=WATCH_ID, topic_name=TOPIC))
        assert (await maintain(options())).startswith("nothing to do")
        assert (await maintain(options(access_token=None, form_id=FORM_ID, watch_id=WATCH_ID))).startswith(
            "cannot renew"
        )
        create = mock.post(WATCHES).respond(200, json=watch("fresh-1"))
        assert "set watch_id: fresh-1" in await maintain(options(form_id=FORM_ID, topic_name=TOPIC))
        assert "watchId" not in json.loads(create.calls.last.request.content)


# --- end to end ------------------------------------------------------------------------------


class FakeForms:
    """forms.get and forms.responses.list on loopback, two responses per page."""

    def __init__(self, responses: list[dict[str, Any]]) -> None:
        self.responses = responses
        self.filters: list[str] = []

    def _authorized(self, request: Request) -> bool:
        return request.headers.get("authorization") == f"Bearer {TOKEN}"

    async def _form(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return JSONResponse({"error": {"code": 401}}, status_code=401)
        return JSONResponse(FORM)

    async def _responses(self, request: Request) -> JSONResponse:
        if not self._authorized(request):
            return JSONResponse({"error": {"code": 401}}, status_code=401)
        self.filters.append(request.query_params["filter"])
        start = int(request.query_params.get("pageToken", "0"))
        page: dict[str, Any] = {"responses": self.responses[start : start + 2]}
        if start + 2 < len(self.responses):
            page["nextPageToken"] = str(start + 2)
        return JSONResponse(page)

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route(f"/v1/forms/{FORM_ID}", self._form),
                Route(f"/v1/forms/{FORM_ID}/responses", self._responses),
            ]
        )


def signed_notification(key: rsa.RSAPrivateKey, kid: str, now: float) -> tuple[bytes, dict[str, str]]:
    message_id = "2975812940449999"
    published = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(now - 2))
    body = json.dumps(
        {
            "message": {
                "attributes": {"eventType": "RESPONSES", "formId": FORM_ID, "watchId": WATCH_ID},
                "messageId": message_id,
                "message_id": message_id,
                "publishTime": published,
                "publish_time": published,
            },
            "subscription": "projects/acme-forms-prod/subscriptions/hookhub-forms-push",
        }
    ).encode()
    config = FIXTURE["verify_config"]
    claims = {
        "aud": config["audience"],
        "iss": "https://accounts.google.com",
        "email_verified": True,
        "email": config["service_account_email"],
        "iat": int(now),
        "exp": int(now) + 3600,
        "sub": "7150660363",
    }
    token = jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})
    return body, {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}


def inbox(hub: Any) -> list[dict[str, Any]]:
    conn = sqlite3.connect(hub.spool_path)
    conn.row_factory = sqlite3.Row
    try:
        return [dict(r) for r in conn.execute("SELECT id, event_id, state, note FROM inbox")]
    finally:
        conn.close()


def settled(hub: Any, notification_id: str) -> bool:
    rows = inbox(hub)
    done = any(r["id"] == notification_id and r["state"] == "done" for r in rows)
    return done and not any(r["state"] in ("pending", "claimed", "routed") for r in rows)


def test_notifications_through_the_hub_deliver_each_response_once(tmp_path: Path) -> None:
    first, second, third = (
        RESPONSE_1,
        response(6, "Ada Lovelace", "ada@example.org"),
        response(7, "Grace", "g@x.io"),
    )
    forms = FakeForms([first, second])
    forms_server = serve_app(forms.app())
    fake = FakeDestination().start()
    key, kid = rsa.generate_private_key(public_exponent=65537, key_size=2048), "hookhub-test-2"
    jwks = {
        "keys": [
            *FIXTURE["verify_config"]["jwks"]["keys"],
            {**json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": "RS256"},
        ]
    }
    settings = {
        **FIXTURE["verify_config"],
        "jwks": jwks,
        "access_token": TOKEN,
        "api_base_url": forms_server.url,
    }
    config = tmp_path / "connectors.yaml"
    config.write_text(
        "\n".join(
            [
                "sources:",
                "  google-forms-push:",
                "    provider: google_forms_pubsub",
                f"    public_url: {json.dumps(FIXTURE['url'])}",
                *(f"    {k}: {json.dumps(v)}" for k, v in settings.items()),
                "destinations:",
                f"  out: {{type: webhook, url: {json.dumps(fake.url('/hook'))}, secret: {WHSEC}}}",
                "routes:",
                "  - {name: all, from: ['*'], to: [out]}",
            ]
        )
        + "\n",
        encoding="utf-8",
    )
    clock = FakeClock(epoch(FIXTURE["received_at"]))  # the fixture's JWT is valid at its received_at only
    hub, server = start_hub(config, tmp_path / "data", clock=clock, dispatch=True)
    url = f"{server.url}/hooks/google-forms-push"
    try:
        answer = httpx.post(
            url,
            content=FIXTURE["body"].encode("utf-8"),
            timeout=30,
            headers={k: v for k, v in FIXTURE["headers"].items() if k.lower() != "content-length"},
        )
        assert answer.status_code == 200, answer.text
        wait_for(
            lambda: settled(hub, answer.json()["id"]), timeout=180, what="the first notification expanded"
        )
        delivered = [json_body(r) for r in fake.received("/hook")]
        assert sorted(d["event_id"] for d in delivered) == sorted([first["responseId"], second["responseId"]])
        by_id = {d["event_id"]: d for d in delivered}
        assert answers_of(by_id[first["responseId"]]) == EXPECTED_1
        assert by_id[second["responseId"]]["email"] == "ada@example.org"
        assert forms.filters == ["timestamp > 2026-11-20T13:05:12.733Z"]

        forms.responses.append(third)  # the next notification lists the first two again, and a new one
        clock.now += 120
        body, headers = signed_notification(key, kid, clock.now)
        again = httpx.post(url, content=body, headers=headers, timeout=30)
        assert again.status_code == 200, again.text
        wait_for(
            lambda: settled(hub, again.json()["id"]), timeout=60, what="the second notification expanded"
        )
        delivered = [json_body(r) for r in fake.received("/hook")]
        assert len(delivered) == 3
        assert delivered[-1]["event_id"] == third["responseId"] and delivered[-1]["email"] == "g@x.io"
        notes = {r["id"]: r["note"] for r in inbox(hub)}
        assert notes[again.json()["id"]] == "notification: 1 new of 3 fetched"
        assert len(forms.filters) == 1 + 2  # two pages for three responses
    finally:
        server.stop()
        fake.stop()
        forms_server.stop()
