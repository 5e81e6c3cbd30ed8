"""Receiver details: per-form dedupe (Microsoft Forms, Wufoo) and HEAD probes of hook URLs."""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.harness import PROVIDER_FIXTURES, load_fixture, start_hub

FX = load_fixture(PROVIDER_FIXTURES / "microsoft_forms" / "minimal.json")


def test_same_response_number_on_two_forms_is_two_submissions(tmp_path: Path) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text(
        f"""
sources:
  msforms: {{provider: microsoft_forms, secret: "{FX["secret"]}"}}
destinations:
  out: {{type: file, path: out.jsonl}}
routes:
  - {{name: all, from: [msforms], to: [out]}}
""",
        encoding="utf-8",
    )
    _, server = start_hub(config, tmp_path / "data")
    headers = {k: v for k, v in FX["headers"].items() if k.lower() != "content-length"}
    other_form = FX["body"].replace(FX["expect"]["form_id"], "2otherFormId")

    def post(body: str) -> httpx.Response:
        return httpx.post(f"{server.url}/hooks/msforms", content=body.encode(), headers=headers)

    try:
        first, second, again = post(FX["body"]), post(other_form), post(other_form)
    finally:
        server.stop()
    assert first.json()["status"] == "accepted" and second.json()["status"] == "accepted"
    assert first.json()["id"] != second.json()["id"]
    assert again.json() == {"status": "duplicate", "id": second.json()["id"]}


def test_head_on_a_hook_url_answers_200_for_any_source(tmp_path: Path) -> None:
    """SurveyMonkey's HEAD check passes; the answer does not tell whether a source exists (issue 11)."""
    config = tmp_path / "connectors.yaml"
    config.write_text(
        f'sources:\n  msforms: {{provider: microsoft_forms, secret: "{FX["secret"]}"}}\n', encoding="utf-8"
    )
    _, server = start_hub(config, tmp_path / "data")
    try:
        assert httpx.head(f"{server.url}/hooks/msforms").status_code == 200
        assert httpx.head(f"{server.url}/hooks/nope").status_code == 200
        assert httpx.get(f"{server.url}/hooks/msforms").status_code == 405
    finally:
        server.stop()
