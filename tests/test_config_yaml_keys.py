"""A mapping or a list used as a YAML key (a `{{...}}` format template pasted as it is) is a
positioned problem, not a crash of the loader."""

from __future__ import annotations

import pytest

from hub.config.loader import ConfigError, parse_config


def test_a_mapping_holding_a_mapping_as_a_key_is_a_problem_with_its_position() -> None:
    # A test's f-string template, pasted unformatted: the key `{type: webhook, url: '{slow}'}` holds
    # the mapping `{slow}`, which cannot be hashed; the loader crashed with a TypeError on it.
    text = "destinations:\n  slow: {{type: webhook, url: '{slow}', secret: {whsec}, timeout: 60}}\n"
    with pytest.raises(ConfigError) as error:
        parse_config(text, "c.yaml", {})
    [problem] = [str(p) for p in error.value.problems]
    assert problem.startswith(
        "c.yaml:2:10: invalid YAML: a key must be a plain value, not a mapping or a list"
    )
