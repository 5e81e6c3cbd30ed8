"""How a Forms API FormResponse becomes hookhub answers, given the form's structure (forms.get).

The shapes followed (FormResponse `answers` keyed by questionId, `textAnswers` / `fileUploadAnswers`,
form `items[]` with questions and question groups) and what is uncertain about them are listed in
connectors/google_forms_pubsub/forms_api.py, which fetches both.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from connectors import _answers
from connectors.base import NormalizeContext, UnsupportedPayload
from hub.submission import Answer, Submission

PROVIDER = "google_forms_pubsub"


def questions_of(form: dict[str, Any]) -> dict[str, tuple[str, str, bool]]:
    """questionId -> (label, type, multi-valued), in form order; grids give one entry per row."""
    found: dict[str, tuple[str, str, bool]] = {}
    for item in form.get("items") or []:
        if not isinstance(item, dict):
            continue
        title = str(item.get("title") or item.get("itemId") or "").strip()
        question = _answers.maybe_obj(_answers.maybe_obj(item, "questionItem"), "question")
        if question.get("questionId"):
            found[str(question["questionId"])] = (title or str(question["questionId"]), *_kind(question))
        group = _answers.maybe_obj(item, "questionGroupItem")
        checkbox = _answers.maybe_obj(_answers.maybe_obj(group, "grid"), "columns").get("type") == "CHECKBOX"
        for row in group.get("questions") or []:
            if isinstance(row, dict) and row.get("questionId"):
                row_title = str(_answers.maybe_obj(row, "rowQuestion").get("title") or "").strip()
                label = f"{title} [{row_title}]" if row_title else title
                found[str(row["questionId"])] = (label, "checkbox_grid" if checkbox else "grid", checkbox)
    return found


def _kind(question: dict[str, Any]) -> tuple[str, bool]:
    choice = _answers.maybe_obj(question, "choiceQuestion")
    if choice:
        kind = str(choice.get("type") or "choice").lower()
        return kind, kind == "checkbox"
    if "textQuestion" in question:
        return (
            "paragraph_text" if _answers.maybe_obj(question, "textQuestion").get("paragraph") else "text"
        ), False
    for name in ("scale", "date", "time", "fileUpload", "rating"):
        if f"{name}Question" in question:
            return re.sub(r"([A-Z])", r"_\1", name).lower(), name == "fileUpload"
    return "question", False


def map_answers(response: dict[str, Any], questions: dict[str, tuple[str, str, bool]]) -> list[Answer]:
    sent = _answers.maybe_obj(response, "answers")
    order = [q for q in questions if q in sent] + [q for q in sent if q not in questions]
    found: list[Answer | None] = []
    for qid in order:
        answer = sent[qid] if isinstance(sent[qid], dict) else {}
        label, kind, multi = questions.get(qid, (qid, "question", False))
        files = [
            f.get("fileId")
            for f in _answers.maybe_obj(answer, "fileUploadAnswers").get("answers") or []
            if isinstance(f, dict) and f.get("fileId")
        ]
        if files:
            found.append(
                _answers.answer(
                    qid,
                    label,
                    "file_upload",
                    _answers.file_value(f"https://drive.google.com/open?id={f}" for f in files),
                )
            )
            continue
        values = [
            v.get("value")
            for v in _answers.maybe_obj(answer, "textAnswers").get("answers") or []
            if isinstance(v, dict) and not _answers.is_empty(v.get("value"))
        ]
        found.append(
            _answers.answer(qid, label, kind, values if multi or len(values) > 1 else (values or [None])[0])
        )
    return _answers.collect(found)


def form_title(form: dict[str, Any]) -> str | None:
    info = _answers.maybe_obj(form, "info")
    return info.get("title") or info.get("documentTitle") or None


def submitted_at(response: dict[str, Any], fallback: datetime) -> datetime:
    """When a FormResponse was (last) submitted, to the millisecond; else `fallback`."""
    try:
        at = _answers.instant(
            response.get("lastSubmittedTime") or response.get("createTime"), "lastSubmittedTime", fallback
        )
    except UnsupportedPayload:
        at = fallback
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def response_submission(
    context: NormalizeContext,
    form_id: str,
    title: str | None,
    questions: dict[str, tuple[str, str, bool]],
    response: dict[str, Any],
    facts: dict[str, Any],
) -> Submission:
    """One FormResponse as a Submission whose event id is its `responseId` (the fetch step's and
    reconciliation's shared shape); `facts` are added to its metadata where not None."""
    metadata = {
        "response_id": response["responseId"],
        "create_time": response.get("createTime"),
        "total_score": response.get("totalScore"),
        **facts,
    }
    return _answers.submission(
        PROVIDER,
        context,
        map_answers(response, questions),
        form_id=form_id,
        form_title=title,
        event_id=str(response["responseId"]),
        submitted_at=submitted_at(response, context.received_at),
        respondent_email=response.get("respondentEmail"),
        metadata={k: v for k, v in metadata.items() if v is not None},
    )
