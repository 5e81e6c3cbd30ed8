"""Golden files: one fixture submission -> the exact request each destination type makes.

Rendered by `hookhub test-route`'s machinery, i.e. each destination's real `deliver` with a
recording transport. Values that change per run (signature timestamps, dates) are masked.
Regenerate after an intended change with HOOKHUB_UPDATE_GOLDENS=1 and review the diff.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

import pytest

from flows.destinations import destination_types
from hub.cli_test_route import _render, _route, submission_from_fixture
from hub.config.loader import load_config
from tests.test_cli_test_route import ALL_TYPES, FIXTURE

GOLDEN = Path(__file__).parent / "golden"
VOLATILE = [
    (
        re.compile(
            r"^(webhook-timestamp|webhook-signature|date|content-length): .*$", re.MULTILINE | re.IGNORECASE
        ),
        r"\1: <varies>",
    ),
    (re.compile(r"^Date: .*$", re.MULTILINE), "Date: <varies>"),
    (re.compile(r'boundary="=+[0-9]+=="'), 'boundary="<boundary>"'),
    (re.compile(r"^--=+[0-9]+==(--)?$", re.MULTILINE), "--<boundary>"),
    (re.compile(r"\"(sent_at|Date)\": \"[^\"]*\""), r'"\1": "<varies>"'),
]


def _mask(text: str) -> str:
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    config_path = tmp_path_factory.mktemp("goldens") / "connectors.yaml"
    config_path.write_text(ALL_TYPES, encoding="utf-8")
    config = load_config(config_path)
    route = _route(config, "everywhere")
    submission = submission_from_fixture(FIXTURE, config, route)
    out = {}
    for destination_id, lines in asyncio.run(_render(config, route, submission)):
        type_name = config.destinations[destination_id].type
        key = type_name if type_name != "slack" else destination_id.removeprefix("d-")
        out[key] = _mask("\n".join(lines).rstrip() + "\n")
    return out


def test_every_type_has_a_golden(rendered: dict[str, str]) -> None:
    assert {k.split("-")[0] for k in rendered} == set(destination_types())


@pytest.mark.parametrize(
    "name",
    [
        "file",
        "webhook",
        "slack-hook",
        "slack-api",
        "smtp",
        "sendgrid",
        "postmark",
        "hubspot",
        "salesforce",
        "pipedrive",
    ],
)
def test_request_matches_golden(rendered: dict[str, str], name: str) -> None:
    path = GOLDEN / f"{name}.txt"
    if os.environ.get("HOOKHUB_UPDATE_GOLDENS"):
        path.parent.mkdir(exist_ok=True)
        path.write_text(rendered[name], encoding="utf-8")
    assert rendered[name] == path.read_text(encoding="utf-8"), (
        f"{name}: regenerate with HOOKHUB_UPDATE_GOLDENS=1"
    )
