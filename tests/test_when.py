"""The `when` condition language of routes: values, operators, errors, and `hookhub check`."""

from __future__ import annotations

import builtins
import time
from datetime import UTC, datetime
from itertools import product
from pathlib import Path
from typing import Any

import pytest
import re2

from hub.config.check import EXIT_INVALID, EXIT_OK, check_file
from hub.routing.when import FUNCTIONS, KNOWN_NAMES, Condition, WhenError, WhenSyntaxError, compile_when
from hub.submission import Answer, Submission


def submission(**overrides: Any) -> Submission:
    fields: dict[str, Any] = {
        "id": "req-1",
        "source": "event-signup",
        "provider": "tally",
        "form_id": "f-42",
        "form_title": "Summer party",
        "event_id": "evt-1",
        "submitted_at": datetime(2024, 5, 1, 12, 30, tzinfo=UTC),
        "email": "ann@example.com",
        "name": "Ann Smith",
        "answers": [
            Answer(key="tickets", label="How many tickets?", type="number", value="3"),
            Answer(key="count", label="Count", type="number", value=7),
            Answer(key="colours", label="Colours", type="multiple_choice", value=["Red", "Blue"]),
            Answer(key="vegan", label="Vegan?", type="checkbox", value=True),
            Answer(key="size", label="Größe 🎟", type="text", value="groß"),
            Answer(key="blank", label="Notes", type="text", value=""),
            Answer(key="dup", label="Count", type="number", value=99),  # a later duplicate label
        ],
        "hidden": {"utm_source": "newsletter", "utm campaign": "Été", "flags": {"vip": True}},
        "metadata": {"ip": "10.0.0.1", "attempt": 2},
    }
    fields.update(overrides)
    return Submission(**fields)


SUB = submission()


def run(text: str, sub: Submission = SUB) -> bool:
    return compile_when(text)(sub)


def syntax_error(text: str) -> WhenSyntaxError:
    with pytest.raises(WhenSyntaxError) as caught:
        compile_when(text)
    return caught.value


def eval_error(text: str, sub: Submission = SUB) -> WhenError:
    condition = compile_when(text)
    with pytest.raises(WhenError) as caught:
        condition(sub)
    return caught.value


def test_the_readme_example() -> None:
    condition = compile_when("answers['How many tickets?'] > 2 and email contains '@example.com'")
    assert isinstance(condition, Condition)
    assert condition.text == "answers['How many tickets?'] > 2 and email contains '@example.com'"
    assert condition(SUB) is True
    assert condition(submission(email="bob@other.org")) is False
    # A form without the question (or with it unanswered) is not "more than 2": false, no dead letter.
    assert condition(submission(answers=[])) is False
    guarded = compile_when("exists(answers['How many tickets?']) and answers['How many tickets?'] > 2")
    assert guarded(submission(answers=[])) is False


@pytest.mark.parametrize(
    "text",
    [
        "email == 'ann@example.com'",
        'name == "Ann Smith"',
        "form_id == 'f-42' and form_title == 'Summer party'",
        "source == 'event-signup' and provider == 'tally' and event_id == 'evt-1'",
        "submitted_at == '2024-05-01T12:30:00Z'",
        "submitted_at >= '2024-05-01' and submitted_at < '2024-05-02'",
        "answers['How many tickets?'] == '3'",
        'answers["How many tickets?"] == 3',
        "answers.tickets == 3",  # by key when no label matches
        "answers['tickets'] == 3",
        "answers.Count == 7",  # by label; the first answer with a label wins
        "answers['dup'] == 99",  # the duplicate is still reachable by its key
        "answers['Vegan?'] == true and answers['Vegan?'] == True",
        "hidden.utm_source == 'newsletter'",
        "hidden['utm campaign'] == 'Été'",
        "hidden.flags.vip",
        "hidden['flags']['vip'] == true",
        "metadata.ip startswith '10.'",
        "metadata.attempt == 2",
    ],
)
def test_values(text: str) -> None:
    assert run(text) is True


def test_answer_label_wins_over_key() -> None:
    sub = submission(
        answers=[
            Answer(key="Plan", label="Which plan?", type="text", value="by key"),
            Answer(key="q2", label="Plan", type="text", value="by label"),
        ]
    )
    assert run("answers.Plan == 'by label'", sub)
    assert run("answers['Which plan?'] == 'by key'", sub)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("answers.Count == 7", True),
        ("answers.Count == 7.0", True),
        ("answers.Count != 8", True),
        ("answers.Count != 7", False),
        ("answers.Count < 8", True),
        ("answers.Count < 7", False),
        ("answers.Count <= 7", True),
        ("answers.Count > 6.5", True),
        ("answers.Count > 7", False),
        ("answers.Count >= 7", True),
        ("'b' > 'a'", True),
        ("'B' < 'a'", True),  # text compares by code point, case-sensitively
        ("'Red' in answers.Colours", True),
        ("'red' in answers.Colours", False),
        ("'Green' not in answers.Colours", True),
        ("'Red' not in answers.Colours", False),
        ("'example' in email", True),
        ("'EXAMPLE' in email", False),
        ("answers.Colours contains 'Blue'", True),
        ("answers.Colours contains 'blue'", False),
        ("email contains '@example.com'", True),
        ("email contains '@Example.com'", False),
        ("email startswith 'ann@'", True),
        ("email startswith 'Ann@'", False),
        ("email endswith '.com'", True),
        ("email endswith '.org'", False),
        ("email matches '^[a-z]+@example\\.(com|org)$'", True),
        ("email matches 'example'", True),  # a search, not a full match
        ("email matches '^example'", False),
        ("email matches hidden.utm_source", False),  # a pattern from the submission
        ("true and true", True),
        ("true and false", False),
        ("false or true", True),
        ("false or false", False),
        ("not false", True),
        ("not true", False),
        ("(false or true) and not (true and false)", True),
        ("answers.Count in [1, 7, 'x']", True),
        ("email in ['a@b.c', 'ann@example.com']", True),
        ("answers.Colours == ['Red', 'Blue']", True),
        ("answers.Colours == ['Blue', 'Red']", False),
    ],
)
def test_operators(text: str, expected: bool) -> None:
    assert run(text) is expected


@pytest.mark.parametrize(("a", "b", "c"), list(product([False, True], repeat=3)))
def test_precedence_of_not_and_or(a: bool, b: bool, c: bool) -> None:
    sub = submission(hidden={"a": a, "b": b, "c": c})
    assert run("not hidden.a or hidden.b and hidden.c", sub) is ((not a) or (b and c))
    assert run("not (hidden.a or hidden.b) and hidden.c", sub) is ((not (a or b)) and c)
    assert run("hidden.a or hidden.b and not hidden.c", sub) is (a or (b and not c))


def test_precedence_of_comparisons() -> None:
    assert run("not answers.Count == 8")  # not (Count == 8)
    assert run("answers.Count == 7 and email endswith '.com' or false")
    assert run("false and true or true")  # (false and true) or true
    assert not run("false and (true or true)")


@pytest.mark.parametrize(
    "text",
    [
        "answers['Größe 🎟'] == 'groß'",
        "upper(answers['Größe 🎟']) == 'GROSS'",
        "lower('ÉTÉ') == hidden['utm campaign'] or lower(hidden['utm campaign']) == 'été'",
        "answers['Größe 🎟'] matches '^gr.ß$'",
        "len(answers['Größe 🎟']) == 4",
        "'ö' not in answers['Größe 🎟'] and 'ß' in answers['Größe 🎟']",
        "\"\\u00e9t\\u00e9\" == lower(hidden['utm campaign'])",
    ],
)
def test_unicode_labels_and_values(text: str) -> None:
    assert run(text) is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("answers['Company'] == null", True),
        ("answers['Company'] == None", True),
        ("answers['Company'] != null", False),
        ("not answers['Company']", True),
        ("not exists(answers['Company'])", True),
        ("exists(answers.Count)", True),
        ("exists(answers.Notes)", True),  # answered, but empty
        ("not answers.Notes", True),  # ... and falsy
        ("hidden.missing == null and hidden.flags.missing == null", True),
        ("hidden.utm_source.deeper == null", True),  # text has no fields: null, not an error
        ("metadata.nope == null", True),
        ("answers['Company'] == ''", False),
        ("'x' in answers['Company']", False),
        ("'x' not in answers['Company']", True),
        ("answers['Company'] contains 'x'", False),
        ("answers['Company'] in ['a', null]", True),
        ("answers['Company'] in 'text'", False),
        ("answers['Company'] startswith 'a' or answers['Company'] endswith 'a'", False),
        ("answers['Company'] matches '.*'", False),
        ("lower(answers['Company']) == null", True),
        ("len(answers['Company']) == 0", True),
        ("exists(answers['Company']) and number(answers['Company']) > 2", False),  # short-circuit
    ],
)
def test_missing_values_are_null(text: str, expected: bool) -> None:
    assert run(text) is expected


def test_missing_optional_submission_fields() -> None:
    sub = submission(email=None, name=None, form_id=None, form_title=None, hidden={}, metadata={})
    assert run("email == null and not name and form_id == null and not exists(form_title)", sub)
    assert not run("email contains '@'", sub)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("answers['How many tickets?'] > 2", True),  # "3" > 2
        ("answers['How many tickets?'] >= 3.0", True),
        ("answers['How many tickets?'] < 10", True),  # not "3" < "10" as text
        ("2 < answers['How many tickets?']", True),
        ("answers['How many tickets?'] == 3", True),
        ("answers['How many tickets?'] != 3", False),
        ("answers['How many tickets?'] in [1, 2, 3]", True),
        ("answers['How many tickets?'] == '3'", True),
        ("answers['How many tickets?'] == '3.0'", False),  # text with text: exact
        ("' 2.5 ' > 2", True),
        ("'-1e3' < 0", True),
        ("'abc' == 3", False),  # equality never errs
        ("'1_000' == 1000", False),  # only plain decimal spellings are numbers
        ("'nan' == 3", False),
        ("true == 1", False),  # booleans are not numbers
        ("1 == true", False),
        ("false == 0", False),
        ("number('4') == 4", True),
        ("number(' 2.5 ') == 2.5", True),
        ("number(answers.Count) == 7", True),
        ("-1 < 0 and -1.5 < -1", True),
    ],
)
def test_numbers_in_text_compare_as_numbers(text: str, expected: bool) -> None:
    assert run(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("lower(email) == 'ann@example.com'", True),
        ("lower(name) == 'ann smith'", True),
        ("upper(name) == 'ANN SMITH'", True),
        ("lower(answers.Colours) contains 'red'", True),
        ("upper(answers.Colours) == ['RED', 'BLUE']", True),
        ("len(answers.Colours) == 2", True),
        ("len(email) > 5", True),
        ("len(hidden.flags) == 1", True),
        ("exists(email)", True),
        ("exists(null)", False),
        ("exists(answers['Company'] or answers.Notes)", True),  # `or` gives the operand, ""
    ],
)
def test_functions(text: str, expected: bool) -> None:
    assert run(text) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("'it\\'s' == \"it's\"", True),
        (r"len('a\\b') == 3", True),
        (r"len('\n\t\r') == 3", True),
        (r"'\d' == '\\d'", True),  # unknown escapes keep the backslash
        (r"len('\u00e9') == 1", True),
        ("1.5 == 1.50 and 2e3 == 2000", True),
        ("[] == [] and not []", True),
        ("['a', 'b',] == ['a', 'b']", True),
        ("[1, -2.5, true, null, 'x'] contains null", True),
        ("True and not False and None == null", True),
        ("''", False),
        ("'x'", True),
        ("0", False),
        ("answers.Colours", True),
        ("answers.Count", True),
    ],
)
def test_literals_and_truthiness(text: str, expected: bool) -> None:
    assert run(text) is expected


def test_and_or_give_booleans_through_the_condition() -> None:
    assert run("answers.Notes or email") is True
    assert run("email and answers.Notes") is False
    assert run("(answers.Notes or email) == 'ann@example.com'")  # Python's operand result inside


@pytest.mark.parametrize(
    "text",
    [
        "answers['Company'] > 2",  # not asked at all
        "answers['Company'] <= 2",
        "2 < answers['Company']",
        "answers.Notes > 2",  # asked, left empty
        "answers.Notes >= ''",
        "number(answers['Company']) > 1",
        "number(answers.Notes) == 0",
        "answers['Company'] startswith 'A'",
        "email startswith answers['Company']",
        "answers['Company'] endswith 'Ltd'",
        "answers['Company'] matches 'Ltd$'",
        "answers['Company'] contains 'Ltd'",
        "answers.Notes contains 'x'",
        "'x' in answers['Company']",
    ],
)
def test_a_missing_or_empty_answer_makes_a_comparison_false_not_a_dead_letter(text: str) -> None:
    assert compile_when(text)(SUB) is False


@pytest.mark.parametrize(
    ("text", "col", "message"),
    [
        ("answers['x'] > 2 )", 18, "unexpected ')' at column 18"),
        ("email ==", 9, "unexpected end of condition at column 9"),
        ("(email == 'a'", 1, "'(' is never closed at column 1 (expected ')')"),
        ("email == 'a", 10, "unclosed string at column 10"),
        ("emial == 'x'", 1, "unknown name 'emial' at column 1 (did you mean 'email'? known: answers, email,"),
        ("email == 'a' 'b'", 14, "unexpected string at column 14"),
        ("email = 'a'", 7, "unexpected '=' at column 7 (use '==' to compare)"),
        ("email == 'a' && true", 14, "unexpected '&&' at column 14 (use 'and')"),
        ("email == 'a' || true", 14, "unexpected '||' at column 14 (use 'or')"),
        ("!exists(email)", 1, "unexpected '!' at column 1 (use 'not' or '!=')"),
        ("1 < answers.Count < 9", 3, "comparisons cannot be chained at column 3"),
        ("answers[0] == 1", 9, "answers[...] takes a quoted name at column 9"),
        ("answers == 1", 1, "'answers' needs a field at column 1"),
        ("hidden.", 8, "expected a field name after '.', found end of condition at column 8"),
        ("answers['a'", 8, "'[' is never closed at column 8 (expected ']')"),
        ("lower == 'a'", 1, "'lower' is a function at column 1"),
        ("lower()", 7, "lower() takes 1 argument, got none at column 7"),
        ("len(email, name)", 10, "len() takes 1 argument, got more at column 10"),
        ("email matches '(unclosed'", 15, "invalid regular expression at column 15 (missing ): (unclosed)"),
        ("email matches 3", 15, "'matches' needs a quoted pattern at column 15"),
        ("email in [name]", 11, "list items must be plain values at column 11"),
        ("12abc == 1", 1, "invalid number at column 1"),
        ("email == 'x' and", 17, "unexpected end of condition at column 17"),
        ("'\\u12' == 'x'", 2, "bad \\u escape at column 2"),
        ("email not 'x'", 7, "unexpected 'not' at column 7"),
        ("email $ 'x'", 7, "unexpected '$' at column 7"),
        ("   ", 1, "empty condition"),
        ("'Größe' == emial", 12, "unknown name 'emial' at column 12"),  # columns count characters
        ("(" * 200 + "true" + ")" * 200, 65, "condition nested too deeply at column 65"),
        ("not " * 200 + "true", 257, "condition nested too deeply"),
        ("[" * 200, 65, "condition nested too deeply"),
    ],
)
def test_syntax_errors_name_the_column(text: str, col: int, message: str) -> None:
    error = syntax_error(text)
    assert error.col == col, str(error)
    assert message in str(error)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "__import__('os')",
            "unknown function '__import__' at column 1 (allowed: exists, len, lower, number, upper)",
        ),
        ("eval('1')", "unknown function 'eval' at column 1"),
        ("open('/etc/passwd')", "unknown function 'open' at column 1"),
        ("str(email) == 'x'", "unknown function 'str' at column 1"),
        ("email(1)", "'email' is not a function at column 1"),
        ("os.system('ls')", "unknown name 'os' at column 1"),
        ("submission.__class__", "unknown name 'submission' at column 1"),
        ("__builtins__", "unknown name '__builtins__' at column 1"),
        ("email.__class__", "'email' is a single value and has no fields at column 6"),
        ("email.lower()", "'email' is a single value and has no fields at column 6"),
        ("email['x']", "'email' is a single value and has no fields at column 6"),
        ("lower(email).__class__", "unexpected '.' at column 13"),
        ("'abc'.upper()", "unexpected '.' at column 6"),
        ("answers.Count.real", "unexpected '.' at column 14"),
        ("answers['a']['b']", "unexpected '[' at column 13"),
        ("(email).__class__", "unexpected '.' at column 8"),
        ("lambda: 1", "unexpected ':' at column 7"),  # the tokenizer reads all first
        ("[x for x in answers]", "unknown name 'x' at column 2"),
        ("1 + 1", "unexpected '+' at column 3"),
        ("email if true else name", "unexpected 'if' at column 7"),
    ],
)
def test_code_is_rejected_at_compile_time(text: str, message: str) -> None:
    assert message in str(syntax_error(text))


def test_mapping_keys_are_dict_lookups_not_attributes() -> None:
    # `.key` on answers/hidden/metadata looks a key up; it never reaches Python attributes.
    assert run("answers.__class__ == null and hidden.__dict__ == null and metadata.keys == null")
    assert run("hidden.__class__", submission(hidden={"__class__": "yes"}))


def test_never_uses_python_eval(monkeypatch: pytest.MonkeyPatch) -> None:
    def forbidden(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("eval/exec/compile called")

    for name in ("eval", "exec", "compile"):
        monkeypatch.setattr(builtins, name, forbidden)
    condition = compile_when("lower(email) matches '^ann' and answers.Count >= 7 and not hidden.x")
    assert condition(SUB) is True


@pytest.mark.parametrize(
    ("text", "col", "message"),
    [
        ("email < 3", 1, "email < 3 (column 1): cannot compare text with number using '<'"),
        ("email > 2", 1, "cannot compare text with number using '>'; email is text that is not a number"),
        ("true > false", 1, "cannot compare boolean with boolean"),
        ("answers.Colours >= 2", 1, "cannot compare list with number"),
        ("answers.Count > 'abc'", 1, "'abc' is text that is not a number"),
        ("email == 'x' or number(email) > 1", 17, "number(email) (column 17): the text is not a number"),
        ("number(answers['Vegan?'])", 1, "number() does not take boolean"),
        ("lower(answers.Count) == 'x'", 1, "lower() does not take number"),
        ("len(answers.Count) == 1", 1, "len() does not take number"),
        ("answers.Count startswith '7'", 1, "'startswith' needs text on the left, got number"),
        ("email endswith 1", 1, "'endswith' needs text on the right, got number"),
        ("answers.Count matches '7'", 1, "'matches' needs text on the left, got number"),
        ("email matches answers.Count", 1, "'matches' needs a text pattern, got number"),
        ("email matches hidden.bad", 1, "invalid regular expression"),
        ("1 in email", 1, "text can only contain text, not number"),
        ("answers.Count contains 7", 1, "a number contains nothing"),
    ],
)
def test_evaluation_errors_say_which_and_why(text: str, col: int, message: str) -> None:
    error = eval_error(text, submission(hidden={"bad": "(["}))
    assert error.col == col
    assert message in str(error)
    assert "TypeError" not in str(error)


def test_evaluation_errors_do_not_quote_submission_values() -> None:
    error = eval_error(
        "answers.Notes > 2", submission(answers=[Answer(key="n", label="Notes", type="t", value="secret")])
    )
    assert "secret" not in str(error)


def test_literal_patterns_compile_once_at_compile_time(monkeypatch: pytest.MonkeyPatch) -> None:
    condition = compile_when("email matches '^ann'")
    calls: list[str] = []
    real = re2.compile

    def counting(pattern: str, options: Any = None) -> Any:
        calls.append(pattern)
        return real(pattern, options)

    monkeypatch.setattr(re2, "compile", counting)
    assert condition(SUB) and condition(SUB)
    assert calls == []
    # Patterns that only exist per submission are compiled when first seen, then cached.
    per_submission = compile_when("email matches hidden.p")
    assert per_submission(submission(hidden={"p": "^an{2}"}))
    assert per_submission(submission(hidden={"p": "^an{2}"}))
    assert calls == ["^an{2}"]


def test_exported_names() -> None:
    assert KNOWN_NAMES == (
        "answers", "email", "event_id", "form_id", "form_title", "hidden",
        "metadata", "name", "provider", "source", "submitted_at",
    )  # fmt: skip
    assert FUNCTIONS == ("exists", "len", "lower", "number", "upper")
    assert repr(compile_when("email")) == "Condition('email')"


CONFIG = """\
sources:
  event-signup: {provider: typeform, secret: s}
destinations:
  team-slack: {type: file, path: out.jsonl}
routes:
  - name: big-orders
    from: [event-signup]
    when: "answers['How many tickets?'] > 2 and emial contains '@example.com'"
    to: [team-slack]
  - name: unclosed
    from: "*"
    when: (email == 'a'
    to: [team-slack]
  - name: fine
    from: "*"
    when: lower(email) endswith '@example.com'
    to: [team-slack]
"""


def test_hookhub_check_reports_bad_conditions_at_the_when_value(tmp_path: Path) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(CONFIG, encoding="utf-8")
    code, text = check_file(path)
    assert code == EXIT_INVALID
    assert text.splitlines() == [
        (
            f"{path}:8:11: routes[big-orders].when: invalid condition: unknown name 'emial' at column 38 "
            "(did you mean 'email'? known: answers, email, event_id, form_id, form_title, hidden, metadata, "
            "name, provider, source, submitted_at)"
        ),
        (
            f"{path}:12:11: routes[unclosed].when: invalid condition: "
            "'(' is never closed at column 1 (expected ')')"
        ),
    ]


def test_hookhub_check_accepts_good_conditions(tmp_path: Path) -> None:
    path = tmp_path / "connectors.yaml"
    path.write_text(
        CONFIG.replace("emial", "email").replace("when: (email == 'a'", "when: (email == 'a')"),
        encoding="utf-8",
    )
    code, text = check_file(path)
    assert code == EXIT_OK, text
    assert "3 routes" in text


def test_matches_is_linear_in_the_text() -> None:
    # Python's re took over 120 s on this (catastrophic backtracking) and held the GIL throughout.
    condition = compile_when("answers.note matches '(a+)+$'")
    evil = submission(answers=[Answer(key="note", label="Note", type="text", value="a" * 31 + "!")])
    started = time.perf_counter()
    assert condition(evil) is False
    assert time.perf_counter() - started < 5  # a hang guard, not a benchmark: RE2 takes microseconds
    long_text = submission(answers=[Answer(key="note", label="Note", type="text", value="a" * 10**6 + "!")])
    assert condition(long_text) is False


@pytest.mark.parametrize(
    ("pattern", "feature"),
    [
        (r"(a)\\1", "backreferences"),
        (r"(?P<x>a)(?P=x)", "named backreferences"),
        ("a(?=b)", "lookahead"),
        ("a(?!b)", "lookahead"),
        ("(?<=a)b", "lookbehind"),
        ("(?<!a)b", "lookbehind"),
        ("(?>a+)b", "atomic groups"),
        ("a++b", "possessive quantifiers"),
        ("(a)?(?(1)b|c)", "conditionals"),
    ],
)
def test_patterns_re2_cannot_run_are_rejected_naming_the_feature(pattern: str, feature: str) -> None:
    error = syntax_error(f"email matches '{pattern}'")
    assert error.col == 15
    assert f"invalid regular expression at column 15 ({feature}" in str(error)
    assert "not supported: 'matches' runs RE2, which guarantees linear time" in str(error)


def test_pattern_hints_and_limits() -> None:
    assert "write \\z for the end of the text" in str(syntax_error("email matches 'com\\Z'"))
    assert compile_when("email matches 'com\\z'")(SUB)
    assert "pattern longer than 10000 characters" in str(syntax_error(f"email matches '{'a' * 10_001}'"))


def test_matches_reads_unicode_and_half_an_emoji() -> None:
    assert run("answers['Größe 🎟'] matches '^\\pL+$'")  # letters of any script: \pL (\w is ASCII)
    assert not run("answers['Größe 🎟'] matches '^\\w+$'")
    assert run("form_title matches '(?i)^SUMMER'")
    # A lone surrogate (an emoji cut in half) is matched as U+FFFD, not an error.
    cut = submission(answers=[Answer(key="n", label="Name", type="text", value="Ren\ud83d")])
    assert compile_when("answers.n matches '^Ren.$'")(cut)
    assert compile_when("answers.n matches '\ufffd'")(cut)


def test_a_pattern_from_the_submission_is_run_by_re2_and_never_quoted() -> None:
    evil = submission(hidden={"p": "(a+)+$", "bad": "(?=secret-lookahead)"}, email="a" * 31 + "!")
    assert compile_when("email matches hidden.p")(evil) is False
    error = eval_error("email matches hidden.bad", evil)
    assert "invalid regular expression: lookahead (?=...) and (?!...) not supported" in str(error)
    assert "secret" not in str(error)


def test_hookhub_check_rejects_a_pattern_re2_cannot_run(tmp_path: Path) -> None:
    path = tmp_path / "connectors.yaml"
    backreference = CONFIG.replace("when: (email == 'a'", "when: email matches '^(\\w+)@\\1$'")
    path.write_text(backreference, encoding="utf-8")
    code, text = check_file(path)
    assert code == EXIT_INVALID
    assert (
        f"{path}:12:11: routes[unclosed].when: invalid condition: invalid regular expression at column 15 "
        "(backreferences (\\1, \\g<1>, \\k<name>) not supported: 'matches' runs RE2, which guarantees "
        "linear time and so has no backreferences, lookaround, atomic groups, possessive quantifiers or "
        "conditionals)"
    ) in text.splitlines()
