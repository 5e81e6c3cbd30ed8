"""Evaluating a parsed `when` condition against one Submission.

Values are plain JSON-like Python values. The rules differ from Python where providers'
payloads would otherwise make routes fragile or crash:
- a number and a text that reads as a number compare as numbers (`"3" > 2`, `"3" == 3`);
- booleans equal only booleans (`true == 1` is false, unlike Python);
- a missing field is null: it equals null, is in nothing and contains nothing,
  starts/ends with and matches nothing, and `len` of it is 0;
- any other mix of types a Python operator would reject is a WhenError naming the part
  of the condition and the types involved (never the submission's values).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from typing import Any

from hub.routing.errors import WhenError
from hub.routing.parser import BoolOp, Call, Compare, Field, Literal, Node, Not
from hub.routing.patterns import Pattern, PatternError, compile_pattern
from hub.submission import AnswerValue, Submission, iso_utc

_ORDER: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}
_NUMERIC_TEXT = re.compile(r"\s*[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?\s*", re.ASCII)


def kind(value: Any) -> str:
    """The type of a value in the words of the condition language."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "text"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


def absent(value: Any) -> bool:
    """A missing or empty answer: null, text with only spaces, or an empty list (nothing chosen).

    Ordering, `number()`, `startswith`, `endswith` and `matches` against an absent value are false
    (the README's "Conditions"): forms leave optional questions empty, and a route meant for
    "more than 2 tickets" must skip such a submission, not make it a dead letter.
    """
    return value is None or (isinstance(value, str) and not value.strip()) or value == []


def is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def as_number(text: str) -> int | float | None:
    """The number a text spells ("3", " 2.5 ", "-1e3"), or None; no `1_000`, `nan` or `inf`."""
    if len(text) > 100 or not _NUMERIC_TEXT.fullmatch(text):
        return None
    value = text.strip()
    number: int | float = int(value) if value.lstrip("+-").isdigit() else float(value)
    return number if math.isfinite(number) else None


def equal(a: Any, b: Any) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if is_number(a) and isinstance(b, str):
        return bool(as_number(b) == a)
    if isinstance(a, str) and is_number(b):
        return bool(as_number(a) == b)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


_NOT_TAKEN: Any = object()
"""What a function's helper returns for an argument type it does not take."""


def _length(value: Any) -> Any:
    """len(x): 0 for null, the length of a text, list or mapping; `_NOT_TAKEN` for other types."""
    if value is None:
        return 0
    if isinstance(value, (str, list, dict)):
        return len(value)
    return _NOT_TAKEN


def _change_case(name: str, value: Any) -> Any:
    """lower(x) / upper(x) of a text or a list of texts (null stays null); `_NOT_TAKEN` otherwise."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.lower() if name == "lower" else value.upper()
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return [v.lower() if name == "lower" else v.upper() for v in value]
    return _NOT_TAKEN


class Evaluation:
    """One submission's evaluation; the answer lookup table is built once, when first needed."""

    def __init__(self, text: str, submission: Submission) -> None:
        self.text = text
        self.submission = submission
        self._labels: dict[str, AnswerValue] | None = None
        self._keys: dict[str, AnswerValue] = {}

    def value(self, node: Node) -> Any:
        if isinstance(node, Literal):
            return node.value
        if isinstance(node, Field):
            return self.field(node)
        if isinstance(node, Not):
            return not self.value(node.operand)
        if isinstance(node, BoolOp):
            # Python's short-circuit: `exists(x) and number(x) > 2` never evaluates number(null).
            left = self.value(node.left)
            decided = not left if node.op == "and" else bool(left)
            return left if decided else self.value(node.right)
        if isinstance(node, Call):
            return self.call(node)
        if isinstance(node, Compare):
            return self.compare(node)
        raise TypeError(f"not a condition node: {node!r}")  # the parser makes no other nodes

    def field(self, node: Field) -> Any:
        sub = self.submission
        if node.root == "submitted_at":
            return iso_utc(sub.submitted_at)
        if node.root == "answers":
            return self.answer(node.keys[0])
        value: Any = getattr(sub, node.root)  # root is one of the parser's known names
        for key in node.keys:  # hidden / metadata: plain dict lookups, never attributes
            value = value.get(key) if isinstance(value, dict) else None
        return value

    def answer(self, key: str) -> AnswerValue:
        """By label (the first answer with it, as Submission.answer_map), else by key."""
        if self._labels is None:
            self._labels = self.submission.answer_map()
            self._keys = {}
            for answer in self.submission.answers:
                self._keys.setdefault(answer.key, answer.value)
        if key in self._labels:
            return self._labels[key]
        return self._keys.get(key)

    def call(self, node: Call) -> Any:
        value = self.value(node.arg)
        name = node.function
        if name == "exists":
            return value is not None
        if name == "len":
            result = _length(value)
        elif name in ("lower", "upper"):
            result = _change_case(name, value)
        elif name == "number":
            result = self.number(node, value)
        else:
            result = _NOT_TAKEN
        if result is _NOT_TAKEN:
            raise self.fail(node, f"{name}() does not take {kind(value)}")
        return result

    def number(self, node: Call, value: Any) -> Any:
        """number(x): a number as is, a text as the number it spells; `_NOT_TAKEN` for other types."""
        if is_number(value):
            return value
        if isinstance(value, str) and value.strip():
            number = as_number(value)
            if number is None:
                raise self.fail(node, "the text is not a number")
            return number
        if absent(value):  # a missing answer spells no number: the comparison it feeds is false
            return None
        return _NOT_TAKEN

    def compare(self, node: Compare) -> bool:
        left, right = self.value(node.left), self.value(node.right)
        op = node.op
        if op in ("==", "!="):
            return equal(left, right) == (op == "==")
        if op in _ORDER:
            return self.order(node, left, right)
        if op in ("in", "not in"):
            return self.member(node, left, right) == (op == "in")
        if op == "contains":
            return self.member(node, right, left)
        if left is None or (right is None and op != "matches"):  # a missing value matches nothing
            return False
        if not isinstance(left, str):
            raise self.fail(node, f"'{op}' needs text on the left, got {kind(left)}")
        if op == "matches":
            pattern = node.pattern or self.pattern(node, right)
            return pattern.search(left)
        if not isinstance(right, str):
            raise self.fail(node, f"'{op}' needs text on the right, got {kind(right)}")
        return left.startswith(right) if op == "startswith" else left.endswith(right)

    def order(self, node: Compare, left: Any, right: Any) -> bool:
        if absent(left) or absent(right):
            # "only when it is more than 2": an optional question left unanswered (or a form
            # without it) is not more than 2, not an error that makes the submission a dead letter.
            return False
        a, b = left, right
        # Providers send numbers as text ("3"); compare those as the numbers they spell.
        if is_number(a) and isinstance(b, str):
            b = as_number(b)
        elif isinstance(a, str) and is_number(b):
            a = as_number(a)
        if (is_number(a) and is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
            return _ORDER[node.op](a, b)
        why = f"cannot compare {kind(left)} with {kind(right)} using '{node.op}'"
        for side, original, now in ((node.left, left, a), (node.right, right, b)):
            if isinstance(original, str) and now is None:
                why += f"; {self.quote(side)} is text that is not a number"
        raise self.fail(node, why)

    def member(self, node: Compare, item: Any, container: Any) -> bool:
        if container is None:
            return False
        if isinstance(container, list):
            return any(equal(item, x) for x in container)
        if isinstance(container, dict):
            return isinstance(item, str) and item in container
        if isinstance(container, str):
            if item is None:
                return False
            if isinstance(item, str):
                return item in container
            raise self.fail(node, f"text can only contain text, not {kind(item)}")
        raise self.fail(node, f"a {kind(container)} contains nothing (need text or a list)")

    def pattern(self, node: Compare, right: Any) -> Pattern:
        if not isinstance(right, str):
            raise self.fail(node, f"'matches' needs a text pattern, got {kind(right)}")
        try:
            return compile_pattern(right)  # cached: the same field pattern compiles once
        except PatternError as exc:
            # Only the problem, never RE2's detail: this pattern is the submission's text.
            raise self.fail(node, f"invalid regular expression: {exc.problem}") from None

    def quote(self, node: Node) -> str:
        snippet = self.text[node.start : node.end]
        return snippet if len(snippet) <= 60 else snippet[:57] + "..."

    def fail(self, node: Node, why: str) -> WhenError:
        return WhenError(f"{self.quote(node)} (column {node.start + 1}): {why}", node.start + 1)
