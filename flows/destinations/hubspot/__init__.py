"""`hubspot`: upsert each submission as a HubSpot contact by email, optionally with a note of its answers.

Sources: HubSpot's CRM documentation, listed per topic in docs/destinations/hubspot.md: batch upsert
by email, rate limits (usage guidelines), errors and retry classes (error handling); notes follow
HubSpot's notes guide (see note.py). Recorded answers: tests/fixtures/destinations/hubspot/.

- Up to 100 contacts per `POST {base_url}/crm/v3/objects/contacts/batch/upsert`, `idProperty: email`.
  HubSpot takes no idempotency key: the upsert on email is what makes a retry harmless, and the
  ledger never re-sends a delivered item. Each input is judged on its own (judge.py).
- One rolling budget per token for the whole process (`Pacer.acquire`, keyed by a hash of the
  token): the documented 100 calls / 10 s until HubSpot's X-HubSpot-RateLimit-* headers say
  otherwise, 429s pause every route using the token, and short waits queue instead of failing.
- The token is the credential: it never reaches a log, a reason or a validation error.
"""

from __future__ import annotations

import json
import logging
import re
from collections import deque
from dataclasses import dataclass
from typing import Any

from pydantic import Field, SecretStr, field_validator, model_validator

from flows.destinations import _http
from flows.destinations._config import ApiRoot
from flows.destinations._item_guard import content_failed, send_crashed
from flows.destinations.base import DeliveryContext, DeliveryItem, Destination, DestinationSettings, Outcome
from flows.destinations.hubspot import api
from flows.destinations.hubspot.api import Input, batches
from flows.destinations.hubspot.judge import Verdict, judge_batch, judge_single, seconds_to_next_hour
from flows.destinations.hubspot.note import note_request, note_text, to_html
from flows.mapping import check_ids, check_template, render_map

log = logging.getLogger("hookhub.destinations.hubspot")

DEFAULT_BASE_URL = "https://api.hubapi.com"
UPSERT_PATH = "/crm/v3/objects/contacts/batch/upsert"
CONTACT_PATH = "/crm/v3/objects/contacts/{id}"
NOTES_PATH = "/crm/v3/objects/notes"
MAX_BATCH = 100
"""100 inputs per batch request (widely used, not found in HubSpot's pages: docs/destinations/hubspot.md)."""
DEFAULT_MAX = 100
DEFAULT_WINDOW = 10.0
"""The smallest documented burst budget (Free/Starter), used until the headers say more."""
MAX_INLINE_WAIT = 30.0
"""A longer wait hands the items back to the ledger instead of holding the task asleep."""
MAX_INLINE_WAITS = 3
USER_AGENT = "hookhub-hubspot/0.1"
DEFAULT_MAP = {
    "email": "{{ email | lower }}",
    "firstname": "{{ name | first_name }}",
    "lastname": "{{ name | last_name }}",
}
_PROPERTY = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
_OWNER_OR_COMPANY = re.compile(r"(?:.*_)?owner_id|associatedcompanyid")
"""Properties that name another HubSpot record: each must render to exactly one numeric id."""
_NUMERIC_ID = re.compile(r"\d{1,20}")
_UPSERT_IS_SAFE = "retrying (an upsert by email cannot duplicate the contact)"


class HubspotConfig(DestinationSettings):
    token: SecretStr = Field(
        description="private app (or OAuth access) token, sent as Authorization: Bearer",
        examples=["${HUBSPOT_TOKEN}"],
    )
    base_url: ApiRoot = Field(
        default=DEFAULT_BASE_URL,
        description="API root: https://api-eu1.hubapi.com for EU accounts, or a proxy",
    )
    map: dict[str, str] | None = Field(
        default=None, description="contact property internal name -> Jinja template; must set email"
    )
    note: bool = Field(default=False, description="also attach a note with every answer to the contact")
    note_template: str | None = Field(default=None, description="Jinja template of the note's text")
    batch_size: int = Field(default=MAX_BATCH, ge=1, le=MAX_BATCH, description="contacts per upsert request")

    @field_validator("token")
    @classmethod
    def _one_word(cls, value: SecretStr) -> SecretStr:
        text = value.get_secret_value().strip()
        if not text or any(char.isspace() or not char.isprintable() for char in text):
            raise ValueError("must be a HubSpot private app or OAuth access token: one word, no spaces")
        return SecretStr(text)

    @field_validator("map")
    @classmethod
    def _properties(cls, value: dict[str, str] | None) -> dict[str, str] | None:
        if value is None:
            return None
        for name in value:
            if not _PROPERTY.match(name):
                raise ValueError(f"{name!r} is not a HubSpot property internal name (letters, digits, _)")
        if "email" not in value:
            raise ValueError("must set email: HubSpot contacts are upserted by their e-mail address")
        return value

    @model_validator(mode="after")
    def _note_template_needs_note(self) -> HubspotConfig:
        if self.note_template is not None and not self.note:
            raise ValueError("note_template is set but note is false: set note: true or remove note_template")
        return self

    def mapping(self) -> dict[str, str]:
        return self.map if self.map is not None else DEFAULT_MAP


@dataclass
class _Run:
    """One deliver call: its settings, and how many rate-limit waits it has spent inline."""

    config: HubspotConfig
    context: DeliveryContext
    pacing_key: str
    waits: int = 0

    def url(self, path: str) -> str:
        return self.config.base_url + path

    def headers(self) -> dict[str, str]:
        return {
            "authorization": f"Bearer {self.config.token.get_secret_value()}",
            "content-type": "application/json",
            "accept": "application/json",
            "user-agent": USER_AGENT,
        }


class HubspotDestination(Destination[HubspotConfig]):
    type = "hubspot"
    Config = HubspotConfig

    def check(self, config: HubspotConfig) -> list[str]:
        found = [(f"map.{name}", check_template(text)) for name, text in config.mapping().items()]
        if config.note_template is not None:
            found.append(("note_template", check_template(config.note_template)))
        return [f"{where}: {problem}" for where, problem in found if problem]

    async def deliver(
        self, items: list[DeliveryItem], config: HubspotConfig, context: DeliveryContext
    ) -> list[Outcome]:
        run = _Run(config, context, _http.account_key("hubspot", config.token.get_secret_value()))
        outcomes: dict[str, Outcome] = {}
        inputs: list[Input] = []
        notes: dict[str, str] = {}
        for item in items:
            prepared = _prepare(item, config, context)
            if isinstance(prepared, Outcome):
                outcomes[item.key] = prepared
                continue
            inputs.append(prepared[0])
            if prepared[1] is not None:
                notes[item.key] = prepared[1]
        outcomes.update(await self._upsert(inputs, run))
        for item in items:
            if item.key in notes and outcomes[item.key].status == "delivered":
                try:
                    outcomes[item.key] = await self._note(item, outcomes[item.key], notes[item.key], run)
                except Exception as exc:  # noqa: BLE001 - the contact is upserted; the others go on
                    crashed = send_crashed(item.key, exc)
                    upserted = outcomes[item.key].remote_id
                    reason = f"contact {upserted} upserted, but the note: {crashed.reason}"
                    outcomes[item.key] = crashed.model_copy(update={"reason": reason, "remote_id": upserted})
        return [outcomes[item.key] for item in items]

    async def _upsert(self, inputs: list[Input], run: _Run) -> dict[str, Outcome]:
        outcomes: dict[str, Outcome] = {}
        queue = deque(batches(inputs, run.config.batch_size))
        while queue:
            group = queue.popleft()
            try:
                verdict = await self._send_batch(group, run)
            except Exception as exc:  # noqa: BLE001 - batches already sent keep their outcomes
                outcomes.update({one.key: send_crashed(one.key, exc) for one in group})
                continue
            outcomes.update(verdict.decided)
            for one, contact_id in verdict.updates:
                try:
                    outcomes[one.key] = await self._update(one, contact_id, run)
                except Exception as exc:  # noqa: BLE001 - one update's crash must not undo the rest
                    outcomes[one.key] = send_crashed(one.key, exc)
            queue.extend([one] for one in verdict.alone)
            if not verdict.resend:
                continue
            if verdict.pause is not None and not self._wait_inline(verdict.pause, run):
                for one in verdict.resend:
                    outcomes[one.key] = Outcome(
                        key=one.key,
                        status="retry",
                        status_code=verdict.status_code,
                        reason=verdict.reason,
                        retry_after=verdict.pause,
                    )
                continue
            queue.appendleft(verdict.resend)
        return outcomes

    def _wait_inline(self, pause: float, run: _Run) -> bool:
        """Pause the token for everyone; True when this call may wait it out and send again."""
        run.context.pacer.pause(run.pacing_key, pause)
        run.waits += 1
        return pause <= MAX_INLINE_WAIT and run.waits <= MAX_INLINE_WAITS

    async def _send_batch(self, group: list[Input], run: _Run) -> Verdict:
        if not await run.context.pacer.acquire(run.pacing_key, DEFAULT_MAX, DEFAULT_WINDOW, MAX_INLINE_WAIT):
            # Nothing of this batch was sent: a deferral. _single's blocks follow a sent upsert.
            return Verdict(None, decided={one.key: _blocked(one.key, run, deferred=True) for one in group})
        body = _encode({"inputs": [one.body() for one in group]})
        try:
            answer = await api.send(
                run.context.http,
                "POST",
                run.url(UPSERT_PATH),
                content=body,
                headers=run.headers(),
                timeout=run.config.timeout,
            )
        except _http.TransportFailed as exc:
            reason = f"HubSpot: {exc.reason}; {_UPSERT_IS_SAFE}"
            return Verdict(
                None, decided={one.key: Outcome(key=one.key, status="retry", reason=reason) for one in group}
            )
        self._learn(answer, run, "upsert", len(group))
        return judge_batch(answer, group, self._wall_clock(), need_ids=run.config.note)

    async def _update(self, one: Input, contact_id: str, run: _Run) -> Outcome:
        """A 409 names the existing contact; update it by id (its primary email stays)."""
        url = run.url(CONTACT_PATH.format(id=contact_id))
        outcome = await self._single("PATCH", url, {"properties": one.properties}, one.key, run, "update")
        if outcome.status == "delivered":
            return outcome.model_copy(update={"remote_id": contact_id})
        reason = f"HubSpot has this contact as {contact_id} (409), but updating it failed: {outcome.reason}"
        return outcome.model_copy(update={"reason": reason})

    async def _note(self, item: DeliveryItem, upserted: Outcome, body_html: str, run: _Run) -> Outcome:
        contact_id = upserted.remote_id
        if contact_id is None:
            reason = (
                "HubSpot upserted the contact without naming its id, so the note cannot be attached; retrying"
            )
            return upserted.model_copy(update={"status": "retry", "reason": reason})
        payload = note_request(contact_id, item.submission, body_html)
        outcome = await self._single("POST", run.url(NOTES_PATH), payload, item.key, run, "note")
        if outcome.status == "delivered":
            return upserted
        reason = f"contact {contact_id} upserted, but the note was not created: {outcome.reason}"
        if outcome.status == "retry" and (outcome.status_code is None or outcome.status_code >= 500):
            reason += "; the retry may add the note twice"
        return outcome.model_copy(update={"reason": reason, "remote_id": contact_id})

    async def _single(
        self, method: str, url: str, payload: dict[str, Any], key: str, run: _Run, operation: str
    ) -> Outcome:
        """One object call (update, note), waiting out short rate-limit pauses inline."""
        while True:
            if not await run.context.pacer.acquire(
                run.pacing_key, DEFAULT_MAX, DEFAULT_WINDOW, MAX_INLINE_WAIT
            ):
                return _blocked(key, run)
            try:
                answer = await api.send(
                    run.context.http,
                    method,
                    url,
                    content=_encode(payload),
                    headers=run.headers(),
                    timeout=run.config.timeout,
                )
            except _http.TransportFailed as exc:
                return Outcome(key=key, status="retry", reason=f"HubSpot: {exc.reason}")
            self._learn(answer, run, operation, 1)
            outcome, pause = judge_single(answer, key, self._wall_clock())
            if pause is None or not self._wait_inline(pause, run):
                return outcome

    def _learn(self, answer: _http.Answer, run: _Run, operation: str, count: int) -> None:
        """Feed the token's budget from X-HubSpot-RateLimit-* (usage guidelines), whatever the answer."""
        limits = api.limits(answer.headers)
        if limits.remaining is not None:
            run.context.pacer.observe(
                run.pacing_key, limits.remaining, limit=limits.max, window=limits.interval
            )
        if limits.daily_remaining == 0 and answer.status != 429:
            # The next call would be refused until the daily reset: do not spend it.
            run.context.pacer.pause(run.pacing_key, seconds_to_next_hour(self._wall_clock()))
        log.debug(
            "hubspot %s answered %s",
            operation,
            answer.status,
            extra={
                "destination": run.context.destination_id,
                "operation": operation,
                "inputs": count,
                "status_code": answer.status,
                "ratelimit_remaining": limits.remaining,
                "ratelimit_max": limits.max,
                "daily_remaining": limits.daily_remaining,
            },
        )


def _prepare(
    item: DeliveryItem, config: HubspotConfig, context: DeliveryContext
) -> tuple[Input, str | None] | Outcome:
    """The upsert input and note body of one item, or its failure (a mapping error fails only it)."""
    mapping = item.mapping if item.mapping is not None else config.mapping()
    try:
        properties = render_map(mapping, item.submission)
        check_ids(properties, _OWNER_OR_COMPANY.fullmatch, _NUMERIC_ID, "HubSpot id (digits)")
        note = None
        if config.note:
            template = item.template if item.template is not None else config.note_template
            note = to_html(note_text(item.submission, template, context.record_link(item.submission.id)))
    except Exception as exc:  # noqa: BLE001 - whatever this submission does to the templates
        return content_failed(item.key, exc, "map")
    email = properties.pop("email", "")
    if "email" not in mapping:
        reason = "the route's map has no email key, and HubSpot upserts contacts by email: add email to it"
        return Outcome(key=item.key, status="failed", reason=reason)
    if not email:
        reason = (
            "no e-mail address: map.email is empty for this submission, and HubSpot upserts contacts by email"
        )
        return Outcome(key=item.key, status="failed", reason=reason)
    return Input(key=item.key, email=email, properties=properties, remote_id=item.remote_id), note


def _blocked(key: str, run: _Run, deferred: bool = False) -> Outcome:
    wait = run.context.pacer.paused_for(run.pacing_key) or DEFAULT_WINDOW
    reason = f"not sent: HubSpot's rate limit for this token holds every route for {wait:.0f} s more"
    return Outcome(key=key, status="retry", reason=reason, retry_after=wait, deferred=deferred)


def _encode(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


destination = HubspotDestination()
