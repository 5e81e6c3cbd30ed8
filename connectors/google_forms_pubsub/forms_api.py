"""Google Forms API for the fetch step and the watch upkeep: credentials, forms.get, forms.responses.list,
forms.watches renew/create/list (answers.py maps a FormResponse). Used by connectors/google_forms_pubsub/
(`expand`, `maintain`) and, for its credentials, by listing.py (reconciliation).

Followed: developers.google.com/workspace/forms/api/reference/rest/v1 — forms.responses.list (`filter`
"timestamp > N" in RFC3339 Zulu, `pageToken`/`nextPageToken`, up to 5000 per page), FormResponse
(`responseId`, `createTime`, `lastSubmittedTime`, `respondentEmail`, `answers` keyed by questionId with
`textAnswers.answers[].value` or `fileUploadAnswers.answers[].fileId`; TextAnswer value formats: scale "3",
date "YYYY-MM-DD[ HH:MM]" or "MM-DD", time "HH:MM", one Answer per grid row), forms.get (`items[]` with
`title`, `questionItem.question` or `questionGroupItem.questions[].rowQuestion.title`), forms.watches
(renew "returns NOT_FOUND" once expired; create body `{"watch": {"target": {"topic": {"topicName"}},
"eventType"}, "watchId"}`, one watch per event type per form and project; renew, create and list accept
forms.body.readonly or forms.responses.readonly). Service-account tokens: the OAuth 2.0 JWT bearer grant
(RS256 assertion with iss, scope, aud = token URL, iat, exp <= 1 h; optional sub for domain-wide delegation).
Uncertain: whether `timestamp` in the filter is `lastSubmittedTime` (assumed; hence the look-back window);
whether an expired watch's id may be reused on create (tried, then a generated id); scale answers are kept as
the strings the API sends (the Apps Script template turns them into numbers).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pydantic import BaseModel, Field, field_validator, model_validator

from connectors.base import FetchFailed
from connectors.reconciling import api_base_url
from hub.sender import Answer, Request, Sender, TransportFailed, form_content, json_content

FORMS_API_BASE = "https://forms.googleapis.com"
TOKEN_URL = "https://oauth2.googleapis.com/token"
SCOPES = (
    "https://www.googleapis.com/auth/forms.responses.readonly",
    "https://www.googleapis.com/auth/forms.body.readonly",
)
FORM_TTL = 300.0
TOKEN_MARGIN = 300.0
"""A minted token is replaced this many seconds before it expires."""
TIMEOUT = 20.0
MAX_BYTES = 32 * 1024 * 1024
"""A responses page holds up to 5000 responses: megabytes, all needed (a cut page is no JSON)."""
MAX_PAGES = 200
_WATCH_ID = re.compile(r"[a-z0-9-]{4,63}")
_TOPIC = re.compile(r"projects/[^/\s]+/topics/[^/\s]+")


@dataclass(frozen=True)
class ServiceAccount:
    client_email: str
    key_id: str | None
    private_key: rsa.RSAPrivateKey


def load_service_account(path: str) -> ServiceAccount:
    """The key file Google Cloud gives for a service account (JSON); ValueError says what is wrong."""
    try:
        data = json.loads(open(path, encoding="utf-8").read())  # noqa: SIM115 - small file, read once
    except OSError as exc:
        raise ValueError(f"service_account_file {path!r} cannot be read: {exc.strerror or exc}") from None
    except ValueError:
        raise ValueError(f"service_account_file {path!r} is not JSON (download a JSON key)") from None
    if not isinstance(data, dict) or not data.get("client_email") or not data.get("private_key"):
        raise ValueError(
            f"service_account_file {path!r} has no client_email/private_key: not a service account key"
        )
    try:
        key = load_pem_private_key(str(data["private_key"]).encode(), password=None)
    except (ValueError, TypeError):
        raise ValueError(f"service_account_file {path!r}: private_key is not a PEM private key") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError(f"service_account_file {path!r}: private_key is not an RSA key")  # noqa: TRY004
    return ServiceAccount(str(data["client_email"]), data.get("private_key_id") or None, key)


class FetchOptions(BaseModel):
    """What fetching and the watch upkeep need; GoogleFormsPubSubOptions adds these to its own."""

    access_token: str | None = Field(default=None, description="an OAuth access token (expires within 1 h)")
    service_account_file: str | None = Field(default=None, description="path of a service account JSON key")
    delegated_user: str | None = Field(
        default=None, description="user to impersonate (domain-wide delegation)"
    )
    token_url: str = Field(
        default=TOKEN_URL, description="Google's OAuth token endpoint, where a service account gets its token"
    )
    api_base_url: str = Field(
        default=FORMS_API_BASE, description="the Forms API's root (tests point it elsewhere); must be https"
    )
    lookback_seconds: int = Field(
        default=3600,
        ge=0,
        le=7 * 86400,
        description="responses submitted this long before the notification are listed",
    )
    form_id: str | None = Field(default=None, description="the watched form, for renewing its watch")
    watch_id: str | None = Field(default=None, description="the watch to renew daily")
    topic_name: str | None = Field(
        default=None, description="projects/<p>/topics/<t>, to re-create the watch"
    )

    @field_validator(
        "access_token", "service_account_file", "delegated_user", "form_id", "watch_id", "topic_name"
    )
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("must not be empty (is an environment variable unset?)")
        return value.strip() if value else value

    @field_validator("api_base_url", "token_url")
    @classmethod
    def _url(cls, value: str, info: Any) -> str:
        if info.field_name == "token_url":
            return api_base_url(value, TOKEN_URL, "token_url")
        return api_base_url(value, FORMS_API_BASE).removesuffix("/v1")

    @field_validator("topic_name")
    @classmethod
    def _topic(cls, value: str | None) -> str | None:
        if value is not None and not _TOPIC.fullmatch(value):
            raise ValueError("topic_name must be the full name: projects/<project>/topics/<topic>")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> FetchOptions:
        if self.access_token and self.service_account_file:
            raise ValueError("set either access_token or service_account_file, not both")
        if self.service_account_file:
            load_service_account(self.service_account_file)  # fail at config load, with the reason
        if self.delegated_user and not self.service_account_file:
            raise ValueError("delegated_user needs service_account_file")
        if self.watch_id and not self.form_id:
            raise ValueError("watch_id needs form_id (the form the watch is on)")
        return self

    @property
    def has_credentials(self) -> bool:
        return bool(self.access_token or self.service_account_file)


def _error(answer: Answer) -> str:
    try:
        error = answer.json().get("error")
        message = error.get("message") if isinstance(error, dict) else answer.json().get("error_description")
        message = message or (error if isinstance(error, str) else "")
    except Exception:  # noqa: BLE001 - error bodies that are not JSON
        message = ""
    return f" ({str(message)[:200]})" if message else ""


class FormsClient:
    """Tokens and form structures are cached here (one client per connector instance)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._tokens: dict[tuple[Any, ...], tuple[str, float]] = {}
        self._forms: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    # credentials

    def _token_key(self, options: FetchOptions) -> tuple[Any, ...]:
        return (options.service_account_file, options.delegated_user, options.token_url)

    def forget_token(self, options: FetchOptions) -> None:
        """Drop the cached token (refused by the API): the next call mints a new one."""
        self._tokens.pop(self._token_key(options), None)

    async def token(self, http: Sender, options: FetchOptions) -> str:
        if options.access_token:
            return options.access_token
        if not options.service_account_file:
            raise FetchFailed(
                "no access_token or service_account_file is set for this source: the Forms API "
                "cannot be read",
                permanent=True,
            )
        key = self._token_key(options)
        cached = self._tokens.get(key)
        if cached and self.clock() < cached[1] - TOKEN_MARGIN:
            return cached[0]
        try:
            account = load_service_account(options.service_account_file)
        except ValueError as exc:
            raise FetchFailed(str(exc)) from None
        now = int(self.clock())
        claims = {
            "iss": account.client_email,
            "scope": " ".join(SCOPES),
            "aud": options.token_url,
            "iat": now,
            "exp": now + 3600,
        }
        if options.delegated_user:
            claims["sub"] = options.delegated_user
        headers = {"kid": account.key_id} if account.key_id else None
        assertion = jwt.encode(claims, account.private_key, algorithm="RS256", headers=headers)
        data = await self._call(
            http,
            "POST",
            options.token_url,
            None,
            "an access token",
            form={"grant_type": "urn:ietf:params:oauth:grant-type:jwt-bearer", "assertion": assertion},
        )
        token, expires = data.get("access_token"), data.get("expires_in", 3600)
        if not isinstance(token, str) or not token or not isinstance(expires, (int, float)):
            raise FetchFailed("Google's token endpoint answered without access_token/expires_in")
        self._tokens[key] = (token, now + float(expires))
        return token

    # HTTP

    async def _call(
        self,
        http: Sender,
        method: str,
        url: str,
        token: str | None,
        what: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        form: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        headers = {"Accept": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
        content = None
        if json is not None:
            content, headers["Content-Type"] = json_content(json), "application/json"
        elif form is not None:
            content, headers["Content-Type"] = form_content(form), "application/x-www-form-urlencoded"
        try:
            answer = await http.send(Request(method, url, headers, content, params, TIMEOUT, MAX_BYTES))
        except TransportFailed as exc:
            raise FetchFailed(f"could not reach {urlsplit(url).netloc} for {what}: {exc.reason}") from None
        if answer.status == 200:
            try:
                data = answer.json()
            except ValueError:
                data = None
            if isinstance(data, dict):
                return data
            cut = f" (cut at {MAX_BYTES} bytes)" if answer.truncated else ""
            raise FetchFailed(f"Google answered {what} with something that is not a JSON object{cut}")
        raise ApiError(answer.status, _explain(answer.status, what, _error(answer), token is None))

    async def api(
        self, http: Sender, options: FetchOptions, method: str, path: str, what: str, **kwargs: Any
    ) -> dict[str, Any]:
        token = await self.token(http, options)
        try:
            return await self._call(http, method, f"{options.api_base_url}/v1/{path}", token, what, **kwargs)
        except ApiError as exc:
            if exc.status == 401:
                self.forget_token(options)
            raise

    # resources

    async def form(
        self, http: Sender, options: FetchOptions, form_id: str, refresh: bool = False
    ) -> dict[str, Any]:
        key = (options.api_base_url, form_id)
        cached = self._forms.get(key)
        if cached and not refresh and time.monotonic() - cached[0] < FORM_TTL:
            return cached[1]
        form = await self.api(http, options, "GET", f"forms/{form_id}", f"form {form_id}")
        self._forms[key] = (time.monotonic(), form)
        return form

    async def responses(
        self, http: Sender, options: FetchOptions, form_id: str, since: str
    ) -> list[dict[str, Any]]:
        found: list[dict[str, Any]] = []
        params: dict[str, str] = {"filter": f"timestamp > {since}"}
        for _ in range(MAX_PAGES):
            page = await self.api(
                http,
                options,
                "GET",
                f"forms/{form_id}/responses",
                f"the responses of form {form_id}",
                params=params,
            )
            found.extend(
                r for r in page.get("responses") or [] if isinstance(r, dict) and r.get("responseId")
            )
            next_token = page.get("nextPageToken")
            if not next_token or next_token == params.get("pageToken"):
                return found
            params = {**params, "pageToken": str(next_token)}
        raise FetchFailed(f"form {form_id} has more than {MAX_PAGES} pages of responses since {since}")

    async def renew_watch(self, http: Sender, options: FetchOptions, watch_id: str) -> dict[str, Any]:
        return await self.api(
            http,
            options,
            "POST",
            f"forms/{options.form_id}/watches/{watch_id}:renew",
            f"watch {watch_id} of form {options.form_id}",
        )

    async def create_watch(self, http: Sender, options: FetchOptions) -> tuple[dict[str, Any], str]:
        """A new RESPONSES watch on `form_id` to `topic_name`, or the existing one renewed.

        Returns (the watch, what was done).
        """
        form_id, topic = options.form_id, options.topic_name
        assert form_id and topic
        what, path = f"a new RESPONSES watch on form {form_id}", f"forms/{form_id}/watches"
        body = watch_body(topic, options.watch_id)  # keeps the configured id when Google allows it
        try:
            return await self.api(http, options, "POST", path, what, json=body), "created"
        except ApiError as exc:
            if exc.status not in (400, 409):
                raise
        # One RESPONSES watch per form and project: an existing one is renewed instead.
        listed = await self.api(http, options, "GET", path, f"the watches of form {form_id}")
        existing = [
            w
            for w in listed.get("watches") or []
            if isinstance(w, dict) and w.get("eventType") == "RESPONSES"
        ]
        if existing and existing[0].get("id"):
            return await self.renew_watch(http, options, str(existing[0]["id"])), "renewed the existing"
        if "watchId" not in body:
            raise FetchFailed(f"Google refused to create {what} and lists none")
        return await self.api(http, options, "POST", path, what, json=watch_body(topic, None)), "created"


class ApiError(FetchFailed):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _explain(status: int, what: str, detail: str, token_call: bool) -> str:
    if token_call and status in (400, 401, 403):
        return (
            f"Google refused {what} ({status}){detail}: check the service account key (revoked or deleted?), "
            "delegated_user, and the hub's clock"
        )
    if status == 401:
        return (
            f"Google refused the credentials for {what} (401){detail}: an access_token expires after 1 h; "
            "use service_account_file for unattended operation"
        )
    if status == 403:
        return (
            f"Google denied {what} (403){detail}: share the form with the service account's e-mail (or use "
            "an account that can open it) and enable the Google Forms API in the project"
        )
    if status == 404:
        return (
            f"Google has no {what} (404){detail}: "
            "check the form id and that the credentials can open the form"
        )
    if status == 429 or status >= 500:
        return f"Google answered {status} for {what}{detail}; it is tried again later"
    return f"Google answered {status} for {what}{detail}"


def watch_body(topic_name: str, watch_id: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "watch": {"target": {"topic": {"topicName": topic_name}}, "eventType": "RESPONSES"}
    }
    if watch_id and _WATCH_ID.fullmatch(watch_id):
        body["watchId"] = watch_id
    return body
