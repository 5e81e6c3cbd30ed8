"""Recursive-descent parser of the `when` language into a small, closed set of nodes.

Grammar, loosest binding first (as in Python, so `not a or b and c` is
`(not a) or (b and c)` and `not x == 1` is `not (x == 1)`):

    or_expr    := and_expr ("or" and_expr)*
    and_expr   := not_expr ("and" not_expr)*
    not_expr   := "not" not_expr | comparison
    comparison := operand [COMPARE operand]      (no chains: `a < b < c` is an error)
    operand    := literal | list | "(" or_expr ")" | FUNCTION "(" or_expr ")"
                | SCALAR | MAPPING field+
    field      := "[" string "]" | "." name

Every name, field and function is checked here, at compile time: nothing in the text can
reach Python attributes, builtins or modules, and a typo fails `hookhub check`, not routing.
"""

from __future__ import annotations

import dataclasses
import difflib
from dataclasses import dataclass, field

from hub.routing.errors import WhenSyntaxError, syntax_error
from hub.routing.lexer import Token, tokenize
from hub.routing.patterns import Pattern, PatternError, compile_pattern

# Submission fields that are one value each.
SCALARS = ("email", "name", "form_id", "form_title", "source", "provider", "event_id", "submitted_at")
# Submission fields that are looked into with ['key'] or .key.
MAPPINGS = ("answers", "hidden", "metadata")
KNOWN_NAMES = tuple(sorted(SCALARS + MAPPINGS))
FUNCTIONS = ("exists", "len", "lower", "number", "upper")
SYMBOL_COMPARISONS = ("==", "!=", "<", "<=", ">", ">=")
WORD_COMPARISONS = ("in", "not in", "contains", "startswith", "endswith", "matches")
COMPARISONS = SYMBOL_COMPARISONS + WORD_COMPARISONS
_CONSTANTS: dict[str, bool | None] = {
    "true": True,
    "false": False,
    "null": None,
    "True": True,
    "False": False,
    "None": None,
}
# Deep enough for any real condition, shallow enough to stay far from Python's recursion limit.
MAX_DEPTH = 64

Value = str | int | float | bool | None | list["Value"]


@dataclass(frozen=True)
class Node:
    start: int  # 0-based span in the condition text, for runtime error messages
    end: int


@dataclass(frozen=True)
class Literal(Node):
    value: Value


@dataclass(frozen=True)
class Field(Node):
    root: str  # one of SCALARS or MAPPINGS
    keys: tuple[str, ...] = ()  # lookups into a mapping, outermost first


@dataclass(frozen=True)
class Call(Node):
    function: str  # one of FUNCTIONS
    arg: Node


@dataclass(frozen=True)
class Not(Node):
    operand: Node


@dataclass(frozen=True)
class BoolOp(Node):
    op: str  # "and" | "or"
    left: Node
    right: Node


@dataclass(frozen=True)
class Compare(Node):
    op: str  # one of COMPARISONS
    left: Node
    right: Node
    pattern: Pattern | None = field(default=None, compare=False)  # `matches` a literal


def parse(text: str) -> Node:
    """The tree of condition `text`; raises WhenSyntaxError naming the column."""
    if not text.strip():
        raise WhenSyntaxError("empty condition", 1)
    return _Parser(tokenize(text)).parse()


def _error(problem: str, token: Token, detail: str = "") -> WhenSyntaxError:
    return syntax_error(problem, token.col, detail)


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.pos = 0
        self.depth = 0

    @property
    def token(self) -> Token:
        return self.tokens[self.pos]

    def _next(self) -> Token:
        token = self.tokens[self.pos]
        if token.kind != "end":
            self.pos += 1
        return token

    def _is(self, kind: str, *values: str) -> bool:
        return self.token.kind == kind and (not values or self.token.value in values)

    def _expect(self, value: str, opener: Token | None = None) -> Token:
        if self._is("op", value):
            return self._next()
        if opener is not None and self.token.kind == "end":
            raise _error(f"'{opener.value}' is never closed", opener, f"expected '{value}'")
        raise _error(f"expected '{value}', found {self.token.describe()}", self.token)

    def parse(self) -> Node:
        node = self._or()
        if self.token.kind != "end":
            raise _error(f"unexpected {self.token.describe()}", self.token)
        return node

    def _nested(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _error("condition nested too deeply", self.token, f"at most {MAX_DEPTH} levels")

    def _or(self) -> Node:
        self._nested()
        node = self._and()
        while self._is("kw", "or"):
            self._next()
            right = self._and()
            node = BoolOp(node.start, right.end, "or", node, right)
        self.depth -= 1
        return node

    def _and(self) -> Node:
        node = self._not()
        while self._is("kw", "and"):
            self._next()
            right = self._not()
            node = BoolOp(node.start, right.end, "and", node, right)
        return node

    def _not(self) -> Node:
        if not self._is("kw", "not"):
            return self._comparison()
        start = self._next()
        self._nested()
        operand = self._not()
        self.depth -= 1
        return Not(start.start, operand.end, operand)

    def _comparison(self) -> Node:
        left = self._operand()
        op_token = self.token
        op = self._compare_op()
        if op is None:
            return left
        right = self._operand()
        if self._compare_op() is not None:
            raise _error("comparisons cannot be chained", op_token, "join them with 'and'")
        pattern = None
        if op == "matches" and isinstance(right, Literal):
            pattern = _literal_pattern(right)
        return Compare(left.start, right.end, op, left, right, pattern)

    def _compare_op(self) -> str | None:
        """Consume a comparison operator if one is next (`not in` is two tokens)."""
        token = self.token
        if token.kind == "op" and token.value in COMPARISONS:
            self._next()
            return str(token.value)
        if token.kind == "kw" and token.value in COMPARISONS:
            self._next()
            return str(token.value)
        after = self.tokens[self.pos + 1] if token.kind != "end" else token
        if token.kind == "kw" and token.value == "not" and after.kind == "kw" and after.value == "in":
            self.pos += 2
            return "not in"
        return None

    def _operand(self) -> Node:
        token = self._next()
        if token.kind in ("str", "num"):
            return Literal(token.start, token.end, token.value)
        if token.kind == "kw" and token.value in _CONSTANTS:
            return Literal(token.start, token.end, _CONSTANTS[str(token.value)])
        if token.kind == "op" and token.value == "-" and self._is("num"):
            number = self._next()
            assert isinstance(number.value, (int, float))
            return Literal(token.start, number.end, -number.value)
        if token.kind == "op" and token.value == "[":
            return self._list(token)
        if token.kind == "op" and token.value == "(":
            node = self._or()
            close = self._expect(")", token)
            return _respan(node, token.start, close.end)
        if token.kind == "name":
            return self._name(token)
        raise _error(f"unexpected {token.describe()}", token)

    def _list(self, opener: Token) -> Literal:
        """A list of literals; `[a, b,]` may end with a comma."""
        items: list[Value] = []
        self._nested()  # `[[[...` recurses through _operand
        while not self._is("op", "]"):
            item = self._operand()
            if not isinstance(item, Literal) or isinstance(item.value, list):
                detail = "strings, numbers, true, false or null"
                raise syntax_error("list items must be plain values", item.start + 1, detail)
            items.append(item.value)
            if not self._is("op", ","):
                break
            self._next()
        close = self._expect("]", opener)
        self.depth -= 1
        return Literal(opener.start, close.end, items)

    def _name(self, token: Token) -> Node:
        name = str(token.value)
        if self._is("op", "("):
            if name not in FUNCTIONS:
                what = f"'{name}' is not a function" if name in KNOWN_NAMES else f"unknown function '{name}'"
                raise _error(what, token, f"allowed: {', '.join(FUNCTIONS)}")
            opener = self._next()
            if self._is("op", ")"):
                raise _error(f"{name}() takes 1 argument, got none", self.token)
            arg = self._or()
            if self._is("op", ","):
                raise _error(f"{name}() takes 1 argument, got more", self.token)
            close = self._expect(")", opener)
            return Call(token.start, close.end, name, arg)
        if name in FUNCTIONS:
            raise _error(f"'{name}' is a function", token, f"write {name}(...)")
        if name in SCALARS:
            if self._is("op", ".", "["):
                raise _error(f"'{name}' is a single value and has no fields", self.token)
            return Field(token.start, token.end, name)
        if name in MAPPINGS:
            return self._lookups(token)
        similar = difflib.get_close_matches(name, KNOWN_NAMES + FUNCTIONS, n=1)
        hint = f"did you mean '{similar[0]}'? " if similar else ""
        raise _error(f"unknown name '{name}'", token, f"{hint}known: {', '.join(KNOWN_NAMES)}")

    def _lookups(self, token: Token) -> Field:
        name = str(token.value)
        keys: list[str] = []
        end = token.end
        # answers hold flat values; hidden fields and metadata may nest (metadata.a.b).
        while self._is("op", ".", "[") and (name != "answers" or not keys):
            accessor = self._next()
            key = self._next()
            if accessor.value == "." and key.kind not in ("name", "kw"):
                raise _error(f"expected a field name after '.', found {key.describe()}", key)
            if accessor.value == "[":
                if key.kind != "str":
                    raise _error(f"{name}[...] takes a quoted name", key, f"like {name}['Label']")
                key = Token(key.kind, key.value, key.start, self._expect("]", accessor).end)
            keys.append(str(key.value))
            end = key.end
        if not keys:
            raise _error(f"'{name}' needs a field", token, f"{name}['Label'] or {name}.key")
        return Field(token.start, end, name, tuple(keys))


def _literal_pattern(node: Literal) -> Pattern:
    """Compile a literal `matches` pattern once, so one RE2 cannot run fails at check time."""
    if not isinstance(node.value, str):
        raise syntax_error("'matches' needs a quoted pattern", node.start + 1)
    try:
        return compile_pattern(node.value)
    except PatternError as exc:
        # Patterns in connectors.yaml are the admin's own text: the detail may quote them.
        raise syntax_error("invalid regular expression", node.start + 1, exc.detail) from None


def _respan(node: Node, start: int, end: int) -> Node:
    """The same node, spanning its parentheses too (so messages quote `(a or b)` whole)."""
    return dataclasses.replace(node, start=start, end=end)
