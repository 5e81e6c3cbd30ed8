"""How a Forms API FormResponse becomes hookhub answers, given the form's structure (forms.get).

The shapes followed (FormResponse `answers` keyed by questionId, `textAnswers` / `fileUploadAnswers`,
form `items[]` with questions and question groups) and what is uncertain about them are listed in
connectors/google_forms_pubsub/forms_api.py, which fetches both.
"""

from __future__ import annotations

import re
from typing import Any

from connectors import _answers
from hub.submission import Answer


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
