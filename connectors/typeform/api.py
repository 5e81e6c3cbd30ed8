"""Typeform's Responses, Create (form definition) and Webhooks APIs, for reconciliation.

Sources (docs/providers/typeform.md, "Reconciliation", lists each fact with its address):
retrieve responses (https://www.typeform.com/developers/responses/reference/retrieve-responses/),
the JSON response explanation (https://typeform.com/developers/responses/JSON-response-explanation),
retrieve webhooks (https://developers.typeform.com/webhooks/reference/retrieve-webhooks),
personal access tokens (https://typeform.com/developers/get-started/personal-access-token) and
scopes (https://typeform.com/developers/get-started/scopes).

A listed item is the webhook's `form_response` without `form_id` and `definition`: the run reads the
form definition once (GET /forms/{form_id}), wraps each item as a `form_response` webhook body and
lets the connector's own `normalize` build the Submission, so both paths label and type answers alike.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

from pydantic import Field, SecretStr

from connectors import typeform
from connectors.base import InboundRequest, NormalizeContext, SourceSettings
from connectors.reconciling import (
    Credentials,
    Read,
    ReconcileFailed,
    Reconciler,
    ReconcileSettings,
    ResponsePage,
    WebhookHealth,
    Window,
    bare_url,
    checked_base_url,
    checked_id,
    get_json,
    hosts,
    page_of,
    read_response,
    same_endpoint,
    url_host,
)
from hub.alerts.durations import Duration
from hub.submission import Submission, parse_instant

if TYPE_CHECKING:
    from hub.sender import Sender

API_BASE = "https://api.typeform.com"
PAGE_SIZE = 1000
"""Typeform's largest `page_size`."""
MAX_PAGES = 1000
"""A million responses in one window; past that the listing is not trusted to end."""
_LEGACY_TOKEN = re.compile(r"[0-9a-f]{40}")
_FORM_ID = re.compile(r"[A-Za-z0-9_-]{1,64}")
_DENIED = (
    "Typeform refused the personal access token (expired, revoked, or without the {scope} scope): "
    "generate a new one under Account → Personal tokens with forms:read, responses:read and "
    "webhooks:read, and update reconcile.credentials.token"
)


class TypeformCredentials(Credentials):
    token: SecretStr = Field(
        description="a personal access token (tfp_…) with forms:read, responses:read, webhooks:read"
    )
    env_hint: ClassVar[str] = "TYPEFORM_TOKEN"

    @classmethod
    def problem(cls, token: str) -> str | None:
        if token.startswith("tfp_") or _LEGACY_TOKEN.fullmatch(token):
            return None
        return (
            "is not a Typeform personal access token: those start with tfp_ "
            "(Typeform: Account → Personal tokens → Generate a new token)"
        )


class TypeformReconcileSettings(ReconcileSettings):
    """`reconcile:` on a typeform source."""

    form_id: Annotated[
        str, checked_id(_FORM_ID, "the id at the end of the form's URL, e.g. u6nXL7 in .../to/u6nXL7")
    ] = Field(
        description="the form's id: the end of its URL, https://<account>.typeform.com/to/<form_id>",
        examples=["Hq7Zr2Lm"],
    )
    credentials: TypeformCredentials
    api_base_url: Annotated[str, checked_base_url(API_BASE)] = Field(
        default=API_BASE, description="https://api.eu.typeform.com for EU data-centre accounts"
    )
    webhook_tag: str | None = Field(
        default=None,
        description="the tag of the webhook that sends to this source (else it is found by its URL)",
    )
    settle: Duration = Field(
        default=1800.0,
        ge=0,
        description="Typeform may leave the last ~30 minutes out of its listing: younger responses wait",
    )


def _settings(settings: Any) -> TypeformReconcileSettings:
    if isinstance(settings, TypeformReconcileSettings):
        return settings
    return TypeformReconcileSettings.model_validate(settings)


def _utc(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _param_time(value: datetime) -> str:
    """`since`/`until` as Typeform takes them: UTC, to the second (the fraction dropped), both ends
    inclusive; the listing then keeps [since, until) itself."""
    return value.strftime("%Y-%m-%dT%H:%M:%S")


def _fields(fields: Any) -> list[dict[str, Any]]:
    """The form's fields with those inside groups, flat, as a webhook's `definition.fields` has them."""
    flat: list[dict[str, Any]] = []
    for field in fields if isinstance(fields, list) else []:
        if not isinstance(field, dict):
            continue
        flat.append({k: field[k] for k in ("id", "title", "type", "ref") if k in field})
        inner = field.get("properties")
        if isinstance(inner, dict):
            flat.extend(_fields(inner.get("fields")))
    return flat


def definition(form: Any, form_id: str) -> dict[str, Any]:
    """A webhook-shaped `definition` from GET /forms/{form_id}."""
    form = form if isinstance(form, dict) else {}
    return {
        "id": form.get("id") or form_id,
        "title": form.get("title"),
        "fields": _fields(form.get("fields")),
    }


def response_token(item: dict[str, Any]) -> str | None:
    """A listed response's identity: `token` (the webhook's `form_response.token`), or `response_id`."""
    for key in ("token", "response_id"):
        value = item.get(key)
        if isinstance(value, str) and value:
            return value
    return None


def webhook_body(item: dict[str, Any], form_id: str, form_definition: dict[str, Any]) -> dict[str, Any]:
    """The `form_response` webhook Typeform would have sent for a listed item (its event id: the token)."""
    token = response_token(item)
    response = {k: v for k, v in item.items() if k not in ("landing_id", "response_id", "metadata")}
    response.update(
        form_id=form_id,
        token=token,
        definition=form_definition,
        answers=item.get("answers") or [],
        hidden=item.get("hidden") or {},
        variables=item.get("variables") or [],
    )
    return {"event_id": token, "event_type": "form_response", "form_response": response}


def _submitted_at(item: dict[str, Any]) -> datetime | None:
    raw = item.get("submitted_at")
    if not isinstance(raw, str) or not raw:
        return None
    try:
        return parse_instant(raw)
    except ValueError:
        return None


def judge_webhooks(
    hooks: list[dict[str, Any]], form_id: str, expected_url: str | None, tag: str | None
) -> WebhookHealth:
    """Whether the form's webhooks (GET /forms/{form_id}/webhooks `items`) send to `expected_url`."""
    where = f"form {form_id}"
    if tag is not None:
        mine = [h for h in hooks if h.get("tag") == tag]
        if not mine:
            return WebhookHealth("missing", f"{where} has no webhook tagged {tag!r}")
        hook = mine[0]
        if hook.get("enabled") is not True:
            return WebhookHealth("disabled", f"the webhook tagged {tag!r} on {where} is disabled")
        url = hook.get("url")
        if expected_url is not None and (not isinstance(url, str) or not same_endpoint(url, expected_url)):
            return WebhookHealth(
                "elsewhere",
                f"the webhook tagged {tag!r} on {where} sends to {url_host(url)}, "
                f"not to {bare_url(expected_url)}",
            )
        return WebhookHealth("ok", f"the webhook tagged {tag!r} on {where} is enabled")
    if expected_url is None:
        mine = hooks
    else:
        mine = [h for h in hooks if isinstance(h.get("url"), str) and same_endpoint(h["url"], expected_url)]
    if not mine:
        if hooks and expected_url is not None:
            return WebhookHealth(
                "elsewhere",
                f"{where} has {len(hooks)} webhook(s), none to {bare_url(expected_url)} "
                f"(they send to {hosts(h.get('url') for h in hooks)})",
            )
        return WebhookHealth("missing", f"{where} has no webhook")
    tags = ", ".join(repr(h.get("tag")) for h in mine)
    if any(h.get("enabled") is True for h in mine):
        return WebhookHealth("ok", f"webhook {tags} on {where} is enabled")
    return WebhookHealth(
        "disabled", f"webhook {tags} on {where} is disabled (switch it on in Connect → Webhooks)"
    )


class TypeformReconciler(Reconciler):
    """Lists a form's completed responses (1 call per 1000) after one call for its definition."""

    Settings = TypeformReconcileSettings
    page_size = PAGE_SIZE
    api = "Typeform Responses API"

    async def _get(
        self,
        http: Sender,
        settings: TypeformReconcileSettings,
        path: str,
        what: str,
        scope: str,
        **params: str,
    ) -> Any:
        return await get_json(
            http,
            f"{settings.api_base_url}/forms/{settings.form_id}{path}",
            what=what,
            headers=settings.credentials.bearer(),
            params=params or None,
            sleep=self.sleep,
            denied=_DENIED.format(scope=scope),
            not_found=f"Typeform has no form {settings.form_id} for this token (check reconcile.form_id, "
            "and api_base_url for EU accounts)",
        )

    async def responses(
        self, source: SourceSettings, settings: Any, window: Window, http: Sender
    ) -> AsyncIterator[ResponsePage]:
        s = _settings(settings)
        since, until = _utc(window.since), _utc(window.until)
        form = await self._get(http, s, "", f"read form {s.form_id}", "forms:read")
        form_definition = definition(form, s.form_id)
        params = {
            "page_size": str(self.page_size),
            "since": _param_time(since),
            "until": _param_time(until),
            "response_type": "completed",
        }
        what = f"list responses of form {s.form_id}"
        seen: set[str] = set()
        total: int | None = None
        for _ in range(MAX_PAGES):
            page = await self._get(http, s, "/responses", what, "responses:read", **params)
            items = page.get("items") if isinstance(page, dict) else None
            if not isinstance(items, list):
                raise ReconcileFailed(f"{what}: the answer has no items list")
            items = [i for i in items if isinstance(i, dict)]
            if total is None and isinstance(page.get("total_items"), int):
                total = page["total_items"]
            read: list[Read] = []
            for item in items:
                token, submitted_at = response_token(item), _submitted_at(item)
                if token is None or token in seen or submitted_at is None:
                    continue  # no identity, listed twice, or not submitted (a partial response)
                seen.add(token)
                if since <= submitted_at < until:
                    normalize = partial(self._submission, item, s, form_definition)
                    read.append(read_response(token, submitted_at, normalize))
            yield page_of(read, total)
            page_count = page.get("page_count")
            more = page_count > 1 if isinstance(page_count, int) else len(items) >= self.page_size
            last = response_token(items[-1]) if items else None
            if not more or last is None:
                return
            params["before"] = last  # the next page: responses Typeform processed before the last one
        raise ReconcileFailed(f"{what}: more than {MAX_PAGES} pages; shorten the lookback")

    def _submission(
        self, item: dict[str, Any], settings: TypeformReconcileSettings, form_definition: dict[str, Any]
    ) -> Submission:
        body = json.dumps(webhook_body(item, settings.form_id, form_definition), ensure_ascii=False)
        request = InboundRequest(
            method="POST",
            url=f"{settings.api_base_url}/forms/{settings.form_id}/responses",
            headers={"content-type": "application/json"},
            body=body.encode("utf-8"),
        )
        context = NormalizeContext(
            submission_id="pending", source="typeform", received_at=_submitted_at(item) or datetime.now(UTC)
        )
        return typeform.connector.normalize(request, context)

    async def webhook_health(
        self, source: SourceSettings, settings: Any, expected_url: str | None, http: Sender
    ) -> WebhookHealth | None:
        s = _settings(settings)
        answer = await self._get(http, s, "/webhooks", f"list webhooks of form {s.form_id}", "webhooks:read")
        items = answer.get("items") if isinstance(answer, dict) else None
        hooks = [h for h in items if isinstance(h, dict)] if isinstance(items, list) else []
        return judge_webhooks(hooks, s.form_id, expected_url, s.webhook_tag)
