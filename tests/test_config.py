"""connectors.yaml loading: every problem is `FILE:LINE:COL: key.path: message`, all at once."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ConfigDict

import connectors
from connectors import UnknownProvider
from connectors.base import NoOptions
from flows.destinations import UnknownDestinationType
from flows.destinations.file import FileConfig
from hub.config.check import check_file
from hub.config.envsubst import substitute
from hub.config.loader import ConfigError, load_config, load_config_with_warnings
from hub.config.semantic import SOURCE_KEYS

REPO = Path(__file__).resolve().parents[1]

VALID = """\
sources:
  contact-form:
    provider: typeform
    secret: ${TYPEFORM_SECRET}
  signed:
    provider: standard_webhooks
    secret: [whsec_b2xk, whsec_bmV3]
destinations:
  out:
    type: file
    path: out.jsonl
routes:
  - name: all
    from: "*"
    to: [out]
  - name: leads
    from: contact-form
    when: "answers['How many tickets?'] > 2"
    to:
      - destination: out
        template: short
"""


def write(tmp_path: Path, text: str, name: str = "connectors.yaml") -> str:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def problems(path: str, environ: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ or {})
    return [str(p) for p in caught.value.problems]


def only_problem(path: str, environ: dict[str, str] | None = None) -> str:
    found = problems(path, environ)
    assert len(found) == 1, found
    return found[0]


def test_valid_config_loads(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, VALID), {"TYPEFORM_SECRET": "tf-secret"})
    assert config.sources["contact-form"].secrets == ["tf-secret"]
    assert config.sources["signed"].secrets == ["whsec_b2xk", "whsec_bmV3"]
    assert isinstance(config.sources["contact-form"].options, NoOptions)
    settings = config.destinations["out"].settings
    assert isinstance(settings, FileConfig) and settings.path == "out.jsonl"
    assert [r.name for r in config.routes] == ["all", "leads"]
    assert config.routes[0].matches_source("signed")
    assert config.routes[1].from_ == ["contact-form"]
    assert config.routes[1].destination_ids() == ["out"]
    assert config.server.max_body_bytes == 10 * 1024 * 1024


def test_shipped_example_loads_without_environment() -> None:
    config, warnings = load_config_with_warnings(REPO / "connectors.yaml", {})
    assert warnings == []
    assert config.sources["demo"].provider == "standard_webhooks"
    assert config.sources["demo"].secrets[0].startswith("whsec_")
    assert config.destinations["local-file"].settings.path == "deliveries.jsonl"  # type: ignore[attr-defined]
    assert config.routes[0].name == "demo-to-file"


def test_empty_file_is_an_empty_config_with_a_warning(tmp_path: Path) -> None:
    path = write(tmp_path, "# nothing yet\n")
    config, warnings = load_config_with_warnings(path, {})
    assert config.sources == {} and config.routes == []
    assert [str(w) for w in warnings] == [
        f"{path}:1:1: sources: no sources configured: the hub will not accept any webhook"
    ]


def test_unknown_top_level_key(tmp_path: Path) -> None:
    path = write(tmp_path, "sources: {}\nsourcs: {}\nbogus: 1\n")
    assert problems(path) == [
        f"{path}:2:1: sourcs: unknown key 'sourcs'; did you mean 'sources'?",
        (
            f"{path}:3:1: bogus: unknown key 'bogus'; "
            "known keys: admin, alerts, destinations, dispatch, retention, routes, server, sources, store"
        ),
    ]


def test_unknown_source_key_names_the_provider(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          contact-form:
            provider: typeform
            secret: s
            foo: 1
        """,
    )
    known = ", ".join(sorted({*SOURCE_KEYS, *connectors.get_connector("typeform").Options.model_fields}))
    assert only_problem(path) == (
        f"{path}:5:5: sources.contact-form.foo: unknown key 'foo' for provider typeform; known keys: {known}"
    )


def test_unknown_provider_lists_known_ones(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  x:\n    provider: nope\n")
    assert only_problem(path) == f"{path}:3:15: sources.x.provider: {UnknownProvider('nope')}"


def test_provider_requiring_a_secret(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  x:\n    provider: standard_webhooks\n")
    assert only_problem(path) == (
        f"{path}:2:3: sources.x.secret: missing required key 'secret' "
        "(provider standard_webhooks verifies requests with it)"
    )


def test_unknown_destination_type(tmp_path: Path) -> None:
    path = write(tmp_path, "destinations:\n  out:\n    type: nope\n    url: x\n")
    assert only_problem(path) == f"{path}:3:11: destinations.out.type: {UnknownDestinationType('nope')}"


def test_destination_missing_required_key(tmp_path: Path) -> None:
    path = write(tmp_path, "destinations:\n  out:\n    type: file\n    fsyncc: false\n")
    assert problems(path) == [
        f"{path}:2:3: destinations.out.path: missing required key 'path'",
        (
            f"{path}:4:5: destinations.out.fsyncc: unknown key 'fsyncc' for destination type file; "
            "did you mean 'fsync'?"
        ),
    ]


ROUTED = """\
sources:
  a: {provider: typeform, secret: s}
destinations:
  out: {type: file, path: out.jsonl}
routes:
  - name: r
    from: [a, ghost]
    to: [out, nowhere, {destination: gone}]
"""


def test_route_references_missing_source_and_destinations(tmp_path: Path) -> None:
    path = write(tmp_path, ROUTED)
    assert problems(path) == [
        f"{path}:7:15: routes[r].from[1]: unknown source 'ghost'; defined sources: a",
        f"{path}:8:15: routes[r].to[1]: unknown destination 'nowhere'; defined destinations: out",
        f"{path}:8:38: routes[r].to[2].destination: unknown destination 'gone'; defined destinations: out",
    ]


def test_route_errors_from_the_models(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          a: {provider: typeform, secret: s}
        routes:
          - from_typo: a
            to: [5]
          - name: empty-when
            from: a
            when: ""
            to: []
        """,
    )
    assert problems(path) == [
        f"{path}:4:5: routes[0].name: missing required key 'name'",
        f"{path}:4:5: routes[0].from_typo: unknown key 'from_typo'; did you mean 'from'?",
        f"{path}:5:10: routes[0].to[0]: expected a string or mapping",
        (
            f"{path}:8:5: routes[empty-when].when: empty condition: "
            "remove `when` to route every submission, or write one"
        ),
        f"{path}:9:9: routes[empty-when].to: must not be empty",
    ]


def test_duplicate_source_id(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          contact-form:
            provider: typeform
            secret: first-secret-value
          contact-form:
            provider: typeform
            secret: second-secret-value
        routes:
          - {name: r, from: "*", to: []}
        """,
    )
    found = problems(path)
    assert (
        found[0] == f"{path}:5:3: sources.contact-form: duplicate id 'contact-form' (first defined at line 2)"
    )
    assert not any("secret-value" in p for p in found), "values may be secrets and are never printed"


def test_duplicate_route_name_and_route_key(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          a: {provider: typeform, secret: s}
        destinations:
          out: {type: file, path: out.jsonl}
        routes:
          - name: r
            from: a
            to: [out]
          - name: r
            from: a
            from: "*"
            to: [out]
        """,
    )
    assert problems(path) == [
        f"{path}:9:11: routes[r].name: duplicate route name 'r' (first defined at line 6)",
        f"{path}:11:5: routes[r].from: duplicate key 'from' (first defined at line 10)",
    ]


def test_yaml_syntax_error(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  a:\n    provider: typeform\n   secret: s\n")
    assert only_problem(path) == (
        f"{path}:4:4: invalid YAML: expected <block end>, but found '<block mapping start>' "
        "(while parsing a block mapping at line 2)"
    )


def test_missing_environment_variable(tmp_path: Path) -> None:
    path = write(
        tmp_path, "sources:\n  contact-form:\n    provider: typeform\n    secret: ${TYPEFORM_SECRET}\n"
    )
    assert only_problem(path) == (
        f"{path}:4:13: sources.contact-form.secret: environment variable TYPEFORM_SECRET is not set "
        "(use ${TYPEFORM_SECRET:-default} for a default)"
    )


def test_environment_defaults_and_escapes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          a:
            provider: typeform
            secret: ["${UNSET:-fallback}", "pa$$word", "${SET}", "${EMPTY:-was-empty}", "$plain"]
            description: "${UNSET:-}"
            max_body_bytes: ${LIMIT:-1024}
        """,
    )
    config = load_config(path, {"SET": "from-env", "EMPTY": ""})
    source = config.sources["a"]
    assert source.secrets == ["fallback", "pa$word", "from-env", "was-empty", "$plain"]
    assert source.description == ""
    assert source.max_body_bytes == 1024


def test_empty_secret_from_an_empty_default(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  a:\n    provider: typeform\n    secret: ${TF:-}\n")
    assert only_problem(path) == (
        f"{path}:4:13: sources.a.secret: a secret must not be empty (is an environment variable unset?)"
    )


def test_empty_secret_list(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  a:\n    provider: typeform\n    secret: []\n")
    assert only_problem(path) == f"{path}:4:13: sources.a.secret: the list of secrets is empty"


def test_bad_source_id(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  forms/contact:\n    provider: typeform\n    secret: s\n")
    assert only_problem(path) == (
        f"{path}:2:3: sources.forms/contact: invalid source id 'forms/contact' "
        "(it is the URL /hooks/<source id>): "
        "use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
    )


def test_multiple_problems_reported_together_in_file_order(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          a:
            provider: nope
          b:
            provider: typeform
            secret: ${MISSING}
        destinations:
          out:
            type: file
        routes:
          - name: r
            from: [a, ghost]
            to: [out]
        dispatch:
          batch_sise: 10
        """,
    )
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    found = [str(p) for p in caught.value.problems]
    assert [(p.line, p.col) for p in caught.value.problems] == [(3, 15), (6, 13), (8, 3), (12, 15), (15, 3)]
    assert found[0].endswith(f"sources.a.provider: {UnknownProvider('nope')}")
    assert "environment variable MISSING is not set" in found[1]
    assert found[2] == f"{path}:8:3: destinations.out.path: missing required key 'path'"
    assert found[3] == f"{path}:12:15: routes[r].from[1]: unknown source 'ghost'; defined sources: a, b"
    assert (
        found[4] == f"{path}:15:3: dispatch.batch_sise: unknown key 'batch_sise'; did you mean 'batch_size'?"
    )
    assert str(caught.value) == "\n".join(found)


def test_top_level_must_be_a_mapping(tmp_path: Path) -> None:
    path = write(tmp_path, "- a\n- b\n")
    assert only_problem(path) == (
        f"{path}:1:1: expected a mapping of sections "
        "(sources, destinations, routes, server, dispatch, alerts, retention, admin, store) at the top level"
    )


def test_unreadable_file(tmp_path: Path) -> None:
    path = str(tmp_path / "absent.yaml")
    assert only_problem(path) == (
        f"{path}:1:1: cannot read: No such file or directory;"
        " name the config file with --config FILE, or set HOOKHUB_CONFIG to its path"
    )


def test_unused_source_and_destination_are_warnings(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          used: {provider: typeform, secret: Ygkrkldn2cO56EMYDPhPFNzV}
          idle: {provider: typeform, secret: Ygkrkldn2cO56EMYDPhPFNzV}
        destinations:
          out: {type: file, path: out.jsonl}
          spare: {type: file, path: spare.jsonl}
        routes:
          - {name: r, from: used, to: [out]}
        """,
    )
    _, warnings = load_config_with_warnings(path, {})
    assert [str(w) for w in warnings] == [
        (
            f"{path}:3:3: sources.idle: no route takes from this source: "
            "its submissions are stored, not delivered"
        ),
        f"{path}:6:3: destinations.spare: no route sends to this destination",
    ]


class _FormOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")
    form_id: str


class _FakeConnector:
    requires_secret = False
    Options = _FormOptions


@pytest.fixture
def fake_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    real = connectors.get_connector

    def get_connector(provider: str) -> Any:
        return _FakeConnector() if provider == "fake" else real(provider)

    monkeypatch.setattr(connectors, "get_connector", get_connector)


@pytest.mark.usefixtures("fake_provider")
def test_provider_options_are_validated_and_stored(tmp_path: Path) -> None:
    good = write(tmp_path, "sources:\n  a:\n    provider: fake\n    form_id: F1\n", "good.yaml")
    assert load_config(good, {}).sources["a"].options == _FormOptions(form_id="F1")
    bad = write(tmp_path, "sources:\n  a:\n    provider: fake\n    form_ib: F1\n", "bad.yaml")
    assert problems(bad) == [
        f"{bad}:4:5: sources.a.form_ib: unknown key 'form_ib' for provider fake; did you mean 'form_id'?",
    ]


def test_check_file_ok_with_warnings(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  idle: {provider: typeform, secret: Ygkrkldn2cO56EMYDPhPFNzV}\n")
    code, text = check_file(path, {})
    assert code == 0
    assert text.splitlines() == [
        f"{path}: OK — 1 source, 0 destinations, 0 routes",
        (
            f"warning: {path}:2:3: sources.idle: no route takes from this source: "
            "its submissions are stored, not delivered"
        ),
    ]


def test_check_file_shipped_example() -> None:
    assert check_file(REPO / "connectors.yaml", {}) == (
        0,
        f"{REPO / 'connectors.yaml'}: OK — 1 source, 1 destination, 1 route",
    )


def test_check_file_reports_problems(tmp_path: Path) -> None:
    path = write(tmp_path, "sources:\n  a: {provider: nope}\nextra: 1\n")
    code, text = check_file(path, {})
    assert code == 1
    assert text.splitlines() == [
        f"{path}:2:17: sources.a.provider: {UnknownProvider('nope')}",
        (
            f"{path}:3:1: extra: unknown key 'extra'; "
            "known keys: admin, alerts, destinations, dispatch, retention, routes, server, sources, store"
        ),
    ]


@pytest.mark.parametrize(
    ("text", "expected", "messages"),
    [
        ("a$$b", "a$b", 0),
        ("$$${X}", "$x", 0),
        ("${X:-d}-${Y:-d}", "x-d", 0),
        ("${Y}", "${Y}", 1),
        ("${1X}", "${1X}", 1),
        ("${X", "${X", 1),
        ("cost: $5", "cost: $5", 0),
    ],
)
def test_substitute(text: str, expected: str, messages: int) -> None:
    result, found = substitute(text, {"X": "x"})
    assert (result, len(found)) == (expected, messages)
