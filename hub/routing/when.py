r"""The `when` condition of a route: a small, safe expression over one Submission.

    when: "answers['How many tickets?'] > 2 and email contains '@example.com'"

Public API:
- `compile_when(text) -> Condition`; raises `WhenSyntaxError` (`.col`, 1-based, and a
  message naming the column and the problem).
- `Condition(submission) -> bool`; raises `WhenError` when this submission's values do not
  fit the condition (e.g. ordering text that is not a number against a number). `.text`
  is the source.
- `KNOWN_NAMES`, `FUNCTIONS`: what a condition may refer to.

The language (nothing else is accepted; user text never reaches eval, exec or compile):
- values: `answers['Label']` / `answers["Label"]` / `answers.key` (by answer label
  first, then by answer key), `email`, `name`, `form_id`, `form_title`, `source`,
  `provider`, `event_id`, `submitted_at` (ISO 8601 text, UTC, `Z`), `hidden.x` /
  `hidden['x y']`, `metadata.x` (hidden and metadata may nest: `metadata.a.b`).
  A missing answer, hidden field or metadata key is null, not an error.
- literals: 'text' or "text" (escapes \\ \' \" \n \t \r \0 \uNNNN; any other backslash
  stays, so `matches '\d+'` works), 3, -1.5, 2e3, true/false/null (True/False/None too),
  lists of literals `['a', 'b']`.
- operators, loosest first: `or`; `and`; `not`; comparisons `==` `!=` `<` `<=` `>` `>=`,
  `in`, `not in` (item in list, text in text), `contains` (list contains item, text
  contains text), `startswith`, `endswith`, `matches` (regex search run by RE2, linear in
  the text: hub/routing/patterns.py); and parentheses. Comparisons do not chain. All text
  comparisons are case-sensitive.
- functions: `lower(x)`, `upper(x)` (text or list of text; null stays null), `len(x)`
  (null is 0), `number(x)` (a number, or text spelling one), `exists(x)` (x is not null).
- a number and text spelling a number compare as numbers (`answers.qty > 2` with "3");
  the result is Python truthiness of the whole expression.
"""

from __future__ import annotations

from hub.routing.errors import WhenError, WhenSyntaxError
from hub.routing.evaluate import Evaluation
from hub.routing.parser import FUNCTIONS, KNOWN_NAMES, Node, parse
from hub.submission import Submission

__all__ = ["FUNCTIONS", "KNOWN_NAMES", "Condition", "WhenError", "WhenSyntaxError", "compile_when"]


class Condition:
    """A compiled `when`; call it with a Submission. Immutable and safe to share across threads."""

    __slots__ = ("_tree", "text")

    def __init__(self, text: str, tree: Node) -> None:
        self.text = text
        self._tree = tree

    def __call__(self, submission: Submission) -> bool:
        return bool(Evaluation(self.text, submission).value(self._tree))

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"


def compile_when(text: str) -> Condition:
    """Parse and check `text` once; raises WhenSyntaxError naming the column and the problem."""
    return Condition(text, parse(text))
