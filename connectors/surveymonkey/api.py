"""SurveyMonkey API v3 for the fetch step: one response's details, its survey's structure, and how
the answers become hookhub answers. Used by connectors/surveymonkey/ (`expand`).

Followed: SurveyMonkey's API docs repository (github.com/SurveyMonkey/public_api_docs):
includes/_responses.md (`GET /v3/surveys/{id}/responses/{id}/details`: `pages[].questions[].answers[]`
with `choice_id`, `row_id`, `col_id`, `other_id`, `text`, and `download_url` for file uploads;
`date_created`, `date_modified`, `custom_variables`, `metadata`), includes/_surveys.md
(`GET /v3/surveys/{id}/details`: the survey with `pages[].questions[]`), includes/_questions.md
("Formatting Question Types": `family`/`subtype`, `headings[].heading`, `answers.choices|rows|cols|other`,
`display_options.display_type` file_upload/slider/emoji), includes/_overview.md (`Authorization: bearer`,
scopes View Responses / View Response Details, 120 requests/min and 500/day for private apps). Regional
hosts `api.eu.surveymonkey.com` and `api.surveymonkey.ca` ("Access URL", returned as `access_url` by the
OAuth token exchange) are from a translation of the same docs.
Uncertain (observed in public code, not in the docs): `answers.other` in survey details is one object
(`{id, text, is_answer_choice}`), the docs show a list for POST, both are read; the respondent's e-mail in
`metadata.contact.email.value` (older docs: top-level `email_address`); error bodies
`{"error": {"message": ...}}`. Datetime answers are kept as sent ("12/31/2015 11:59 PM"): their
month/day order depends on the question and is not converted to YYYY-MM-DD.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator

from connectors import _answers
from connectors.base import FetchFailed, UnsupportedPayload
from connectors.reconciling import api_base_url
from hub.sender import Answer as HttpAnswer
from hub.sender import Request, Sender, TransportFailed
from hub.submission import Answer, Submission

DEFAULT_API_BASE = "https://api.surveymonkey.com"
SURVEY_TTL = 300.0
"""Seconds a survey's structure is reused before it is fetched again (edits show up after this)."""
TIMEOUT = 20.0
MAX_BYTES = 16 * 1024 * 1024
"""A survey's details with hundreds of questions and their choices run to megabytes; a cut one is no JSON."""


def api_base(value: str, name: str = "api_base_url") -> str:
    """An https base URL (http only on loopback, for tests), without trailing `/` or API version."""
    return api_base_url(value, "https://api.eu.surveymonkey.com", name).removesuffix("/v3")


def id_text(value: object) -> str | None:
    # SurveyMonkey sends ids as strings; a number is accepted as the same id.
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, str)) and str(value).strip():
        return str(value).strip()
    return None


class FetchOptions(BaseModel):
    """What the fetch step needs; SurveyMonkeyOptions adds these to the webhook's own options."""

    access_token: str | None = Field(
        default=None, description="the app's access token (View Response Details)"
    )
    api_base_url: str = Field(
        default=DEFAULT_API_BASE, description="https://api.eu.surveymonkey.com for EU accounts"
    )

    @field_validator("access_token")
    @classmethod
    def _token(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            raise ValueError("access_token must not be empty (is an environment variable unset?)")
        return value.strip() if value else value

    @field_validator("api_base_url")
    @classmethod
    def _base(cls, value: str) -> str:
        return api_base(value)


class SurveyCache:
    """Survey structures by (API base, survey id), each kept `ttl` seconds."""

    def __init__(self, ttl: float = SURVEY_TTL, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl, self.clock = ttl, clock
        self._items: dict[tuple[str, str], tuple[float, dict[str, Any]]] = {}

    def get(self, key: tuple[str, str]) -> dict[str, Any] | None:
        found = self._items.get(key)
        if found is None or self.clock() - found[0] >= self.ttl:
            return None
        return found[1]

    def put(self, key: tuple[str, str], survey: dict[str, Any]) -> None:
        self._items[key] = (self.clock(), survey)


def _detail(answer: HttpAnswer) -> str:
    try:
        error = answer.json().get("error") or {}
        message = str(error.get("message") or error.get("name") or "").strip()
    except Exception:  # noqa: BLE001 - an error body that is not JSON
        message = ""
    return f" ({message[:200]})" if message else ""


def explain(status: int, what: str, detail: str, retry_after: str | None) -> str:
    """An actionable message for a failed call (never the token)."""
    if status == 401:
        return (
            f"SurveyMonkey refused the access token for {what} (401){detail}: check access_token "
            "(revoked, or from another app?)"
        )
    if status == 403:
        return (
            f"SurveyMonkey denied {what} (403){detail}: the app needs the View Responses and View Response "
            "Details scopes, and the account a plan that includes them"
        )
    if status == 404:
        return (
            f"SurveyMonkey has no {what} (404){detail}: deleted, not owned by the token's account, or the "
            "account is in another data centre (set api_base_url, e.g. https://api.eu.surveymonkey.com)"
        )
    if status == 429:
        wait = f", retry after {retry_after} s" if retry_after else ""
        return f"SurveyMonkey rate limit reached for {what} (429{wait}){detail}; it is tried again later"
    if status >= 500:
        return f"SurveyMonkey API error {status} for {what}{detail}; it is tried again later"
    return f"SurveyMonkey answered {status} for {what}{detail}"


async def get_json(http: Sender, url: str, token: str, what: str) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/json"}
    try:
        answer = await http.send(Request("GET", url, headers, timeout=TIMEOUT, max_bytes=MAX_BYTES))
    except TransportFailed as exc:
        raise FetchFailed(
            f"could not reach SurveyMonkey at {urlsplit(url).netloc} for {what}: {exc.reason}"
        ) from None
    if answer.status != 200:
        raise FetchFailed(
            explain(answer.status, what, _detail(answer), answer.headers.get("retry-after")),
            permanent=answer.status in (401, 403, 404),
        )
    try:
        data = answer.json()
    except ValueError:
        data = None
    if not isinstance(data, dict):
        cut = f" (cut at {MAX_BYTES} bytes)" if answer.truncated else ""
        raise FetchFailed(f"SurveyMonkey answered {what} with something that is not a JSON object{cut}")
    return data


# --- answers ---------------------------------------------------------------------------------


def questions_of(survey: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Question objects of a survey's details by question id."""
    found: dict[str, dict[str, Any]] = {}
    for page in survey.get("pages") or []:
        for question in (page.get("questions") or []) if isinstance(page, dict) else []:
            if isinstance(question, dict) and question.get("id") is not None:
                found[str(question["id"])] = question
    return found


def answered_ids(details: dict[str, Any]) -> list[str]:
    return [str(q.get("id")) for _, q in _answered(details)]


def _answered(details: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    out = []
    for page in details.get("pages") or []:
        for question in (page.get("questions") or []) if isinstance(page, dict) else []:
            if isinstance(question, dict) and isinstance(question.get("answers"), list):
                out.append((page, question))
    return out


def _by_id(items: Any) -> dict[str, dict[str, Any]]:
    if isinstance(items, dict):
        items = [items]
    return {str(i["id"]): i for i in items or [] if isinstance(i, dict) and i.get("id") is not None}


def _heading(question: dict[str, Any], fallback: str) -> str:
    for heading in question.get("headings") or []:
        if isinstance(heading, dict):
            text = str(heading.get("heading") or heading.get("description") or "").strip()
            if text:
                return text
    return fallback


def _choice_value(choice: dict[str, Any] | None, raw_id: str) -> Any:
    if choice is None:
        return raw_id
    text = choice.get("text")
    if isinstance(text, str) and text.strip():
        return text
    # Star/emoji ratings have choices without text: their weight is the answer.
    return next(
        (choice[k] for k in ("weight", "position") if isinstance(choice.get(k), (int, float))), raw_id
    )


def question_answers(
    qid: str, sent: list[dict[str, Any]], question: dict[str, Any] | None
) -> list[Answer | None]:
    question = question or {}
    heading = _heading(question, qid)
    family, subtype = str(question.get("family") or ""), str(question.get("subtype") or "")
    display = str((question.get("display_options") or {}).get("display_type") or "")
    kind = (
        "file_upload"
        if display == "file_upload"
        else "_".join(p for p in (family, subtype) if p) or "unknown"
    )
    spec = question.get("answers") or {}
    rows, cols, other = _by_id(spec.get("rows")), _by_id(spec.get("cols")), _by_id(spec.get("other"))
    choices = _by_id(spec.get("choices"))
    for spec_col in cols.values():
        choices.update(_by_id(spec_col.get("choices")))
    multi = family == "multiple_choice" or (family == "matrix" and subtype == "multi")
    groups, files = _group_sent(sent, other, choices)
    if files:
        return [_answers.answer(qid, heading, kind, _answers.file_value(files))]
    answers: list[Answer | None] = []
    for (row, col), parts in groups.items():
        parts = [p for p in parts if not _answers.is_empty(p)]
        value: Any = parts if multi or len(parts) > 1 else (parts[0] if parts else None)
        type_ = kind
        if row == "#other":
            label, key = f"{heading} [{(other.get(col) or {}).get('text') or 'Other'}]", f"{qid}/other"
        else:
            spec_row = rows.get(row) or {}
            if family == "demographic" and spec_row.get("type"):
                type_ = str(spec_row["type"])  # name, email, phone…: SurveyMonkey's own row types
            label = _cell_label(heading, row, spec_row, col, cols)
            key = "/".join(p for p in (qid, row, col) if p)
        if isinstance(value, list):
            value = [v if isinstance(v, str) else str(v) for v in value]
        answers.append(_answers.answer(key, label, type_, value))
    return answers


def _group_sent(
    sent: list[dict[str, Any]], other: dict[str, dict[str, Any]], choices: dict[str, dict[str, Any]]
) -> tuple[dict[tuple[str, str], list[Any]], list[str]]:
    """The sent parts of one question by (row, col) cell, and its uploaded files' URLs."""
    groups: dict[tuple[str, str], list[Any]] = {}
    files: list[str] = []
    for item in sent:
        if not isinstance(item, dict):
            continue
        row, col = str(item.get("row_id") or ""), str(item.get("col_id") or "")
        if item.get("download_url"):
            files.append(str(item["download_url"]))
        elif item.get("other_id") is not None:
            spec_other = other.get(str(item["other_id"])) or {}
            # An "other" that is not an answer choice is a comment box: an answer of its own.
            cell = (
                (row, col) if spec_other.get("is_answer_choice", True) else ("#other", str(item["other_id"]))
            )
            groups.setdefault(cell, []).append(item.get("text"))
        elif item.get("choice_id") is not None:
            choice_id = str(item["choice_id"])
            groups.setdefault((row, col), []).append(_choice_value(choices.get(choice_id), choice_id))
        elif item.get("text") is not None:
            groups.setdefault((row, col), []).append(item.get("text"))
    return groups, files


def _cell_label(
    heading: str, row: str, spec_row: dict[str, Any], col: str, cols: dict[str, dict[str, Any]]
) -> str:
    """The heading, with the row's and column's texts in brackets where the cell has them."""
    row_text = str(spec_row.get("text") or spec_row.get("type") or (row if row and not spec_row else ""))
    col_text = str((cols.get(col) or {}).get("text") or col) if col else ""
    inner = " / ".join(t for t in (row_text.strip(), col_text.strip()) if t)
    return f"{heading} [{inner}]" if inner else heading


def map_answers(details: dict[str, Any], questions: dict[str, dict[str, Any]]) -> list[Answer]:
    found: list[Answer | None] = []
    for _, question in _answered(details):
        qid = str(question.get("id"))
        found.extend(question_answers(qid, question["answers"], questions.get(qid)))
    return _answers.collect(found)


def _contact(details: dict[str, Any], field: str) -> str | None:
    contact = _answers.maybe_obj(_answers.maybe_obj(details, "metadata"), "contact")
    value = contact.get(field)
    value = value.get("value") if isinstance(value, dict) else value
    return value.strip() if isinstance(value, str) and value.strip() else None


def respondent(details: dict[str, Any], answers: list[Answer]) -> tuple[str | None, str | None]:
    """(e-mail, name): the contact's when the response came through an e-mail collector, else from answers."""
    email = _answers.pick_email(_contact(details, "email") or details.get("email_address"), answers)
    parts = [p for p in (_contact(details, "first_name"), _contact(details, "last_name")) if p]
    return email, " ".join(parts) if parts else _answers.pick_name(answers)


def completed(
    submission: Submission, details: dict[str, Any], survey: dict[str, Any], response_href: str
) -> Submission:
    """`submission` with the answers of a response's details (`/responses/{id}/details`, or one item of
    `/responses/bulk`: the same shape) labelled from the survey's details."""
    answers = map_answers(details, questions_of(survey))
    email, name = respondent(details, answers)
    metadata = {k: v for k, v in submission.metadata.items() if k != "answers_pending"}
    metadata.update(response_href=response_href, details_href=f"{response_href}/details")
    for key in ("response_status", "collection_mode", "custom_value", "analyze_url"):
        if isinstance(details.get(key), str) and details[key]:
            metadata[key] = details[key]
    hidden = {k: v for k, v in (details.get("custom_variables") or {}).items() if not _answers.is_empty(v)}
    title = survey.get("title")
    return submission.model_copy(
        update={
            "answers": answers,
            "email": email,
            "name": name,
            "hidden": {**submission.hidden, **hidden},
            "form_title": title if isinstance(title, str) and title else submission.form_title,
            "submitted_at": response_time(details, submission.submitted_at),
            "metadata": metadata,
        }
    )


def response_time(details: dict[str, Any], fallback: datetime) -> datetime:
    """When the response was completed: its last modification (else creation), to the millisecond."""
    for key in ("date_modified", "date_created"):
        try:
            at = _answers.instant(details.get(key), f"details.{key}", fallback)
        except UnsupportedPayload:
            continue
        if at is not fallback:
            return at.replace(microsecond=at.microsecond // 1000 * 1000)
    return fallback
