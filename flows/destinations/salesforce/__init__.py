"""`salesforce`: upsert each submission as a Lead (or any sObject) by an external id field.

Sources: Salesforce's REST API documentation, listed per topic in docs/destinations/salesforce.md
(upsert by external ID, https://developer.salesforce.com/docs/platform/api-rest/guide/dome-upsert.html;
sObject Collections, error body, duplicates, limits, retry classes); recorded answers in
tests/fixtures/destinations/salesforce/.

Idempotency comes from the upsert: the external id value defaults to the submission id, so a
retry or a replay updates the record it created instead of adding one (Salesforce's upsert by
external ID; Salesforce takes no idempotency key). One record goes to
`PATCH …/sobjects/{sobject}/{field}/{value}`
(201 created, 200 or 204 updated, 300 several matches); several go, ≤200 at a time, to the
collection upsert `PATCH …/composite/sobjects/{sobject}/{field}` with `allOrNone: false`,
whose 200 answer holds one result per record, in request order, each judged on its own
(sObject Collections; the collection upsert is unconfirmed in Salesforce's docs, its answer is the
collection create's).

The org's API allocation is one budget for every token and route: `REQUEST_LIMIT_EXCEEDED`
(or `Sforce-Limit-Info` at its limit) pauses the org in the shared pacer; a deliverable that
comes up while the pause lasts goes back to the ledger unsent (quota exhaustion is not a
retry: park, do not spin).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import quote

from pydantic import Field, field_validator, model_validator

from flows.destinations import _crm_http, _http
from flows.destinations._config import ApiRoot, PlainToken
from flows.destinations._item_guard import content_failed, send_crashed
from flows.destinations._pause import held_for
from flows.destinations.base import DeliveryContext, DeliveryItem, Destination, DestinationSettings, Outcome
from flows.destinations.salesforce import results
from flows.mapping import MappingError, check_ids, check_template, render, render_map

DEFAULT_API_VERSION = "62.0"
"""The version the recorded answers come from (pin an API version: Salesforce's URLs carry it)."""
MIN_API_VERSION = 46.0
"""Collection upsert by external id needs API v46.0 or later."""
MAX_ANSWER_BYTES = 2 * 1024 * 1024
"""200 results with duplicate-rule details run to hundreds of KB; a cut answer is unreadable."""
USER_AGENT = "hookhub-salesforce/0.1"
_API_NAME = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,79}")
_SET_BY_HOOKHUB = frozenset({"id", "attributes"})
_LOOKUP = re.compile(r"[A-Za-z0-9]*Id")
"""Standard lookups (OwnerId, RecordTypeId, AccountId, …): each must render to exactly one record id."""
_RECORD_ID = re.compile(r"[A-Za-z0-9]{15}(?:[A-Za-z0-9]{3})?")
DEFAULT_MAPS: dict[str, dict[str, str]] = {
    # "[not provided]" is what Salesforce's own Web-to-Lead puts in required fields left empty.
    "Lead": {
        "FirstName": "{{ name | first_name }}",
        "LastName": "{{ name | last_name | default(name) | default(email) | default('[not provided]') }}",
        "Email": "{{ email | lower }}",
        "Company": "{{ answers['Company'] | default(answers['company']) | default('[not provided]') }}",
        "LeadSource": "Web",
    },
    "Contact": {
        "FirstName": "{{ name | first_name }}",
        "LastName": "{{ name | last_name | default(name) | default(email) | default('[not provided]') }}",
        "Email": "{{ email | lower }}",
    },
}


class SalesforceConfig(DestinationSettings):
    instance_url: ApiRoot | None = Field(
        default=None, description="the org's URL, https://<MyDomain>.my.salesforce.com"
    )
    base_url: ApiRoot | None = Field(
        default=None, description="same as instance_url (a proxy or sandbox URL also works)"
    )
    access_token: PlainToken = Field(description="OAuth access token", examples=["${SF_ACCESS_TOKEN}"])
    api_version: str = Field(default=DEFAULT_API_VERSION, description="REST API version such as 62.0")
    sobject: str = Field(default="Lead", description="object to upsert, e.g. Lead, Contact, Web_Form__c")
    external_id_field: str = Field(
        description="API name of the External ID + Unique field to upsert on", examples=["Hookhub_Id__c"]
    )
    external_id: str = Field(default="{{ id }}", description="template of the external id value")
    map: dict[str, str] | None = Field(default=None, description="{Salesforce field: Jinja template}")
    batch_size: int = Field(default=200, ge=1, le=200, description="records per collection request")
    allow_duplicates: bool = Field(default=False, description="save despite alert-only duplicate rules")

    @field_validator("api_version")
    @classmethod
    def _version(cls, value: str) -> str:
        match = re.fullmatch(r"v?(\d{2,3}\.\d)", value.strip())
        if not match:
            raise ValueError("must look like 62.0")
        if float(match.group(1)) < MIN_API_VERSION:
            raise ValueError(f"must be {MIN_API_VERSION} or later (collection upsert)")
        return match.group(1)

    @field_validator("sobject", "external_id_field")
    @classmethod
    def _api_name(cls, value: str) -> str:
        if not _API_NAME.fullmatch(value):
            raise ValueError("must be a Salesforce API name such as Lead or Hookhub_Id__c")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SalesforceConfig:
        if self.instance_url is None and self.base_url is None:
            raise ValueError(
                "missing required key 'instance_url' (the org's URL, https://<MyDomain>.my.salesforce.com)"
            )
        if self.instance_url and self.base_url and self.instance_url != self.base_url:
            raise ValueError("instance_url and base_url name the same thing; give one of them")
        for key in self.map or {}:
            if not _API_NAME.fullmatch(key):
                raise ValueError(f"map: {key!r} is not a Salesforce field API name")
            if key.lower() in _SET_BY_HOOKHUB or key == self.external_id_field:
                raise ValueError(
                    f"map: {key!r} is set by hookhub (external_id sets {self.external_id_field})"
                )
        if self.map is None and self.sobject not in DEFAULT_MAPS:
            raise ValueError(
                f"map is required for sobject {self.sobject} (defaults exist for Lead and Contact)"
            )
        return self

    @property
    def root(self) -> str:
        return f"{self.instance_url or self.base_url}/services/data/v{self.api_version}"


@dataclass(frozen=True)
class Prepared:
    item: DeliveryItem
    external_id: str
    fields: dict[str, str]


class SalesforceDestination(Destination[SalesforceConfig]):
    type = "salesforce"
    Config = SalesforceConfig

    def check(self, config: SalesforceConfig) -> list[str]:
        templates = {
            "external_id": config.external_id,
            **{f"map.{k}": v for k, v in (config.map or {}).items()},
        }
        return [
            f"{name}: template error: {problem}"
            for name, text in templates.items()
            if (problem := check_template(text))
        ]

    async def deliver(
        self, items: list[DeliveryItem], config: SalesforceConfig, context: DeliveryContext
    ) -> list[Outcome]:
        org = _http.account_key("salesforce", config.instance_url or config.base_url or "")
        outcomes: dict[str, Outcome] = {}
        ready: list[Prepared] = []
        for item in items:
            try:
                ready.append(prepare(item, config))
            except Exception as exc:  # noqa: BLE001 - this submission's problem, not the batch's
                outcomes[item.key] = content_failed(item.key, exc, "map")
                context.note(item.key, salesforce_errors=[])
        for chunk in chunks(ready, config.batch_size):
            try:
                outcomes.update(await self._send(chunk, config, org, context))
            except Exception as exc:  # noqa: BLE001 - chunks already sent keep their outcomes
                for prepared in chunk:
                    outcomes[prepared.item.key] = send_crashed(prepared.item.key, exc)
                    context.note(prepared.item.key, salesforce_errors=[])
        return [outcomes[item.key] for item in items]

    async def _send(
        self, chunk: list[Prepared], config: SalesforceConfig, org: str, context: DeliveryContext
    ) -> dict[str, Outcome]:
        paused = await held_for(context, org)
        if paused is not None:
            reason = f"not sent: Salesforce asked hookhub to hold off this org ({paused:.0f} s left)"
            return self._all(chunk, context, results.Verdict("retry", reason), None, paused, deferred=True)
        method_url, body = _request(chunk, config)
        try:
            answer = await _crm_http.send(
                context.http,
                "PATCH",
                method_url,
                body=body,
                headers=_headers(config),
                timeout=config.timeout,
                max_bytes=MAX_ANSWER_BYTES,
            )
        except _http.TransportFailed as exc:
            verdict = results.Verdict("retry", f"Salesforce: {exc.reason}; the retry is safe (upsert)")
            return self._all(chunk, context, verdict, None, None)
        pause = self._pace(answer, org, context)
        data = _crm_http.json_of(answer)
        if not 200 <= answer.status < 300:
            verdict = results.judge_refusal(
                answer.status, data, answer.text, config.sobject, config.external_id_field
            )
            return self._all(
                chunk, context, verdict, answer.status, pause if verdict.status == "retry" else None
            )
        if len(chunk) == 1:
            verdict = results.judge_single(data, answer.status, chunk[0].item.remote_id)
            return self._all(
                chunk, context, verdict, answer.status, pause if verdict.status == "retry" else None
            )
        if not isinstance(data, list) or len(data) != len(chunk):
            count = f"{len(data)} results" if isinstance(data, list) else "no list of results"
            verdict = results.Verdict(
                "failed",
                f"Salesforce answered HTTP {answer.status} with {count} for "
                f"{len(chunk)} records; replaying is safe (upsert)",
            )
            return self._all(chunk, context, verdict, answer.status, None)
        out: dict[str, Outcome] = {}
        for prepared, result in zip(chunk, data, strict=True):  # results come in request order
            verdict = results.judge_record(result, answer.status)
            out.update(
                self._all(
                    [prepared], context, verdict, answer.status, pause if verdict.status == "retry" else None
                )
            )
        return out

    def _pace(self, answer: _http.Answer, org: str, context: DeliveryContext) -> float | None:
        """Pause the org per the answer's signals; the pause in seconds, if any."""
        pause = _http.parse_retry_after(answer.headers.get("retry-after"), self._wall_clock())
        if pause is None:
            pause = results.limit_pause(_crm_http.json_of(answer), answer.headers.get("sforce-limit-info"))
        if pause:
            context.pacer.pause(org, pause)  # exactly as asked: never clamped
        return pause

    @staticmethod
    def _all(
        chunk: list[Prepared],
        context: DeliveryContext,
        verdict: results.Verdict,
        status_code: int | None,
        retry_after: float | None,
        deferred: bool = False,
    ) -> dict[str, Outcome]:
        out: dict[str, Outcome] = {}
        for prepared in chunk:
            outcome = Outcome(
                key=prepared.item.key,
                status=verdict.status,
                status_code=status_code,
                reason=verdict.reason,
                remote_id=verdict.remote_id,
                retry_after=retry_after if verdict.status == "retry" else None,
                deferred=deferred,
            )
            context.note(prepared.item.key, salesforce_errors=list(verdict.codes))
            out[prepared.item.key] = outcome
        return out


def prepare(item: DeliveryItem, config: SalesforceConfig) -> Prepared:
    """The record for one submission; MappingError names the field that cannot be rendered."""
    external_id = render(config.external_id, item.submission, field="external_id").strip()
    if not external_id:
        raise MappingError("external_id: rendered empty; the upsert needs a value")
    if external_id in (".", ".."):
        # In the single-record URL `..` would climb out of the field: PATCH …/sobjects/Lead itself.
        raise MappingError(f"external_id: rendered {external_id!r}, which cannot name a record in a URL")
    # A route's own map replaces the destination's (it is the more specific of the two).
    mapping = item.mapping if item.mapping is not None else config.map or DEFAULT_MAPS[config.sobject]
    fields = render_map(mapping, item.submission)
    check_ids(fields, _LOOKUP.fullmatch, _RECORD_ID, "Salesforce record id (15 or 18 letters and digits)")
    for key in fields:
        if key.lower() in _SET_BY_HOOKHUB or key == config.external_id_field:
            raise MappingError(f"map.{key}: is set by hookhub and cannot be mapped")
    return Prepared(item=item, external_id=external_id, fields=fields)


def chunks(ready: list[Prepared], size: int) -> Iterator[list[Prepared]]:
    """Requests of ≤`size` records, no external id twice in one (Salesforce refuses that);
    a repeat goes in a later request, so it updates the record the first one wrote."""
    remaining = ready
    while remaining:
        chunk: list[Prepared] = []
        later: list[Prepared] = []
        seen: set[str] = set()
        for prepared in remaining:
            if len(chunk) < size and prepared.external_id not in seen:
                chunk.append(prepared)
                seen.add(prepared.external_id)
            else:
                later.append(prepared)
        yield chunk
        remaining = later


def _request(chunk: list[Prepared], config: SalesforceConfig) -> tuple[str, object]:
    if len(chunk) == 1:
        # The single-record upsert names the value in the path and forbids it in the body (upsert docs).
        value = quote(chunk[0].external_id, safe="")
        return f"{config.root}/sobjects/{config.sobject}/{config.external_id_field}/{value}", chunk[0].fields
    records = [
        {"attributes": {"type": config.sobject}, **p.fields, config.external_id_field: p.external_id}
        for p in chunk
    ]
    url = f"{config.root}/composite/sobjects/{config.sobject}/{config.external_id_field}"
    return url, {"allOrNone": False, "records": records}


def _headers(config: SalesforceConfig) -> dict[str, str]:
    headers = {
        "authorization": f"Bearer {config.access_token.get_secret_value()}",
        "content-type": "application/json; charset=UTF-8",
        "accept": "application/json",
        "user-agent": USER_AGENT,
    }
    if config.allow_duplicates:
        headers["sforce-duplicate-rule-header"] = "allowSave=true"
    return headers


destination = SalesforceDestination()
