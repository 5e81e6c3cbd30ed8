"""Conditions of `test_when` / `ignore_when`.

Such as `data.type == 'ping'`, `event != "form.submitted"`, `data.test`."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated, Any, Literal

from pydantic import AfterValidator

from connectors.mapped.paths import MISSING, Path, compile_path, put

_COMPARISON = re.compile(r"^(?P<path>.+?)\s*(?P<op>==|!=)\s*(?P<literal>.+)$", re.DOTALL)
_NOT_A_LITERAL: Any = object()


@dataclass(frozen=True)
class Condition:
    text: str
    path: Path
    op: Literal["==", "!=", "truthy"]
    literal: Any = None

    def __call__(self, data: Any) -> bool:
        value = self.path.get(data)
        if self.op == "truthy":
            return value is not MISSING and value not in (None, False, 0, "") and value != [] and value != {}
        same = _same(None if value is MISSING else value, self.literal)
        return same if self.op == "==" else not same


def _same(value: Any, literal: Any) -> bool:
    if isinstance(value, str) and literal is not None and not isinstance(literal, str):
        # Form fields are text: `test == 1` matches "1", `test == true` matches "true".
        return value == json.dumps(literal)
    if isinstance(value, bool) != isinstance(literal, bool):
        return False  # True == 1 in Python, not in JSON
    return bool(value == literal)


def _literal(text: str) -> Any:
    text = text.strip()
    if len(text) >= 2 and text[0] == text[-1] == "'":
        return text[1:-1]
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        value = _NOT_A_LITERAL
    if value is _NOT_A_LITERAL or isinstance(value, (dict, list)):
        raise ValueError("the right-hand side must be 'text', a number, true, false or null")
    return value


@lru_cache(maxsize=256)
def compile_condition(text: str) -> Condition:
    match = _COMPARISON.match(text.strip())
    if match is None:
        unquoted = re.sub(r"\[(['\"]).*?\1\]", "", text.strip())
        if re.search(r"[=<>!\s]", unquoted):
            raise ValueError("compare with == or != only, e.g. data.type == 'ping'")
        return Condition(text, compile_path(text), "truthy")
    op = match["op"]
    return Condition(
        text, compile_path(match["path"]), "==" if op == "==" else "!=", _literal(match["literal"])
    )


def check_conditions(value: str | list[str] | None) -> str | list[str] | None:
    for text in [value] if isinstance(value, str) else value or []:
        try:
            compile_condition(text)
        except ValueError as exc:
            raise ValueError(f"invalid condition (PATH == VALUE, PATH != VALUE or PATH): {exc}") from None
    return value


def conditions(value: str | list[str] | None) -> list[Condition]:
    return [compile_condition(t) for t in ([value] if isinstance(value, str) else value or [])]


Conditions = Annotated[str | list[str] | None, AfterValidator(check_conditions)]


def unmatch(root: dict[str, Any], condition: Condition) -> None:
    """Best effort: make a test_when / ignore_when condition false for the sample submission."""
    if not condition(root):
        return
    if condition.op == "!=":
        put(root, condition.path, condition.literal, replace=True)
    elif condition.op == "==":
        put(root, condition.path, "hookhub-send-test", replace=True)
    else:
        put(root, condition.path, "", replace=True)
