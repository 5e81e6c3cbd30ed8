"""Google Forms reconciliation (connectors/google_forms_pubsub/listing.py) against a fake of the Forms API v1
built from the documented facts, answered through respx:

- forms.responses.list: `filter` only `timestamp > N` / `timestamp >= N` in RFC3339 UTC "Zulu" (anything
  else is a 400 here); `pageSize` (the service may return fewer); `pageToken` must come with the same
  filter as the first request (a 400 here otherwise); `nextPageToken` only while more remain; listed
  responses carry no `formId`. Which time the filter compares is not documented: the fake uses
  lastSubmittedTime.
- forms.watches.list: `{"watches": [Watch]}` with `eventType`, `state` ACTIVE/SUSPENDED, `errorType`,
  `target.topic.topicName`, `expireTime`.
- A bad token is a 401 with Google's error body.
"""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
from pydantic import ValidationError

from connectors.base import InboundRequest
from connectors.google_forms_apps_script import connector as apps_script
from connectors.google_forms_pubsub import GoogleFormsPubSubConnector
from connectors.google_forms_pubsub import connector as pubsub
from connectors.google_forms_pubsub.listing import FormsReconciler, GoogleFormsReconcileSettings
from connectors.reconciling import ReconcileFailed, Window
from hub.submission import parse_instant
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
from tests.test_fetch_google_forms import (
    API,
    EXPECTED_1,
    FIXTURE,
    FORM,
    FORM_ID,
    RESPONSE_1,
    TOKEN,
    TOPIC,
    WATCH_ID,
    Source,
    answers_of,
    mock_api,
    options,
    response,
    run,
    thin,
)

SINCE = datetime(2026, 11, 20, tzinfo=UTC)
UNTIL = SINCE + timedelta(days=1)
WINDOW = Window(SINCE, UNTIL)
PAGE_MAX = 4
"""The fake returns at most this many per page ("The service may return fewer than this value")."""


def request_of(fixture: dict[str, Any]) -> InboundRequest:
    return InboundRequest(
        method="POST",
        url=fixture["url"],
        headers={k.lower(): v for k, v in fixture["headers"].items()},
        body=fixture["body"].encode("utf-8"),
    )


def at(n: int) -> dict[str, Any]:
    """Response n, submitted n minutes after SINCE."""
    found = response(1, f"Person {n}", f"p{n}@example.org")
    when = (SINCE + timedelta(minutes=n, microseconds=123457)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return {**found, "responseId": f"ACYDBNj_{n:04d}", "createTime": when, "lastSubmittedTime": when}


class FakeForms:
    def __init__(self, responses: list[dict[str, Any]], watches: list[dict[str, Any]] | None = None) -> None:
        self.responses = responses
        self.watches = watches or []
        self.queries: list[dict[str, str]] = []

    def mount(self, mock: respx.MockRouter) -> None:
        mock.get(f"{API}/forms/{FORM_ID}").mock(
            side_effect=self._authorized(lambda _: httpx.Response(200, json=FORM))
        )
        mock.get(f"{API}/forms/{FORM_ID}/responses").mock(side_effect=self._authorized(self.list))
        mock.get(f"{API}/forms/{FORM_ID}/watches").mock(
            side_effect=self._authorized(lambda _: httpx.Response(200, json={"watches": self.watches}))
        )

    @staticmethod
    def _authorized(handler: Any) -> Any:
        def answer(request: httpx.Request) -> httpx.Response:
            if request.headers.get("authorization") != f"Bearer {TOKEN}":
                error = {
                    "code": 401,
                    "message": "Request had invalid authentication credentials.",
                    "status": "UNAUTHENTICATED",
                }
                return httpx.Response(401, json={"error": error})
            result: httpx.Response = handler(request)
            return result

        return answer

    def list(self, request: httpx.Request) -> httpx.Response:
        query = dict(request.url.params)
        self.queries.append(query)
        found = sorted(self.responses, key=lambda r: r["lastSubmittedTime"])
        text = query.get("filter")
        if text is not None:
            field, op, value = text.split(" ", 2)
            if field != "timestamp" or op not in (">", ">=") or not value.endswith("Z"):
                return httpx.Response(400, json={"error": {"code": 400, "message": "Invalid filter"}})
            bound = parse_instant(value)
            found = [
                r
                for r in found
                if parse_instant(r["lastSubmittedTime"]) > bound
                or (op == ">=" and parse_instant(r["lastSubmittedTime"]) == bound)
            ]
        start = 0
        if "pageToken" in query:
            token_filter, _, offset = query["pageToken"].rpartition("@")
            if token_filter != text:
                return httpx.Response(400, json={"error": {"code": 400, "message": "filter changed"}})
            start = int(offset)
        size = min(int(query.get("pageSize") or 5000) or 5000, 5000, PAGE_MAX)
        chunk = [{k: v for k, v in r.items() if k != "formId"} for r in found[start : start + size]]
        body: dict[str, Any] = {"responses": chunk} if chunk else {}
        if start + size < len(found):
            body["nextPageToken"] = f"{text}@{start + size}"
        return httpx.Response(200, json=body)


async def listed(reconciler: FormsReconciler, src: Source | None = None, **extra: Any) -> list[Any]:
    settings = GoogleFormsReconcileSettings.model_validate(extra)
    src = src or Source(options(form_id=FORM_ID))
    return await pages_of(reconciler, src, settings, WINDOW)


@pytest.mark.anyio
async def test_a_listing_of_three_pages_is_read_to_the_end_with_the_window_as_the_api_expects() -> None:
    inside = [at(n) for n in range(0, 10)]  # 10 at PAGE_MAX 4 a page: 3 pages
    before = at(-1)  # 23:59 the day before
    after = {**at(24 * 60), "createTime": "2026-11-21T00:00:00Z", "lastSubmittedTime": "2026-11-21T00:00:00Z"}
    api = FakeForms([*inside, before, after])
    with respx.mock(assert_all_called=False) as mock:
        api.mount(mock)
        pages = await listed(FormsReconciler())
    assert len(api.queries) == 3
    assert all(
        q["filter"] == "timestamp >= 2026-11-20T00:00:00Z" and q["pageSize"] == "1000" for q in api.queries
    )
    assert [q.get("pageToken") for q in api.queries] == [
        None,
        *[f"timestamp >= 2026-11-20T00:00:00Z@{n}" for n in (4, 8)],
    ]
    ids = ids_of(pages)
    assert ids == [r["responseId"] for r in inside]  # each once; `until` itself is outside
    first = pages[0].responses[0]
    assert first.submitted_at == parse_instant(inside[0]["lastSubmittedTime"])
    assert first.submission.event_id == inside[0]["responseId"] and first.submission.form_id == FORM_ID
    assert answers_of(first.submission) == {"Full name": "Person 0", "Mobile phone": "p0@example.org"}


@pytest.mark.anyio
async def test_the_fetch_step_and_the_listing_give_the_same_identity_and_the_same_answers() -> None:
    # The Pub/Sub push is a notification, not a response: no response_id on its envelope…
    assert pubsub.envelope(request_of(FIXTURE)).response_id is None
    # …its fetched children are stored under event_id = responseId, the listing's identity.
    with respx.mock(assert_all_called=False) as mock:
        mock_api(mock, [RESPONSE_1])
        [fetched] = await run(GoogleFormsPubSubConnector().expand, thin(), Source(options()))
    with respx.mock(assert_all_called=False) as mock:
        FakeForms([copy.deepcopy(RESPONSE_1)]).mount(mock)
        [page] = await listed(FormsReconciler())
    [one] = page.responses
    assert one.response_id == fetched.event_id == RESPONSE_1["responseId"]
    got = one.submission
    assert got.event_id == fetched.event_id
    assert answers_of(got) == answers_of(fetched) == EXPECTED_1
    assert [(a.key, a.label, a.type) for a in got.answers] == [
        (a.key, a.label, a.type) for a in fetched.answers
    ]
    for field in ("email", "name", "form_id", "form_title", "submitted_at", "provider"):
        assert getattr(got, field) == getattr(fetched, field), field
    assert got.metadata["response_id"] == fetched.metadata["response_id"]


def test_apps_script_envelope_carries_the_form_response_id() -> None:
    fixture = load_fixture(PROVIDER_FIXTURES / "google_forms_apps_script" / "full_event_registration.json")
    envelope = apps_script.envelope(request_of(fixture))
    assert envelope.kind == "submission"
    assert (
        envelope.response_id
        == fixture["headers"]["webhook-id"]
        == "2_ABaOnuuD0fu1ByZcp4ArsD7DF7hPjFZj1VYM_3e7Rx-U60"
    )
    assert '"response_id":"2_ABaOnuuD0fu1ByZcp4ArsD7DF7hPjFZj1VYM_3e7Rx-U60"' in fixture["body"]
    assert apps_script.reconciler is None  # the Forms API's responseId is not known to be this id


def test_apps_script_ping_has_no_response_id() -> None:
    source = Source(options=apps_script.Options(), secrets=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"])
    sample = apps_script.sample_request(source, "https://hub.example.org/hooks/g", 1795183409.0)
    ping = InboundRequest(
        sample.method,
        sample.url,
        sample.headers,
        sample.body.replace(b'"form.response.submitted"', b'"hookhub.ping"'),
    )
    assert apps_script.envelope(sample).response_id is not None
    envelope = apps_script.envelope(ping)
    assert envelope.kind == "test" and envelope.response_id is None


@pytest.mark.anyio
async def test_429_waits_the_retry_after_then_succeeds() -> None:
    time = VirtualTime()
    api = FakeForms([at(5)])
    with respx.mock(assert_all_called=False) as mock:
        api.mount(mock)
        limited = rate_limited("3", json={"error": {"code": 429}})
        mock.get(f"{API}/forms/{FORM_ID}/responses").mock(side_effect=first_answer_then(limited, api.list))
        pages = await listed(FormsReconciler(sleep=time.sleep))
    assert time.sleeps == [3.0]
    assert ids_of(pages) == ["ACYDBNj_0005"]


@pytest.mark.anyio
async def test_an_expired_token_fails_permanently_saying_what_to_do_without_the_token() -> None:
    expired = "ya29.expired-access-token"
    with respx.mock(assert_all_called=False) as mock:
        FakeForms([at(5)]).mount(mock)
        with pytest.raises(ReconcileFailed) as caught:
            await listed(FormsReconciler(), Source(options(access_token=expired, form_id=FORM_ID)))
    assert_refused_without([expired], caught, "HTTP 401", "service_account_file", "share the form")


@pytest.mark.anyio
async def test_a_response_deleted_in_google_forms_is_simply_not_listed() -> None:
    api = FakeForms([at(1), at(2), at(3)])
    del api.responses[1]
    with respx.mock(assert_all_called=False) as mock:
        api.mount(mock)
        pages = await listed(FormsReconciler())
    assert ids_of(pages) == ["ACYDBNj_0001", "ACYDBNj_0003"]


@pytest.mark.anyio
async def test_an_unreadable_response_is_set_aside_and_the_others_are_listed() -> None:
    odd = {**at(5), "responseId": "ACYDBNj_odd", "answers": [{"questionId": "q1"}]}  # not by question id
    api = FakeForms([at(1), at(2), odd, at(7), at(8)])
    with respx.mock(assert_all_called=False) as mock:
        api.mount(mock)
        pages = await listed(FormsReconciler())
    assert ids_of(pages) == ["ACYDBNj_0001", "ACYDBNj_0002", "ACYDBNj_0007", "ACYDBNj_0008"]
    problem = "the response's answers are not an object by question id"
    assert_set_aside(pages, "ACYDBNj_odd", parse_instant(odd["lastSubmittedTime"]), problem)


def test_settings_validation_says_what_is_wrong() -> None:
    assert GoogleFormsReconcileSettings.model_validate({}).form_id is None
    assert GoogleFormsReconcileSettings.model_validate({"form_id": f" {FORM_ID} "}).form_id == FORM_ID
    for data, message in [
        ({"form_id": f"https://docs.google.com/forms/d/{FORM_ID}/edit"}, "not a URL"),
        ({"form_id": ""}, "form_id must be"),
        ({"credentials": {"token": "x"}}, "Extra inputs"),
        ({"every": "10s"}, "every"),
    ]:
        with pytest.raises(ValidationError, match=message):
            GoogleFormsReconcileSettings.model_validate(data)


@pytest.mark.anyio
async def test_without_a_form_id_or_credentials_a_run_fails_permanently_before_any_call() -> None:
    with respx.mock(assert_all_called=False) as mock:
        with pytest.raises(ReconcileFailed, match="no form to list") as no_form:
            await listed(FormsReconciler(), Source(options()))
        bare = Source(options(access_token=None, form_id=FORM_ID))
        with pytest.raises(ReconcileFailed, match="service_account_file") as no_credentials:
            await listed(FormsReconciler(), bare)
        assert not mock.calls
    assert no_form.value.permanent and no_credentials.value.permanent
    with respx.mock(assert_all_called=False) as mock:
        FakeForms([at(2)]).mount(mock)
        [page] = await listed(FormsReconciler(), Source(options()), form_id=FORM_ID)  # the reconcile block's
    assert [r.response_id for r in page.responses] == ["ACYDBNj_0002"]


def watch(**extra: Any) -> dict[str, Any]:
    return {
        "id": WATCH_ID,
        "target": {"topic": {"topicName": TOPIC}},
        "eventType": "RESPONSES",
        "createTime": "2026-11-18T10:00:00.000Z",
        "expireTime": "2026-11-25T10:00:00.000Z",
        "state": "ACTIVE",
        **extra,
    }


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("watches", "state", "words"),
    [
        ([watch(), watch(id="schema-watch", eventType="SCHEMA")], "ok", "ACTIVE"),
        (
            [watch(state="SUSPENDED", errorType="PROJECT_NOT_AUTHORIZED")],
            "disabled",
            "PROJECT_NOT_AUTHORIZED",
        ),
        ([], "missing", "no RESPONSES watch"),
        ([watch(id="schema-watch", eventType="SCHEMA")], "missing", "no RESPONSES watch"),
        (
            [watch(target={"topic": {"topicName": "projects/other/topics/forms"}})],
            "elsewhere",
            "projects/other/topics/forms",
        ),
    ],
    ids=["ok", "suspended", "none", "schema-only", "other-topic"],
)
async def test_webhook_health_from_the_forms_watch(
    watches: list[dict[str, Any]], state: str, words: str
) -> None:
    src = Source(options(form_id=FORM_ID, watch_id=WATCH_ID, topic_name=TOPIC))
    with respx.mock(assert_all_called=False) as mock:
        FakeForms([], watches).mount(mock)
        health = await FormsReconciler().webhook_health(
            src,
            GoogleFormsReconcileSettings(),
            "https://hub.example.org/hooks/gforms?token=s3cr3t",
            respx_sender(),
        )
    assert health is not None and health.state == state and words in health.detail
    assert "s3cr3t" not in health.detail and TOKEN not in health.detail
