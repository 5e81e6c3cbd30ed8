"""What Salesforce's answers mean, record by record (helper of `salesforce`, not a destination type).

Sources: Salesforce's error codes
(https://developer.salesforce.com/docs/atlas.en-us.api_rest.meta/api_rest/errorcodes.htm), duplicates,
limits, retry classes and sObject Collections as docs/destinations/salesforce.md states and cites
them. Errors are arrays of `{message, errorCode, fields}`; items of a
collection answer spell the code `statusCode` [obs], so both are read. A duplicate-rule error
carries `duplicateResult`, spelled `duplicateResut` in live answers [obs]: both are read too.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from flows.destinations import _http
from flows.destinations.base import Status

QUOTA_PAUSE = 3600.0
"""The allocation is a rolling 24 h window with no reset time; an hour frees about 1/24 of it."""
CONCURRENCY_PAUSE = 20.0
"""`ConcurrentRequests … Limit exceeded` concerns requests lasting ≥20 s (Salesforce's limits)."""
RETRY_CODES = frozenset(
    {
        "UNABLE_TO_LOCK_ROW",  # another transaction holds the record: gone in a moment [obs]
        "SERVER_UNAVAILABLE",
        "PROCESSING_HALTED",  # rolled back because another record failed: this one was fine
        "REQUEST_LIMIT_EXCEEDED",  # the org's API allocation; the caller pauses the org
        "INVALID_SESSION_ID",  # expired token: retried so a fresh token set on reload catches up
    }
)
ADVICE: dict[str, str] = {
    "REQUIRED_FIELD_MISSING": "fill it through map: (a Lead needs LastName and Company)",
    "INVALID_FIELD": "the field does not exist on the object or the token's user cannot see it; fix map:",
    "INVALID_FIELD_FOR_INSERT_UPDATE": "the field is read-only for the token's user; remove it from map:",
    "STRING_TOO_LONG": "the value is longer than the field allows; shorten it in map: (e.g. {{ x[:255] }})",
    "INVALID_EMAIL_ADDRESS": "Salesforce does not accept the e-mail address",
    "FIELD_CUSTOM_VALIDATION_EXCEPTION": "a validation rule in Salesforce refused the record",
    "DUPLICATE_VALUE": "a unique field already holds this value on another record",
    "NOT_FOUND": "check sobject, external_id_field, api_version and base_url",
    "INVALID_TYPE": "the sObject does not exist or the token's user cannot see it; check sobject",
}


@dataclass(frozen=True)
class Verdict:
    status: Status
    reason: str | None = None
    remote_id: str | None = None
    codes: tuple[str, ...] = ()
    """Salesforce error codes (safe to log: they never carry record data)."""


@dataclass(frozen=True)
class SfError:
    code: str
    message: str
    fields: tuple[str, ...]
    duplicates: dict[str, Any] | None


def errors_of(value: Any) -> list[SfError]:
    """The errors in an error array (top-level answer or a record's `errors`); [] for anything else."""
    if not isinstance(value, list):
        return []
    found: list[SfError] = []
    for entry in value:
        if not isinstance(entry, dict):
            continue
        code = entry.get("errorCode") or entry.get("statusCode")
        fields = entry.get("fields")
        duplicates = entry.get("duplicateResult") or entry.get("duplicateResut")
        found.append(
            SfError(
                code=code if isinstance(code, str) and code else "UNKNOWN",
                message=str(entry.get("message") or ""),
                fields=tuple(str(f) for f in fields) if isinstance(fields, list) else (),
                duplicates=duplicates if isinstance(duplicates, dict) else None,
            )
        )
    return found


def judge_errors(errors: list[SfError], http_status: int) -> Verdict:
    """A record (or a whole request) refused: retry only when every error says "later"."""
    codes = tuple(e.code for e in errors)
    reason = "; ".join(describe(e) for e in errors) or f"Salesforce answered HTTP {http_status}"
    transient = http_status >= 500 or http_status == 401 or (errors and set(codes) <= RETRY_CODES)
    return Verdict("retry" if transient else "failed", reason, codes=codes)


def describe(error: SfError) -> str:
    """One error as an admin can act on it: code, field, Salesforce's message, what to do."""
    fields = error.fields or _fields_in_message(error.message)
    where = f" on {', '.join(fields)}" if fields else ""
    text = f"Salesforce says {error.code}{where}: {_http.snippet(error.message) or '(no message)'}"
    if error.duplicates is not None:
        return f"{text}; {_duplicate_advice(error.duplicates)}"
    if error.code == "INVALID_SESSION_ID":
        return (
            f"{text}; set a fresh access_token (e.g. SF_ACCESS_TOKEN) and reload, deliveries retry until then"
        )
    advice = ADVICE.get(error.code)
    return f"{text}; {advice}" if advice else text


def _fields_in_message(message: str) -> tuple[str, ...]:
    # REQUIRED_FIELD_MISSING sometimes comes with empty `fields`, the names only in "[A, B]".
    match = re.search(r"\[([A-Za-z0-9_, ]+)\]", message)
    return tuple(f.strip() for f in match.group(1).split(",") if f.strip()) if match else ()


def _duplicate_advice(result: dict[str, Any]) -> str:
    ids: list[str] = []
    for match in result.get("matchResults") or []:
        for record in (match.get("matchRecords") or []) if isinstance(match, dict) else []:
            found = (record.get("record") or {}).get("Id") if isinstance(record, dict) else None
            if isinstance(found, str):
                ids.append(found)
    rule = result.get("duplicateRule") or "a duplicate rule"
    matches = f"matching records: {', '.join(ids[:5])}" if ids else "no matching record listed"
    if result.get("allowSave") is True:
        return f"{rule} only alerts ({matches}); set allow_duplicates: true to save anyway"
    return f"{rule} blocks the save ({matches}); merge or relax the rule in Salesforce"


def judge_record(result: Any, http_status: int) -> Verdict:
    """One entry of a collection answer: `{id, success, errors, created}`."""
    if not isinstance(result, dict) or not isinstance(result.get("success"), bool):
        seen = _http.snippet(repr(result), 120)
        return Verdict(
            "failed",
            f"Salesforce's answer for this record is not an upsert result: {seen}; "
            "replaying is safe (upsert)",
        )
    if result["success"]:
        return Verdict("delivered", remote_id=record_id(result))
    return judge_errors(errors_of(result.get("errors")) or [SfError("UNKNOWN", "", (), None)], http_status)


def judge_single(data: Any, http_status: int, earlier_id: str | None) -> Verdict:
    """A 2xx answer to a one-record upsert: 201 created, 200 updated, 204 updated (old versions)."""
    if http_status == 204:
        return Verdict("delivered", remote_id=earlier_id)
    if isinstance(data, dict) and isinstance(data.get("success"), bool):
        return judge_record(data, http_status)
    return Verdict(
        "failed",
        f"Salesforce answered HTTP {http_status} without an upsert result; "
        "whether the record was written is unknown; replaying is safe (upsert)",
    )


def judge_refusal(http_status: int, data: Any, body: str, sobject: str, field: str) -> Verdict:
    """A non-2xx answer: it concerns every record of the request."""
    if http_status == 300:
        ids = [str(url).rsplit("/", 1)[-1] for url in data] if isinstance(data, list) else []
        return Verdict(
            "failed",
            f"the external id matches {len(ids) or 'several'} {sobject} records "
            f"({', '.join(ids[:5])}); nothing was written: mark {field} as External ID "
            "and Unique in Salesforce",
            codes=("MULTIPLE_CHOICES",),
        )
    if 300 < http_status < 400:
        return Verdict(
            "failed",
            f"Salesforce redirects (HTTP {http_status}); redirects are not followed: "
            "set base_url to the org's My Domain URL",
        )
    errors = errors_of(data)
    if errors:
        return judge_errors(errors, http_status)
    seen = repr(_http.snippet(body)) if body.strip() else "an empty body"
    status: Status = "retry" if http_status >= 500 or http_status == 401 else "failed"
    return Verdict(status, f"unexpected answer from Salesforce (HTTP {http_status}): {seen}")


def record_id(result: dict[str, Any]) -> str | None:
    value = result.get("id")
    return value[:64] if isinstance(value, str) and value else None


def limit_pause(data: Any, limit_info: str | None) -> float | None:
    """How long the org must rest when an answer says its API allocation is spent (Salesforce's limits)."""
    for error in errors_of(data):
        if error.code == "REQUEST_LIMIT_EXCEEDED":
            return CONCURRENCY_PAUSE if "concurrent" in error.message.lower() else QUOTA_PAUSE
    # `Sforce-Limit-Info: api-usage=18412/100000`: at the limit the next request would be refused.
    match = re.search(r"api-usage=(\d+)/(\d+)", limit_info or "")
    if match and int(match.group(1)) >= int(match.group(2)) > 0:
        return QUOTA_PAUSE
    return None
