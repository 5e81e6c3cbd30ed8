"""Field mappings and templates: admin-written Jinja over a Submission, in Jinja's sandbox.

A destination's `map:` is `{target field: Jinja expression}`, e.g.
`{email: "{{ email | lower }}", firstname: "{{ name | first_name }}", company: "{{ answers['Company'] }}"}`.
Templates are user text, so they run in `SandboxedEnvironment` (no attribute access to
internals, no imports), with StrictUndefined so a typo is an error that names the template
instead of an empty field in the CRM.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from hub.submission import Submission


class MappingError(Exception):
    """A template could not be compiled or rendered; the message names the field and the problem."""


def _split_name(value: Any) -> tuple[str, str]:
    parts = str(value or "").strip().split()
    if not parts:
        return "", ""
    return parts[0], " ".join(parts[1:])


def first_name(value: Any) -> str:
    return _split_name(value)[0]


def last_name(value: Any) -> str:
    return _split_name(value)[1]


def join_list(value: Any, separator: str = ", ") -> str:
    if isinstance(value, (list, tuple)):
        return separator.join(str(v) for v in value)
    return "" if value is None else str(value)


def format_value(value: Any) -> str:
    """An answer as a person reads it, for messages, e-mails and notes (not escaped)."""
    if value is None or value == "" or value == []:
        return "(no answer)"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, list):
        return ", ".join(str(item) for item in value)
    return str(value)


class _Answers(dict):  # type: ignore[type-arg]
    """`answers['Label']` by label, then key; a missing answer is None (use `default`)."""

    def __init__(self, submission: Submission) -> None:
        super().__init__()
        for answer in submission.answers:
            self.setdefault(answer.label, answer.value)
        for answer in submission.answers:
            self.setdefault(answer.key, answer.value)

    def __missing__(self, key: str) -> None:
        return None


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)
    env.filters.update({
        "first_name": first_name,
        "last_name": last_name,
        "join": join_list,  # also joins a scalar (as itself), unlike Jinja's built-in
        "lower": lambda v: "" if v is None else str(v).lower(),
        "upper": lambda v: "" if v is None else str(v).upper(),
        "default": lambda v, d="": d if v in (None, "", []) else v,
    })
    return env


@lru_cache(maxsize=1024)
def _compile(text: str):  # type: ignore[no-untyped-def]
    return environment().from_string(text)


def check_template(text: str) -> str | None:
    """The syntax problem in `text`, or None: what `hookhub check` can know before any submission."""
    try:
        _compile(text)
    except TemplateError as exc:
        line = f" (line {exc.lineno})" if getattr(exc, "lineno", None) else ""
        return f"{exc.message or exc}{line}"
    return None


def context(submission: Submission) -> dict[str, Any]:
    """Names a template sees: the Submission's public fields, `answers` by label or key, and
    `answer_list` (every answer as {key, label, type, value}, in form order)."""
    data = submission.model_dump(mode="json")
    data["answer_list"] = data["answers"]
    data["answers"] = _Answers(submission)
    return data


def render(text: str, submission: Submission, field: str = "template") -> str:
    try:
        return _compile(text).render(context(submission))
    except TemplateError as exc:
        line = f" line {exc.lineno}" if getattr(exc, "lineno", None) else ""
        raise MappingError(f"{field}: cannot render{line}: {exc.message or exc}") from None


def render_map(mapping: dict[str, str], submission: Submission) -> dict[str, str]:
    """Every target field rendered; an empty result means "leave the field out"."""
    out: dict[str, str] = {}
    for target, text in mapping.items():
        value = render(text, submission, field=f"map.{target}").strip()
        if value:
            out[target] = value
    return out
