"""The JSON Schema of connectors.yaml (hub/config/schema.py, `hookhub schema`) for editors.

It must accept every config the loader accepts (else editors would flag working files), reject
typo'd keys and wrong types, know every key the models know, and match the shipped copy.
"""

from __future__ import annotations

import ast
import base64
import re
import textwrap
import tomllib
from collections.abc import Iterator, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

import connectors
from flows.destinations import destination_types, get_destination
from hub.cli import main
from hub.config.envsubst import resolve_tree
from hub.config.loader import ConfigError, parse_config
from hub.config.models import HubConfig, RouteConfig, SourceConfig
from hub.config.positions import YamlSyntaxError, parse_yaml
from hub.config.schema import config_schema, render

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "docs" / "connectors.schema.json"
PACKAGED = REPO / "hub" / "config" / "connectors.schema.json"
_CONFIG_LIKE = re.compile(r"^\s*(sources|destinations|routes):", re.MULTILINE)
_YAML_BLOCK = re.compile(r"```ya?ml\n(.*?)```", re.DOTALL)


class _Unresolved(Mapping[str, str]):
    """Every variable "set" to a reference to itself: interpolation leaves `${VAR}` (and turns
    `${VAR:-default}` into `${VAR}`) while turning ruamel's scalars into plain data."""

    def __getitem__(self, name: str) -> str:
        return f"${{{name}}}"

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


class _AnyEnvironment(Mapping[str, str]):
    """Every variable set, to a value strong enough for any secret check: tests' configs name
    variables their own test sets."""

    VALUE = "whsec_" + base64.b64encode(bytes(range(32))).decode()

    def __getitem__(self, name: str) -> str:
        return "https://hooks.example.com/services/T0/B0/x" if name.endswith("URL") else self.VALUE

    def __iter__(self) -> Iterator[str]:
        return iter(())

    def __len__(self) -> int:
        return 0


@cache
def validator() -> Draft202012Validator:
    schema = config_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def as_written(text: str) -> Any:
    """The file's data before interpolation: `${VAR}` references stay, as the editor sees them."""
    tree, _ = parse_yaml(text)
    data, _ = resolve_tree(tree, _Unresolved())
    return data


def errors(data: Any) -> list[str]:
    """Every error, with those inside `anyOf` alternatives (a section may also be null) too."""
    found: list[str] = []
    pending = list(validator().iter_errors(data))
    while pending:
        error = pending.pop()
        found.append(f"{'.'.join(map(str, error.absolute_path))}: {error.message}")
        pending.extend(error.context or [])
    return found


def _candidates() -> Iterator[tuple[str, str]]:
    for path in sorted((REPO / "tests").glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and _CONFIG_LIKE.search(node.value)
            ):
                yield f"{path.name}:{node.lineno}", textwrap.dedent(node.value)
    for doc in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for index, block in enumerate(_YAML_BLOCK.findall(doc.read_text(encoding="utf-8"))):
            if _CONFIG_LIKE.search(block):
                yield f"{doc.relative_to(REPO)}[{index}]", block


def loadable_configs() -> list[tuple[str, str]]:
    """Configs from tests' string constants and the docs' YAML blocks that the loader accepts
    (the rest are deliberately broken, templates, or fragments)."""
    found = [("connectors.yaml", (REPO / "connectors.yaml").read_text(encoding="utf-8"))]
    for where, text in _candidates():
        try:
            parse_config(text, where, _AnyEnvironment())
        except (ConfigError, YamlSyntaxError):
            continue
        except TypeError:
            # str.format templates (`{{type: webhook}}`): a mapping as a key, which the YAML
            # parser cannot hash; a template is not a config as written anyway.
            continue
        found.append((where, text))
    return found


LOADABLE = loadable_configs()


def test_enough_configs_are_collected() -> None:
    # A change that made the collector find nothing would make the next test pass vacuously.
    assert len(LOADABLE) >= 30, [where for where, _ in LOADABLE]
    assert any(where.startswith("README.md") for where, _ in LOADABLE)


@pytest.mark.parametrize(("where", "text"), LOADABLE, ids=[w for w, _ in LOADABLE])
def test_every_loadable_config_validates(where: str, text: str) -> None:
    assert errors(as_written(text)) == []


def test_the_example_config_points_editors_at_the_schema() -> None:
    first = (REPO / "connectors.yaml").read_text(encoding="utf-8").splitlines()[0]
    assert first == "# yaml-language-server: $schema=docs/connectors.schema.json"


def test_shipped_schema_is_what_hookhub_schema_prints(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema"]) == 0
    printed = capsys.readouterr().out
    assert printed == render()
    assert SHIPPED.read_text(encoding="utf-8") == printed, "run: hookhub schema > docs/connectors.schema.json"
    assert PACKAGED.read_text(encoding="utf-8") == printed, f"run: cp {SHIPPED.relative_to(REPO)} {PACKAGED}"


def test_the_packaged_schema_is_package_data() -> None:
    # Without this line in pyproject.toml a wheel would leave the file out and `--path` would fail.
    package_data = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]
    assert "config/connectors.schema.json" in package_data["package-data"]["hub"]


def test_schema_path_prints_the_installed_copy(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["schema", "--path"]) == 0
    printed = capsys.readouterr().out
    assert printed.endswith("\n") and printed.count("\n") == 1, printed
    path = Path(printed.strip())
    assert path.is_absolute()
    # Installed in editable mode for the tests: the package's copy is the repo's file.
    assert path == PACKAGED.resolve()
    assert path.read_text(encoding="utf-8") == render()


BASE = """\
sources:
  form:
    provider: typeform
    secret: ${TYPEFORM_SECRET}
destinations:
  out:
    type: webhook
    url: https://example.com/in
    secret: ${OUT_SECRET}
    timeout: ${OUT_TIMEOUT:-30}
routes:
  - name: all
    from: form
    to: [out]
"""


def test_the_base_config_is_valid() -> None:
    assert errors(as_written(BASE)) == []


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("    provider: typeform\n", "    provider: typeform\n    provdier: typeform\n", "sources.form"),
        ("    secret: ${TYPEFORM_SECRET}\n", "    secert: x\n", "sources.form"),
        ("    url: https", "    ulr: https", "destinations.out"),
        ("  - name: all\n", "  - name: all\n    wehn: x\n", "routes.0"),
        ("routes:", "rotues:", ""),
        ("    provider: typeform\n", "    provider: typefrom\n", "sources.form.provider"),
        ("    type: webhook\n", "    type: webhok\n", "destinations.out.type"),
        ("    timeout: ${OUT_TIMEOUT:-30}\n", "    timeout: soon\n", "destinations.out.timeout"),
        ("    timeout: ${OUT_TIMEOUT:-30}\n", "    timeout: 0\n", "destinations.out.timeout"),
        ("    to: [out]\n", "    to: out\n", "routes.0.to"),
        ("    to: [out]\n", "    to: [out]\n    backfill: maybe\n", "routes.0.backfill"),
        ("routes:", "dispatch:\n  max_flows: many\nroutes:", "dispatch.max_flows"),
        # A provider's own keys belong to that provider only.
        ("    provider: typeform\n", "    provider: typeform\n    auth: basic\n", "sources.form"),
        (
            "    provider: typeform\n",
            "    provider: typeform\n    reconcile: {survey_id: '1'}\n",
            "sources.form.reconcile",
        ),
        ("    type: webhook\n", "    type: webhook\n    host: smtp.example.com\n", "destinations.out"),
    ],
)
def test_a_mistake_fails_schema_validation(old: str, new: str, where: str) -> None:
    assert old in BASE
    found = errors(as_written(BASE.replace(old, new, 1)))
    assert found, "the schema accepted it"
    assert any(e.startswith(f"{where}:") for e in found), found


@pytest.mark.parametrize(
    "snippet",
    [
        "server:\n  max_connections: ${HUB_MAX_CONNECTIONS}\n",
        "admin:\n  token: ${HOOKHUB_ADMIN_TOKEN}\n",  # shorter than the token's minimum length
        "alerts:\n  to: [out]\n  throttle: 10m\n  failing_in_a_row: ${FAILS:-5}\n",
        "retention:\n  raw_requests: 30d\n  every: 3600\n",
    ],
)
def test_environment_references_and_durations_are_accepted(snippet: str) -> None:
    assert errors(as_written(snippet + BASE)) == []


def test_a_section_with_every_entry_commented_out_is_accepted() -> None:
    assert errors(as_written("sources:\n  # demo:\n  #   provider: typeform\nroutes:\n")) == []


def _keys(schema: dict[str, Any]) -> set[str]:
    return set(schema["properties"])


def _def(name: str) -> dict[str, Any]:
    found: dict[str, Any] = config_schema()["$defs"][name]
    return found


def _model_keys(model: Any) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


def test_top_level_keys_match_the_models() -> None:
    assert _keys(config_schema()) == _model_keys(HubConfig)


def test_route_keys_match_the_model() -> None:
    assert _keys(_def("RouteConfig")) == _model_keys(RouteConfig)


@pytest.mark.parametrize("provider", connectors.provider_ids())
def test_source_keys_match_the_models(provider: str) -> None:
    connector = connectors.get_connector(provider)
    expected = _model_keys(SourceConfig) | _model_keys(connector.Options)
    if connector.reconciler is None:
        expected.discard("reconcile")  # `hookhub check` rejects it for this provider
    variant = _def(f"Source.{provider}")
    assert _keys(variant) == expected
    assert variant["additionalProperties"] is False
    if connector.reconciler is not None:
        settings = variant["properties"]["reconcile"]["anyOf"][0]["$ref"].rsplit("/", 1)[1]
        assert _keys(_def(settings)) == _model_keys(connector.reconciler.Settings)


@pytest.mark.parametrize("type_name", destination_types())
def test_destination_keys_match_the_models(type_name: str) -> None:
    variant = _def(f"Destination.{type_name}")
    assert _keys(variant) == _model_keys(get_destination(type_name).Config) | {"type"}
    assert variant["additionalProperties"] is False


def test_keys_carry_the_models_descriptions() -> None:
    described = _def("Source.typeform")["properties"]["secret"]
    assert described["description"] == SourceConfig.model_fields["secret"].description


def _properties(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Every key's schema with where it is; `if:` clauses are skipped, as they only repeat the
    `provider` / `type` discriminator to pick a variant."""
    if isinstance(node, dict):
        for keyword, value in node.items():
            if keyword == "if":
                continue
            if keyword == "properties" and isinstance(value, dict):
                for name, schema in value.items():
                    yield f"{path}.{name}", schema
            yield from _properties(value, f"{path}/{keyword}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _properties(value, f"{path}[{index}]")


def test_there_are_keys_to_document() -> None:
    # Guards the next tests against a walk that finds nothing.
    assert len(list(_properties(config_schema()))) > 300


def test_every_key_has_hover_text_and_an_example() -> None:
    # What editors show on hover and offer in completion; issue 17 asks for both on every key.
    undescribed = [where for where, schema in _properties(config_schema()) if not schema.get("description")]
    unexampled = [
        where
        for where, schema in _properties(config_schema())
        if not schema.get("examples") and "default" not in schema
    ]
    assert undescribed == []
    assert unexampled == []


def test_every_example_is_valid_for_its_key() -> None:
    # A wrong example would teach the mistake the schema is there to catch.
    root = config_schema()
    wrong = []
    for where, schema in _properties(root):
        check = Draft202012Validator({**schema, "$defs": root["$defs"]})
        wrong += [
            f"{where}: {example!r}" for example in schema.get("examples", []) if not check.is_valid(example)
        ]
    assert wrong == []
