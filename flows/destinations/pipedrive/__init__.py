"""`pipedrive`: find or create the person by e-mail, then create a lead (or a deal) for them.

Sources: Pipedrive's API documentation, listed per topic in docs/destinations/pipedrive.md (auth,
create a person, create a lead, find a person by email, response envelope, rate limits
https://pipedrive.readme.io/docs/core-api-concepts-rate-limiting, retry classes); recorded answers in
tests/fixtures/destinations/pipedrive/.

Pipedrive takes no idempotency key and creates are append-only, so duplicates are avoided by
(a) searching the person by e-mail before creating one (`GET /api/v2/persons/search`, exact
match), and (b) keeping what each attempt created in the ledger's `remote_id`
(`person:1042`, then `person:1042/lead:<uuid>`): a retry after the person step skips it, and a
delivery whose lead exists is never sent again. A timeout or 5xx *during* a create may still
leave a duplicate (Pipedrive takes no idempotency key).

Rate limits: a burst budget per token per rolling 2 s window (search has a stricter one)
and a daily token budget per company. Every call takes a slot of the token's rolling budget in
the shared pacer (keyed by a hash of the token): 20 per 2 s until the answers'
`x-ratelimit-limit`/`-remaining` give the real numbers, searches also 10 per 2 s.
`x-ratelimit-remaining: 0` pauses the token until `x-ratelimit-reset`, and a 429 pauses it for
Retry-After exactly (or `x-ratelimit-reset`). A pause longer than a few seconds hands the rest
of the batch back to the ledger unsent.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Any, Literal

from pydantic import Field, field_validator

from flows.destinations import _crm_http, _http
from flows.destinations._config import ApiRoot, PlainToken
from flows.destinations._item_guard import content_failed, send_crashed
from flows.destinations._pause import MAX_INLINE_PAUSE, held_for
from flows.destinations.base import DeliveryContext, DeliveryItem, Destination, DestinationSettings, Outcome
from flows.destinations.pipedrive.api import (
    WINDOW,
    Progress,
    Stopped,
    created_id,
    judge,
    limit_wait,
    person_in_search,
)
from flows.mapping import MappingError, check_ids, check_template, render, render_map

DEFAULT_BASE_URL = "https://api.pipedrive.com"
BURST_LIMIT = 20
"""Requests per rolling WINDOW before the token's own numbers are known: the smallest api_token
burst budget (Essential plan); `x-ratelimit-limit`/`-remaining` then replace it."""
SEARCH_LIMIT = 10
"""The Search API allows 10 requests per 2 s on every plan (Pipedrive's rate-limiting docs)."""
USER_AGENT = "hookhub-pipedrive/0.1"
DEFAULT_TITLE = "{{ form_title | default(source) }}: {{ name | default(email) | default('anonymous') }}"
DEFAULT_MAP = {"name": "{{ name | default(email) | default('') }}", "email": "{{ email | lower }}"}
_LIST_FIELDS = frozenset({"email", "phone"})
"""Sent as `[{value, primary, label}]`, the documented shape (Pipedrive's PersonItem)."""
_KEY = re.compile(r"[A-Za-z0-9_]{1,64}")
_LINKS = frozenset({"owner_id", "org_id"})
"""Person fields that name another Pipedrive record: each must render to exactly one numeric id."""
_NUMERIC_ID = re.compile(r"\d{1,20}")


class PipedriveConfig(DestinationSettings):
    api_token: PlainToken = Field(
        description="API token (Personal preferences > API)", examples=["${PIPEDRIVE_TOKEN}"]
    )
    base_url: ApiRoot = Field(
        default=DEFAULT_BASE_URL, description="API host, or https://<company>.pipedrive.com"
    )
    create: Literal["lead", "deal"] = Field(default="lead", description="what to create for the person")
    title: str = Field(default=DEFAULT_TITLE, min_length=1, description="template of the lead/deal title")
    map: dict[str, str] | None = Field(default=None, description="{person field: Jinja template}")

    @field_validator("map")
    @classmethod
    def _keys(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        for key in value or {}:
            if not _KEY.fullmatch(key):
                raise ValueError(
                    f"{key!r} is not a Pipedrive person field key (name, email, phone, or a custom key)"
                )
        return value


@dataclass(frozen=True)
class Keys:
    """Pacing keys: the token's budget and its search budget, hashed (never the token)."""

    main: str
    search: str


class PipedriveDestination(Destination[PipedriveConfig]):
    type = "pipedrive"
    Config = PipedriveConfig

    def check(self, config: PipedriveConfig) -> list[str]:
        templates = {"title": config.title, **{f"map.{k}": v for k, v in (config.map or {}).items()}}
        problems = [
            f"{name}: template error: {problem}"
            for name, text in templates.items()
            if (problem := check_template(text))
        ]
        if config.map is not None and "name" not in config.map:
            problems.append("map: needs a 'name' entry (Pipedrive requires a person name)")
        return problems

    async def deliver(
        self, items: list[DeliveryItem], config: PipedriveConfig, context: DeliveryContext
    ) -> list[Outcome]:
        token = config.api_token.get_secret_value()
        keys = Keys(_http.account_key("pipedrive", token), _http.account_key("pipedrive-search", token))
        # One after the other: the token's burst budget is small and shared with every other use.
        outcomes: list[Outcome] = []
        for item in items:
            try:
                outcomes.append(await self._deliver_one(item, config, keys, context))
            except Exception as exc:  # noqa: BLE001 - one item's crash must not re-send the others
                outcomes.append(_noted(context, item, send_crashed(item.key, exc), "unknown", None))
        return outcomes

    async def _deliver_one(
        self, item: DeliveryItem, config: PipedriveConfig, keys: Keys, context: DeliveryContext
    ) -> Outcome:
        progress = Progress.parse(item.remote_id)
        if progress.record:
            reason = "already created by an earlier attempt; not sent again"
            return _noted(
                context,
                item,
                Outcome(key=item.key, status="delivered", reason=reason, remote_id=progress.remote_id),
                "none",
                None,
            )
        try:
            person, title = render_item(item, config)
        except Exception as exc:  # noqa: BLE001 - this submission's problem, not the batch's
            return _noted(context, item, content_failed(item.key, exc, "map"), "map", None)
        step = "person"
        try:
            if progress.person is None:
                progress = replace(progress, person=await self._person(person, config, keys, context))
            step = config.create
            record, status = await self._record(progress.person or 0, title, config, keys, context)
        except Stopped as stop:
            # A deferral only if this attempt wrote nothing yet (a person created now makes it one).
            deferred = stop.deferred and progress == Progress.parse(item.remote_id)
            outcome = Outcome(
                key=item.key,
                status=stop.status,
                status_code=stop.status_code,
                reason=stop.reason,
                retry_after=stop.retry_after,
                remote_id=progress.remote_id,
                deferred=deferred,
            )
            return _noted(context, item, outcome, step, stop.code)
        progress = replace(progress, record=record)
        outcome = Outcome(key=item.key, status="delivered", status_code=status, remote_id=progress.remote_id)
        return _noted(context, item, outcome, step, None)

    async def _person(
        self, person: dict[str, str], config: PipedriveConfig, keys: Keys, context: DeliveryContext
    ) -> int:
        """The id of the person with this e-mail, created when none exists (or there is no e-mail)."""
        email = person.get("email")
        if email:
            params = {"term": email, "fields": "email", "exact_match": "true"}
            data, _ = await self._call(
                context,
                config,
                keys,
                "GET",
                "/api/v2/persons/search",
                params=params,
                action="search persons by email",
                search=True,
            )
            found = person_in_search(data)
            if found is not None:
                return found
        data, status = await self._call(
            context,
            config,
            keys,
            "POST",
            "/api/v1/persons",
            body=person_body(person),
            action="create the person",
        )
        created = created_id(data, "person", status)
        if not created.isdigit():  # a person id is a number; anything else cannot be linked to
            raise Stopped(
                "failed",
                f"Pipedrive answered HTTP {status} to create the person with a non-numeric "
                "id; the person may have been created",
                status,
            )
        return int(created)

    async def _record(
        self, person_id: int, title: str, config: PipedriveConfig, keys: Keys, context: DeliveryContext
    ) -> tuple[str, int]:
        body = {"title": title, "person_id": person_id}
        path = "/api/v1/leads" if config.create == "lead" else "/api/v1/deals"
        data, status = await self._call(
            context, config, keys, "POST", path, body=body, action=f"create the {config.create}"
        )
        return f"{config.create}:{created_id(data, config.create, status)}", status

    async def _call(
        self,
        context: DeliveryContext,
        config: PipedriveConfig,
        keys: Keys,
        method: str,
        path: str,
        *,
        action: str,
        body: Any = None,
        params: dict[str, str] | None = None,
        search: bool = False,
    ) -> tuple[Any, int]:
        """One paced API call: its `data` and status, or Stopped."""
        await self._wait_for_budget(context, keys, search)
        headers = {
            "x-api-token": config.api_token.get_secret_value(),
            "accept": "application/json",
            "user-agent": USER_AGENT,
        }
        if body is not None:
            headers["content-type"] = "application/json"
        creates = method == "POST"
        try:
            answer = await _crm_http.send(
                context.http,
                method,
                config.base_url + path,
                headers=headers,
                timeout=config.timeout,
                body=body,
                params=params,
            )
        except _http.TransportFailed as exc:
            again = "; retrying may create it twice" if creates and exc.sent else ""
            raise Stopped("retry", f"Pipedrive ({action}): {exc.reason}{again}") from None
        wait = limit_wait(answer, self._wall_clock())
        if wait:
            context.pacer.pause(keys.main, wait)  # every call with this token holds off, exactly as asked
        remaining = _crm_http.header_number(answer, "x-ratelimit-remaining")
        if remaining is not None:  # other apps on this token spend the same budget
            limit = _crm_http.header_number(answer, "x-ratelimit-limit")
            context.pacer.observe(
                keys.main, int(remaining), limit=int(limit) if limit else None, window=WINDOW
            )
        return judge(answer, action, creates, wait), answer.status

    @staticmethod
    async def _wait_for_budget(context: DeliveryContext, keys: Keys, search: bool) -> None:
        """Return when one more call fits the token's budgets; Stopped when that is more than
        MAX_INLINE_PAUSE away (the item goes back to the ledger instead of holding the task)."""
        paused = await held_for(context, keys.main)
        if paused is not None:
            raise Stopped(
                "retry",
                f"not sent: Pipedrive's rate limit holds this api_token ({paused:.0f} s left)",
                retry_after=paused,
                deferred=True,
            )
        fits = await context.pacer.acquire(keys.main, BURST_LIMIT, WINDOW, MAX_INLINE_PAUSE)
        if fits and search:
            fits = await context.pacer.acquire(keys.search, SEARCH_LIMIT, WINDOW, MAX_INLINE_PAUSE)
        if not fits:
            wait = context.pacer.paused_for(keys.main) or WINDOW
            raise Stopped(
                "retry",
                f"not sent: this api_token's request budget is spent ({wait:.0f} s)",
                retry_after=wait,
                deferred=True,
            )


def render_item(item: DeliveryItem, config: PipedriveConfig) -> tuple[dict[str, str], str]:
    """Person fields and the lead/deal title; MappingError names what cannot be rendered."""
    # A route's own map and template replace the destination's (they are the more specific).
    mapping = item.mapping if item.mapping is not None else config.map or DEFAULT_MAP
    person = render_map(mapping, item.submission)
    check_ids(person, _LINKS.__contains__, _NUMERIC_ID, "Pipedrive id (digits)")
    if not person.get("name"):
        raise MappingError("map.name: rendered empty; Pipedrive needs a person name")
    title = render(
        item.template if item.template is not None else config.title, item.submission, field="title"
    )
    if not title.strip():
        raise MappingError("title: rendered empty; a Pipedrive lead or deal needs a title")
    return person, title.strip()


def person_body(person: dict[str, str]) -> dict[str, Any]:
    return {
        key: [{"value": value, "primary": True, "label": "work"}] if key in _LIST_FIELDS else value
        for key, value in person.items()
    }


def _noted(
    context: DeliveryContext, item: DeliveryItem, outcome: Outcome, step: str, code: str | None
) -> Outcome:
    """`outcome`, with Pipedrive's facts noted for its log line (flows/delivery.py)."""
    context.note(item.key, step=step, pipedrive_code=code, has_remote_id=outcome.remote_id is not None)
    return outcome


destination = PipedriveDestination()
