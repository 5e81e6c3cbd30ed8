"""SurveyMonkey webhooks (API v3 callbacks, `response_completed`) and the fetch of their answers.

Sources: SurveyMonkey's API v3 docs (https://api.surveymonkey.com/v3/docs#webhooks); the vendor's
API docs repository (github.com/SurveyMonkey/public_api_docs, includes/_webhooks.md: callback fields,
`Sm-Apikey`/`Sm-Signature` headers and their Python verification sample, "subscription_url must
accept a HEAD request and return a 200"; includes/_responses.md, _surveys.md, _questions.md for the
fetch, see connectors/surveymonkey/api.py); tests/fixtures/providers/README.md (scheme
`surveymonkey-hmac-sha1`; answers `{}` for the callback itself).

The callback is thin: ids only, no answers. `normalize` yields a Submission without answers and puts
the response and survey ids and the response's API URLs in `metadata`; `expand` (pipeline step, with the
source's `access_token`) then fetches `GET /v3/surveys/{survey_id}/responses/{response_id}/details` and,
for question headings and choice texts, `GET /v3/surveys/{survey_id}/details` (cached per survey for a
few minutes), and returns the same submission with its answers. What is uncertain about the API's
shapes is listed in connectors/surveymonkey/api.py.

Reconciliation (connectors/surveymonkey/listing.py) lists the survey's completed responses with
`/responses/bulk`; a `response_completed` envelope's `response_id` is its `object_id`, the API's response id.

The scheme has no timestamp: `now` and `tolerance` do not apply; replays are caught only by
deduplication on `event_id`.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from connectors import _answers
from connectors._hashing import hmac_digest
from connectors._schemes import b64, matches_any
from connectors.base import (
    Connector,
    Envelope,
    FetchFailed,
    InboundRequest,
    NormalizeContext,
    SourceSettings,
    UnsupportedPayload,
    VerificationFailed,
    require_secrets,
)
from connectors.surveymonkey import api
from connectors.surveymonkey.listing import SurveyMonkeyReconciler
from hub.sender import Sender
from hub.submission import Submission

_SUBMITTED = "response_completed"
_API_KEY = "sm-apikey"
_SIGNATURE = "sm-signature"
# Accounts in SurveyMonkey's EU or Canadian data centre use another API host (option `api_base_url`);
# the thin submission names the default host, the fetch step uses the configured one.
API_BASE = "https://api.surveymonkey.com/v3"


class SurveyMonkeyOptions(api.FetchOptions):
    """`api_key`: the app's Client ID (API key), which SurveyMonkey sends as `Sm-Apikey`;
    `access_token` and `api_base_url`: for fetching the answers (connectors/surveymonkey/api.py)."""

    model_config = ConfigDict(extra="forbid")

    api_key: str | list[str] | None = Field(
        default=None,
        description="the app's Client ID, which Sm-Apikey must equal (recommended; a list rotates);"
        " unset: the header's key is taken as sent",
    )

    @field_validator("api_key")
    @classmethod
    def _non_empty(cls, value: str | list[str] | None) -> str | list[str] | None:
        values = [value] if isinstance(value, str) else (value or [])
        if any(not v.strip() for v in values) or value == []:
            raise ValueError("api_key must not be empty (is an environment variable unset?)")
        return value

    @property
    def api_keys(self) -> list[str]:
        if self.api_key is None:
            return []
        return [self.api_key] if isinstance(self.api_key, str) else list(self.api_key)


def _options(source: SourceSettings) -> SurveyMonkeyOptions:
    options = source.options
    return options if isinstance(options, SurveyMonkeyOptions) else SurveyMonkeyOptions()


def signature(api_key: str, api_secret: str, body: bytes) -> str:
    """base64(HMAC-SHA1(key="<api_key>&<api_secret>", raw body)), as SurveyMonkey's sample computes it."""
    return b64(hmac_digest(f"{api_key}&{api_secret}".encode(), body, "sha1"))


@dataclass(frozen=True)
class _Event:
    event_id: str
    event_type: str
    survey_id: str | None
    body: dict[str, Any]
    resources: dict[str, Any]


_id = api.id_text


def _event(request: InboundRequest) -> _Event:
    body = _answers.parse_json_object(request.body)
    event_type = body.get("event_type")
    if not isinstance(event_type, str) or not event_type:
        raise UnsupportedPayload("body.event_type is missing: not a SurveyMonkey v3 webhook callback")
    event_id = _answers.text(body, "event_id", "body")
    resources = body.get("resources") or {}
    if not isinstance(resources, dict):
        raise UnsupportedPayload("body.resources is not an object")
    survey_id = _id(resources.get("survey_id"))
    if survey_id is None and body.get("filter_type") == "survey":
        survey_id = _id(body.get("filter_id"))
    return _Event(event_id, event_type, survey_id, body, resources)


def _response_ids(event: _Event) -> tuple[str, str]:
    """(survey id, response id) of a response event, or the reason the fetch step could not work."""
    if event.body.get("object_type") not in (None, "response"):
        raise UnsupportedPayload(f"object_type {event.body.get('object_type')!r} is not 'response'")
    response_id = _id(event.body.get("object_id"))
    if response_id is None:
        raise UnsupportedPayload("body.object_id (the response id) is missing")
    if event.survey_id is None:
        raise UnsupportedPayload("body.resources.survey_id is missing: the response cannot be fetched")
    return event.survey_id, response_id


def _submitted_at(value: object, fallback: datetime) -> datetime:
    # `event_datetime` has microseconds; hookhub keeps instants to the millisecond (hub.submission.iso_utc).
    at = _answers.instant(value, "body.event_datetime", fallback)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


class SurveyMonkeyConnector(Connector):
    provider = "surveymonkey"
    title = "SurveyMonkey"
    scheme = "surveymonkey-hmac-sha1"
    stored_headers = frozenset({_SIGNATURE})  # not sm-apikey: an API key, kept out like any credential
    Options = SurveyMonkeyOptions
    fetches = True
    reconciler = SurveyMonkeyReconciler()

    def __init__(self) -> None:
        self.surveys = api.SurveyCache()

    def verify(self, request: InboundRequest, source: SourceSettings, now: float) -> None:
        secrets = require_secrets(source)
        received = (request.header(_SIGNATURE) or "").strip()
        if not received:
            raise VerificationFailed("missing sm-signature header")
        api_key = (request.header(_API_KEY) or "").strip()
        if not api_key:
            raise VerificationFailed("missing sm-apikey header")
        pinned = _options(source).api_keys
        if pinned and not matches_any([api_key], pinned):
            raise VerificationFailed("sm-apikey is not the configured api_key")
        # The HMAC key is "<api_key>&<api_secret>": the secret is what authenticates; the header's
        # api key is only used as sent when none is pinned (see warnings()).
        expected = [signature(api_key, s, request.body) for s in secrets]
        if not matches_any([received], expected):
            raise VerificationFailed("signature mismatch")

    def envelope(self, request: InboundRequest) -> Envelope:
        event = _event(request)
        if event.event_type == _SUBMITTED:
            # object_id is the response's id: the API's `id` of the same response (reconciliation).
            _, response_id = _response_ids(event)
            return Envelope(event_id=event.event_id, form_id=event.survey_id, response_id=response_id)
        # SurveyMonkey has no test/ping callback (it checks the URL with a HEAD request instead);
        # everything but a completed response is authentic and not a submission.
        return Envelope(
            event_id=event.event_id,
            kind="ignored",
            form_id=event.survey_id,
            note=f"event type {event.event_type!r} is not {_SUBMITTED!r}",
        )

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        event = _event(request)
        if event.event_type != _SUBMITTED:
            raise UnsupportedPayload(f"event type {event.event_type!r} is not {_SUBMITTED!r}")
        survey_id, response_id = _response_ids(event)
        response_href = f"{API_BASE}/surveys/{survey_id}/responses/{response_id}"
        metadata: dict[str, Any] = {
            "answers_pending": "fetch the response details from the SurveyMonkey API",
            "response_id": response_id,
            "survey_id": survey_id,
            "response_href": response_href,
            "details_href": f"{response_href}/details",
        }
        for key in ("collector_id", "respondent_id", "recipient_id", "user_id"):
            value = _id(event.resources.get(key))
            if value is not None and value != "0":  # recipient_id "0": not sent to a contact
                metadata[key] = value
        for key in ("name", "filter_type", "filter_id"):
            value = event.body.get(key)
            if isinstance(value, str) and value:
                metadata["webhook_name" if key == "name" else key] = value
        return Submission(
            id=context.submission_id,
            source=context.source,
            provider=self.provider,
            form_id=survey_id,
            event_id=event.event_id,
            submitted_at=_submitted_at(event.body.get("event_datetime"), context.received_at),
            metadata=metadata,
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        secret = require_secrets(source)[0]
        pinned = _options(source).api_keys
        api_key = pinned[0] if pinned else "hookhubTestClientId"
        rng = random.SystemRandom()
        response_id = str(rng.randrange(10**11, 10**12))
        survey_id = "400000001"
        payload = {
            "name": "hookhub send-test",
            "filter_type": "survey",
            "filter_id": survey_id,
            "event_type": _SUBMITTED,
            # SurveyMonkey event ids are decimal strings; a fresh one each time so it is not a duplicate.
            "event_id": str(uuid.uuid4().int % 10**11),
            "object_type": "response",
            "object_id": response_id,
            "event_datetime": datetime.fromtimestamp(now, UTC).isoformat(),
            "resources": {
                "respondent_id": response_id,
                "recipient_id": "0",
                "user_id": "100000001",
                "collector_id": "200000001",
                "survey_id": survey_id,
            },
        }
        body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
        headers = {
            "content-type": "application/json",
            "user-agent": "hookhub-send-test",
            _API_KEY: api_key,
            _SIGNATURE: signature(api_key, secret, body),
        }
        return InboundRequest(method="POST", url=url, headers=headers, body=body)

    def warnings(self, options: BaseModel) -> list[str]:
        if not isinstance(options, SurveyMonkeyOptions):
            return []
        found = []
        if not options.api_keys:
            found.append(
                "api_key is not set: the Sm-Apikey header is taken as sent (the signature still needs "
                "your app's secret); set api_key to the app's Client ID to pin it"
            )
        if not options.access_token:
            found.append(
                "access_token is not set: answers will not be fetched; submissions become dead letters "
                "(set access_token to the app's access token, e.g. ${SURVEYMONKEY_ACCESS_TOKEN})"
            )
        return found

    # --- the fetch step (pipeline) ---------------------------------------------------------------

    async def expand(self, submission: Submission, source: SourceSettings, http: Sender) -> list[Submission]:
        """The thin submission completed with the response's answers, from SurveyMonkey's API."""
        options = _options(source)
        if not options.access_token:
            raise FetchFailed(
                "access_token is not set for this source: add the SurveyMonkey app's access token "
                "(scopes View Responses, View Response Details) to fetch the answers",
                permanent=True,
            )
        survey_id = _id(submission.metadata.get("survey_id")) or submission.form_id
        response_id = _id(submission.metadata.get("response_id"))
        if not survey_id or not response_id:
            raise FetchFailed("the stored callback has no survey_id/response_id in its metadata")
        base, token = options.api_base_url, options.access_token
        response_href = f"{base}/v3/surveys/{survey_id}/responses/{response_id}"
        details = await api.get_json(
            http, f"{response_href}/details", token, f"response {response_id} of survey {survey_id}"
        )
        survey = await self._survey(http, base, token, survey_id, api.answered_ids(details))
        return [api.completed(submission, details, survey, response_href)]

    async def _survey(
        self, http: Sender, base: str, token: str, survey_id: str, needed: list[str]
    ) -> dict[str, Any]:
        """The survey's structure, from the cache unless it lacks a question the response answered."""
        key = (base, survey_id)
        survey = self.surveys.get(key)
        if survey is not None and set(needed) <= set(api.questions_of(survey)):
            return survey
        survey = await api.get_json(
            http, f"{base}/v3/surveys/{survey_id}/details", token, f"survey {survey_id}"
        )
        self.surveys.put(key, survey)
        return survey


connector = SurveyMonkeyConnector()
