"""What HubSpot's answers mean for each contact (part of the `hubspot` destination).

Sources (listed in docs/destinations/hubspot.md): HubSpot's batch upsert reference (`results[]`,
`errors[]`, `numErrors`), its usage guidelines (429 policies) and error handling (207 Multi-Status,
retry classes: https://developers.hubspot.com/docs/api-reference/error-handling). Every input is
judged on its own: a result names it (objectWriteTraceId, or its email), an error names it
(objectWriteTraceId, its email or index in `context`, or its email in a message); an input the
answer leaves unclear is sent again on its own, which is safe because an upsert by email
cannot create a duplicate.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from flows.destinations import _http
from flows.destinations.base import Outcome, Status
from flows.destinations.hubspot import api
from flows.destinations.hubspot.api import Input

LOCK_WAIT = 2.0
"""423 Locked: locks last 2 s: wait at least that."""
DEFAULT_WINDOW = 10.0
"""The burst budget is per 10 s (X-HubSpot-RateLimit-Interval-Milliseconds: 10000)."""
DAILY_PROBE_MARGIN = 60.0
TRANSIENT_CATEGORIES = frozenset(
    {"LOCKED", "RATE_LIMIT", "RATE_LIMITS", "INTERNAL_ERROR", "SERVICE_UNAVAILABLE", "TIMEOUT"}
)
ADVICE = {
    "PROPERTY_DOESNT_EXIST": "a key of map: is not the internal name of a contact property; "
    "create the property in HubSpot or fix map:",
    "READ_ONLY_VALUE": "a property in map: is read-only in HubSpot; remove it from map:",
    "INVALID_OPTION": "a value is not one of the property's options; map it to the option's internal value",
    "INVALID_EMAIL": "HubSpot does not accept this submission's e-mail address",
}
_UPSERT_IS_SAFE = "retrying (an upsert by email cannot duplicate the contact)"
_TOKENS = re.compile(r"[\s\"'\[\]{}(),;<>\\]+")


@dataclass
class Verdict:
    status_code: int | None
    decided: dict[str, Outcome] = field(default_factory=dict)
    resend: list[Input] = field(default_factory=list)
    """Not settled: send again after `pause` (rate limit, lock) or at once (another input spoiled it)."""
    alone: list[Input] = field(default_factory=list)
    """Not settled by an ambiguous answer: send again, each in a request of its own."""
    updates: list[tuple[Input, str]] = field(default_factory=list)
    """409: the contact exists under this id; update it by id."""
    pause: float | None = None
    reason: str = ""
    """Why `resend` is not settled, for when it ends as a retry."""


@dataclass(frozen=True)
class Judged:
    status: Status
    reason: str
    pause: float | None = None
    """The whole token must wait this long (429, 423, 477); never shortened."""
    retry_after: float | None = None


def seconds_to_next_hour(wall_now: float) -> float:
    """The daily quota resets at midnight in the account's time zone, which hookhub does not know;
    midnight falls on a full UTC hour in most zones, so the next full hour is the first probe."""
    return 3600.0 - wall_now % 3600.0 + DAILY_PROBE_MARGIN


def judge_batch(
    answer: _http.Answer, inputs: list[Input], wall_now: float, need_ids: bool = False
) -> Verdict:
    """`need_ids`: a contact upserted without a known id must be sent again alone (a note needs the id)."""
    data = api.json_body(answer)
    if 200 <= answer.status < 300:
        return _judge_results(answer, data, inputs, need_ids)
    error = api.error_object(data)
    verdict = Verdict(status_code=answer.status)
    if answer.status == 409:
        return _conflict(verdict, error, inputs)
    if answer.status == 400 and len(inputs) > 1:
        named = named_by(error, inputs)
        if named and len(named) < len(inputs):
            # One contact spoiled the request: it fails, the others go again without it.
            for one in named:
                verdict.decided[one.key] = input_outcome(one.key, error, answer.status)
            verdict.resend = [one for one in inputs if one.key not in verdict.decided]
            return verdict
    judged = judge_error(answer, error, wall_now)
    if judged.pause is not None:
        verdict.resend, verdict.pause, verdict.reason = list(inputs), judged.pause, judged.reason
        return verdict
    for one in inputs:
        verdict.decided[one.key] = Outcome(
            key=one.key,
            status=judged.status,
            status_code=answer.status,
            reason=judged.reason,
            retry_after=judged.retry_after,
        )
    return verdict


def judge_error(answer: _http.Answer, error: dict[str, Any], wall_now: float) -> Judged:
    """A non-2xx answer that concerns the whole request (error handling)."""
    status = answer.status
    what = api.describe(error, f"HTTP {status} with {api.body_snippet(answer)}")
    retry_after = _http.parse_retry_after(answer.headers.get("retry-after"), wall_now)
    if status == 429:
        return _rate_limited(answer, error, retry_after, wall_now)
    if status == 423:
        wait = retry_after if retry_after is not None else LOCK_WAIT
        return Judged("retry", f"HubSpot answered 423 Locked ({what}): too many writes at once", pause=wait)
    if status == 477:
        reason = f"HubSpot is migrating this account (477): {what}"
        if retry_after is not None:
            return Judged("retry", reason, pause=retry_after)
        return Judged("retry", reason)
    if status >= 500:
        reason = f"HubSpot server error (HTTP {status}): {what}; {_UPSERT_IS_SAFE}"
        return Judged("retry", reason, retry_after=retry_after)
    if 300 <= status < 400:
        return Judged(
            "failed",
            f"HubSpot answered a redirect (HTTP {status}); redirects are not followed: check base_url",
        )
    return Judged("failed", _refusal(status, error, what))


def _refusal(status: int, error: dict[str, Any], what: str) -> str:
    if status == 401:
        return (
            f"HubSpot refused the token (401, {what}): it is wrong, revoked or expired; "
            "create or rotate the private app's token and update token"
        )
    if status == 403:
        scopes = api.required_scopes(error)
        needed = f"scope {', '.join(scopes)}" if scopes else "the scopes this call needs"
        return (
            f"HubSpot refused the call (403, {what}): give the private app {needed} "
            "(Settings > Integrations > Private apps), then update token if it changed"
        )
    if status == 404:
        return f"HubSpot answered 404 ({what}): check base_url"
    advice = next((ADVICE[code] for code in api.codes(error) if code in ADVICE), None)
    reason = f"HubSpot refused the request (HTTP {status}, {what})"
    return f"{reason}: {advice}" if advice else reason


def _rate_limited(
    answer: _http.Answer, error: dict[str, Any], retry_after: float | None, wall_now: float
) -> Judged:
    policy = error.get("policyName") if isinstance(error.get("policyName"), str) else None
    limits = api.limits(answer.headers)
    if policy == "DAILY" or (policy is None and limits.daily_remaining == 0):
        wait = retry_after if retry_after is not None else seconds_to_next_hour(wall_now)
        per_day = f" of {limits.daily} calls" if limits.daily else ""
        reason = (
            f"HubSpot's daily API limit{per_day} for this account is used up (429 DAILY); it resets at "
            f"midnight in the account's time zone; hookhub tries again in {wait:.0f} s"
        )
        return Judged("retry", reason, pause=wait)
    window = limits.interval or DEFAULT_WINDOW
    wait = retry_after if retry_after is not None else window
    reason = (
        f"HubSpot rate limit (429 {policy or 'without a policy name'}): too many calls with this token "
        f"in {window:g} s; waiting {wait:g} s"
    )
    return Judged("retry", reason, pause=wait)


def _conflict(verdict: Verdict, error: dict[str, Any], inputs: list[Input]) -> Verdict:
    """409 names the existing contact ("Existing ID: …"): update that one instead."""
    named = named_by(error, inputs) or (inputs if len(inputs) == 1 else [])
    if len(named) != 1:
        # The one id in the answer cannot be told apart: each named (or unclear) contact goes alone.
        verdict.alone = named or list(inputs)
        verdict.resend = [one for one in inputs if one not in verdict.alone]
        return verdict
    found = api.existing_id(error)
    if found:
        verdict.updates.append((named[0], found))
    else:
        verdict.decided[named[0].key] = input_outcome(named[0].key, error, 409)
    verdict.resend = [one for one in inputs if one is not named[0]]
    return verdict


def _judge_results(answer: _http.Answer, data: Any, inputs: list[Input], need_ids: bool) -> Verdict:
    verdict = Verdict(status_code=answer.status)
    if not isinstance(data, dict) or not isinstance(data.get("results"), list):
        reason = (
            f"HubSpot answered HTTP {answer.status} without per-contact results "
            f"({api.body_snippet(answer)}): not understood; check base_url"
        )
        for one in inputs:
            verdict.decided[one.key] = Outcome(
                key=one.key, status="failed", status_code=answer.status, reason=reason
            )
        return verdict
    left = {one.key: one for one in inputs}
    spare: list[dict[str, Any]] = []
    for result in (r for r in data["results"] if isinstance(r, dict)):
        owner = _owner(result, left)
        if owner is None:
            if not _names_someone(result):  # a result naming another contact is not ours to pair
                spare.append(result)
            continue
        verdict.decided[owner.key] = _delivered(owner.key, answer.status, result)
        del left[owner.key]
    orphans: list[dict[str, Any]] = []
    errors = raw if isinstance(raw := data.get("errors"), list) else []
    for error in (e for e in errors if isinstance(e, dict)):
        named = [one for one in named_by(error, inputs) if one.key in left]
        if not named:
            orphans.append(error)
        for one in named:
            verdict.decided[one.key] = input_outcome(one.key, error, answer.status)
            del left[one.key]
    _unclear(verdict, list(left.values()), spare, orphans, answer.status, need_ids)
    return verdict


def _unclear(
    verdict: Verdict,
    left: list[Input],
    spare: list[dict[str, Any]],
    orphans: list[dict[str, Any]],
    status: int,
    need_ids: bool,
) -> None:
    """Inputs no result or error named."""
    if not left:
        return
    if not orphans and len(spare) >= len(left) and (len(left) == 1 or not need_ids):
        # Every input has a result we could not pair: all were upserted; ids only when unambiguous.
        for one in left:
            result = spare[0] if len(left) == len(spare) == 1 else {}
            verdict.decided[one.key] = _delivered(one.key, status, result)
    elif len(left) == 1 and not spare and len(orphans) == 1:
        verdict.decided[left[0].key] = input_outcome(left[0].key, orphans[0], status)
    elif len(left) > 1:
        verdict.alone = left
    else:
        reason = (
            f"HubSpot's answer (HTTP {status}) did not say what became of this contact; {_UPSERT_IS_SAFE}"
        )
        verdict.decided[left[0].key] = Outcome(
            key=left[0].key, status="retry", status_code=status, reason=reason
        )


def _owner(result: dict[str, Any], left: dict[str, Input]) -> Input | None:
    trace = result.get("objectWriteTraceId")
    if isinstance(trace, str) and trace in left:
        return left[trace]
    properties = raw if isinstance(raw := result.get("properties"), dict) else {}
    email = properties.get("email")
    rid = _id(result)
    for one in left.values():
        if isinstance(email, str) and email.casefold() == one.email.casefold():
            return one
        if rid is not None and rid == one.remote_id:
            return one
    return None


def _names_someone(result: dict[str, Any]) -> bool:
    properties = raw if isinstance(raw := result.get("properties"), dict) else {}
    return isinstance(result.get("objectWriteTraceId"), str) or isinstance(properties.get("email"), str)


def named_by(error: dict[str, Any], inputs: list[Input]) -> list[Input]:
    """Inputs an error names: objectWriteTraceId, an email or index in its context, an email in a message."""
    by_email = {one.email.casefold(): one for one in inputs}
    by_name = by_email | {one.key.casefold(): one for one in inputs}
    found: dict[str, Input] = {}
    contexts = [error] + api.sub_errors(error)
    for where in contexts:
        trace = where.get("objectWriteTraceId")
        context = raw if isinstance(raw := where.get("context"), dict) else {}
        for name, values in [("objectWriteTraceId", trace), *context.items()]:
            for value in values if isinstance(values, list) else [values]:
                if isinstance(value, bool) or not isinstance(value, (str, int)):
                    continue
                text = str(value).strip()
                if "index" in name.lower() and text.isdigit() and int(text) < len(inputs):
                    found.setdefault(inputs[int(text)].key, inputs[int(text)])
                elif text.casefold() in by_name:
                    one = by_name[text.casefold()]
                    found.setdefault(one.key, one)
    for text in api.texts(error):
        for token in _TOKENS.split(text):
            hit = by_email.get(token.strip(".:").casefold())
            if hit is not None and "@" in hit.email:  # a bare word must not match an odd address
                found.setdefault(hit.key, hit)
    return [one for one in inputs if one.key in found]


def input_outcome(key: str, error: dict[str, Any], status: int) -> Outcome:
    """One input's own error (batch `errors[]`): transient categories retry, the rest fail."""
    what = api.describe(error, "no details given")
    if api.category(error) in TRANSIENT_CATEGORIES:
        return Outcome(
            key=key,
            status="retry",
            status_code=status,
            reason=f"HubSpot could not upsert this contact now ({what}); {_UPSERT_IS_SAFE}",
        )
    advice = next((ADVICE[code] for code in api.codes(error) if code in ADVICE), None)
    reason = f"HubSpot refused this contact ({what})"
    return Outcome(
        key=key, status="failed", status_code=status, reason=f"{reason}: {advice}" if advice else reason
    )


def _delivered(key: str, status: int, result: dict[str, Any]) -> Outcome:
    return Outcome(key=key, status="delivered", status_code=status, remote_id=_id(result))


def _id(result: dict[str, Any]) -> str | None:
    value = result.get("id")
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    text = str(value).strip()
    return text[:100] or None


def judge_single(answer: _http.Answer, key: str, wall_now: float) -> tuple[Outcome, float | None]:
    """An answer to a one-object call (update by id, note create): the Outcome and a pause, if any."""
    data = api.json_body(answer)
    if 200 <= answer.status < 300:
        rid = _id(data) if isinstance(data, dict) else None
        if rid is not None:
            return Outcome(key=key, status="delivered", status_code=answer.status, remote_id=rid), None
        reason = (
            f"HubSpot answered HTTP {answer.status} without an object id "
            f"({api.body_snippet(answer)}): not understood"
        )
        return Outcome(key=key, status="failed", status_code=answer.status, reason=reason), None
    judged = judge_error(answer, api.error_object(data), wall_now)
    retry_after = judged.pause if judged.pause is not None else judged.retry_after
    outcome = Outcome(
        key=key,
        status=judged.status,
        status_code=answer.status,
        reason=judged.reason,
        retry_after=retry_after,
    )
    return outcome, judged.pause
