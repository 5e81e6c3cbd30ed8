"""Every provider fixture in tests/fixtures/providers against its connector.

Walks the folders so that new fixtures and new connectors are picked up without code changes;
fixtures of providers that have no connector module yet are reported as skipped. Format and
normalization rules: tests/fixtures/providers/README.md.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel

from connectors import get_connector, provider_ids
from connectors.base import (
    Connector,
    InboundRequest,
    NoOptions,
    NormalizeContext,
    VerificationFailed,
)
from hub.submission import parse_instant
from tests.harness import PROVIDER_FIXTURES

FIXTURES = PROVIDER_FIXTURES


@dataclass(frozen=True)
class FixtureSource:
    """The parts of a configured source a connector reads (connectors.base.SourceSettings)."""

    secrets: list[str]
    tolerance: int = 300
    public_url: str | None = None
    options: BaseModel = field(default_factory=NoOptions)


def _fixture_params() -> list[Any]:
    if not FIXTURES.is_dir():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"no fixtures at {FIXTURES}"))]
    known = set(provider_ids())
    params = []
    for path in sorted(FIXTURES.glob("*/*.json")):
        provider = path.parent.name
        marks = () if provider in known else (pytest.mark.skip(reason="no connector yet"),)
        params.append(pytest.param(path, id=f"{provider}/{path.stem}", marks=marks))
    return params


def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text(encoding="utf-8"))


def _request(fx: dict[str, Any]) -> InboundRequest:
    headers = {name.lower(): value for name, value in fx["headers"].items()}
    return InboundRequest(
        method=fx["method"], url=fx["url"], headers=headers, body=fx["body"].encode("utf-8")
    )


def _source(connector: Connector, fx: dict[str, Any]) -> FixtureSource:
    secrets = [fx["secret"]] if fx.get("secret") is not None else []
    options = connector.Options.model_validate(fx.get("verify_config") or {})
    return FixtureSource(secrets=secrets, public_url=fx["url"], options=options)


def _typed(answers: dict[str, Any]) -> dict[str, tuple[str, Any]]:
    # 3 == 3.0 == True in Python; the README requires the provider's JSON type to survive.
    return {label: (type(value).__name__, value) for label, value in answers.items()}


@pytest.mark.parametrize("path", _fixture_params())
def test_fixture(path: Path) -> None:
    fx = _load(path)
    expect = fx["expect"]
    connector = get_connector(path.parent.name)
    request = _request(fx)
    source = _source(connector, fx)
    received_at: datetime = parse_instant(fx["received_at"])
    now = received_at.timestamp()

    if not expect["verified"]:
        with pytest.raises(VerificationFailed):
            connector.verify(request, source, now)
        return
    connector.verify(request, source, now)

    envelope = connector.envelope(request)
    if not expect["is_submission"]:
        assert envelope.kind != "submission", envelope
        return
    assert envelope.kind == "submission", envelope.note
    assert envelope.event_id == expect["event_id"]
    assert envelope.form_id == expect["form_id"]
    if expect.get("duplicate_of"):
        original = _load(path.with_name(f"{expect['duplicate_of']}.json"))
        assert envelope.event_id == original["expect"]["event_id"]

    context = NormalizeContext(submission_id="sub_fixture", source="fixture-source", received_at=received_at)
    submission = connector.normalize(request, context)
    assert submission.id == "sub_fixture"
    assert submission.source == "fixture-source"
    assert submission.provider == connector.provider
    assert submission.form_id == expect["form_id"]
    assert submission.event_id == expect["event_id"]
    expected_at = parse_instant(expect["submitted_at"]) if expect["submitted_at"] else received_at
    assert submission.submitted_at == expected_at
    assert submission.email == expect["email"]
    got = {a.label: a.value for a in submission.answers}
    assert _typed(got) == _typed(expect["answers"])
