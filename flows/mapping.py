"""Field mappings and templates: admin-written Jinja over a Submission, in Jinja's sandbox.

A destination's `map:` is `{target field: Jinja expression}`, e.g.
`{email: "{{ email | lower }}", firstname: "{{ name | first_name }}", company: "{{ answers['Company'] }}"}`.
Templates are user text, so they run in `SandboxedEnvironment` (no attribute access to
internals, no imports), with StrictUndefined so a typo is an error that names the template
instead of an empty field in the CRM.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from hub.submission import AnswerValue, Submission

RANGE_BUDGET = 100_000
"""Items all `range()` calls of one rendering may yield together (Jinja's sandbox caps each call at
100,000, so nested loops could still run 10^10 times): the sandbox has no CPU limit of its own."""
MAX_REPEAT_CHARS = 1_000_000
"""Longest string or list `*` may build (`{{ 'x' * 10**9 }}` would take a gigabyte)."""
MAX_POWER_BITS = 100_000
"""Largest integer `**` may build (`{{ 10 ** 100000000 }}` would hold the CPU for minutes)."""
VALUE_START, VALUE_END = "\ue000", "\ue001"
"""Private-use characters around each `{{ }}` output when a field is rendered marked, so the
admin's literal text can be told from values that may come from a respondent."""


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


class _Answers(dict[str, AnswerValue]):
    """`answers['Label']` by label, then key; a missing answer is None (use `default`)."""

    def __init__(self, submission: Submission) -> None:
        super().__init__()
        for answer in submission.answers:
            self.setdefault(answer.label, answer.value)
        for answer in submission.answers:
            self.setdefault(answer.key, answer.value)

    def __missing__(self, key: str) -> None:
        return None


class RenderLimit(Exception):
    """A template asked for more work than a rendering may do; the message names the limit."""


_range_left: ContextVar[list[int] | None] = ContextVar("hookhub_range_left", default=None)


def _budgeted_range(*args: int) -> range:
    numbers = range(*args)
    left = _range_left.get()
    available = left[0] if left is not None else RANGE_BUDGET
    if len(numbers) > available:
        raise RenderLimit(
            f"range() would loop {len(numbers):,} times; one rendering may loop at most "
            f"{RANGE_BUDGET:,} times over range() in all"
        )
    if left is not None:
        left[0] -= len(numbers)
    return numbers


def _sized(value: Any) -> int | None:
    return len(value) if isinstance(value, (str, list, tuple)) else None


class _Sandbox(SandboxedEnvironment):
    """Jinja's sandbox with bounded `range`, `*` and `**` (the rest is Jinja's own)."""

    intercepted_binops = frozenset({"*", "**"})

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self.globals["range"] = _budgeted_range

    def call_binop(self, context: Any, operator_name: str, left: Any, right: Any) -> Any:
        if operator_name == "*":
            for seq, times in ((left, right), (right, left)):
                size = _sized(seq)
                if size is not None and isinstance(times, int) and size * times > MAX_REPEAT_CHARS:
                    raise RenderLimit(f"'*' would build {size * times:,} items; at most {MAX_REPEAT_CHARS:,}")
            return operator.mul(left, right)
        if operator_name == "**":
            big = isinstance(left, int) and isinstance(right, int) and abs(left) > 1 and right > 0
            if big and abs(left).bit_length() * right > MAX_POWER_BITS:
                raise RenderLimit(f"'**' would build a number of over {MAX_POWER_BITS:,} bits")
            return operator.pow(left, right)
        return super().call_binop(context, operator_name, left, right)


def _marked(value: Any) -> str:
    text = str(value)
    if VALUE_START in text or VALUE_END in text:
        text = text.replace(VALUE_START, "").replace(VALUE_END, "")
    return VALUE_START + text + VALUE_END


FILTERS: dict[str, Callable[..., Any]] = {
    "first_name": first_name,
    "last_name": last_name,
    "join": join_list,  # also joins a scalar (as itself), unlike Jinja's built-in
    "lower": lambda v: "" if v is None else str(v).lower(),
    "upper": lambda v: "" if v is None else str(v).upper(),
    "default": lambda v, d="": d if v in (None, "", []) else v,
}


def sandbox(*, mark_values: bool = False, **options: Any) -> SandboxedEnvironment:
    """A sandboxed environment with hookhub's filters and limits; `mark_values` wraps every `{{ }}`
    output in VALUE_START/VALUE_END (read them with `split_values`)."""
    env = _Sandbox(undefined=StrictUndefined, finalize=_marked if mark_values else None, **options)
    env.filters.update(FILTERS)
    return env


@lru_cache(maxsize=2)
def environment(mark_values: bool = False) -> SandboxedEnvironment:
    return sandbox(mark_values=mark_values, autoescape=False, keep_trailing_newline=False)


@lru_cache(maxsize=1024)
def _compile(text: str, mark_values: bool = False) -> Template:
    return environment(mark_values).from_string(text)


def check_template(text: str) -> str | None:
    """The syntax problem in `text`, or None: what `hookhub check` can know before any submission."""
    try:
        _compile(text)
    except TemplateError as exc:
        lineno = getattr(exc, "lineno", None)  # TemplateSyntaxError's; other TemplateErrors have none
        line = f" (line {lineno})" if lineno else ""
        return f"{exc.message or exc}{line}"
    return None


@contextmanager
def _one_rendering() -> Iterator[None]:
    token = _range_left.set([RANGE_BUDGET])
    try:
        yield
    finally:
        _range_left.reset(token)


def render_failure(exc: Exception, field: str) -> MappingError:
    """What went wrong rendering `field`, for the dead letter: a template error names its line; any
    other exception (`{{ answers['Age'] + 1 }}` on an empty answer: TypeError) its type."""
    if isinstance(exc, MappingError):
        return exc
    if isinstance(exc, TemplateError):
        lineno = getattr(exc, "lineno", None)
        line = f" line {lineno}" if lineno else ""
        return MappingError(f"{field}: cannot render{line}: {exc.message or exc}")
    return MappingError(f"{field}: cannot render: {type(exc).__name__}: {exc}")


def run_template(compile_: Callable[[], Template], names: dict[str, Any], field: str) -> str:
    """Compile and render with the per-rendering limits; every failure is a MappingError naming
    `field`, because the admin's template meeting this one submission is this item's problem."""
    try:
        with _one_rendering():
            return compile_().render(names)
    except Exception as exc:  # noqa: BLE001 - any exception here is the template's, for this item
        raise render_failure(exc, field) from None


@dataclass(frozen=True)
class Rendered:
    """A rendering with each `{{ }}` output also kept apart: those may hold respondent data."""

    text: str
    values: tuple[str, ...]


def split_values(marked: str) -> Rendered:
    """The text without markers, and the outermost marked values (a `{% set %}` block can nest them)."""
    text: list[str] = []
    values: list[str] = []
    current: list[str] = []
    depth = 0
    for char in marked:
        if char == VALUE_START:
            depth += 1
            continue
        if char == VALUE_END:
            depth = max(depth - 1, 0)
            if depth == 0:
                values.append("".join(current))
                current = []
            continue
        text.append(char)
        if depth:
            current.append(char)
    if depth:  # a filter block cut the end marker off: what follows the start is still a value
        values.append("".join(current))
    return Rendered("".join(text), tuple(values))


def context(submission: Submission) -> dict[str, Any]:
    """Names a template sees: the Submission's public fields, `answers` by label or key, and
    `answer_list` (every answer as {key, label, type, value}, in form order)."""
    data = submission.model_dump(mode="json")
    data["answer_list"] = data["answers"]
    data["answers"] = _Answers(submission)
    return data


def render(text: str, submission: Submission, field: str = "template") -> str:
    return run_template(lambda: _compile(text), context(submission), field)


def render_marked(text: str, submission: Submission, field: str) -> Rendered:
    """`render`, with what each `{{ }}` produced kept apart for checks of respondent data."""
    return split_values(run_template(lambda: _compile(text, True), context(submission), field))


def check_ids(
    fields: dict[str, str], is_id: Callable[[str], object], shape: re.Pattern[str], what: str
) -> None:
    """Fields naming a record (an owner, a linked object) must render to exactly one id of `shape`:
    a value from the submission such as `12, 13` or `12 OR 1=1` is refused here with the field's
    name instead of being sent for the CRM to read as it likes."""
    for name, value in fields.items():
        if is_id(name) and not shape.fullmatch(value):
            shown = " ".join(value.split())[:80]
            raise MappingError(
                f"map.{name}: rendered {shown!r}, which is not one {what}, so nothing was sent"
            )


def render_map(mapping: dict[str, str], submission: Submission) -> dict[str, str]:
    """Every target field rendered; an empty result means "leave the field out"."""
    out: dict[str, str] = {}
    for target, text in mapping.items():
        value = render(text, submission, field=f"map.{target}").strip()
        if value:
            out[target] = value
    return out
