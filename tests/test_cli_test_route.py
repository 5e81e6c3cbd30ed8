"""`hookhub test-route`: the requests a route would make, rendered by the real destinations, unsent."""

from __future__ import annotations

import json
from pathlib import Path

from connectors._schemes import verify_standard_webhooks
from connectors.base import InboundRequest
from hub.cli import main as cli
from tests.harness import PROVIDER_FIXTURES

FIXTURE = PROVIDER_FIXTURES / "typeform" / "full_event_registration.json"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/SECRETXYZ"
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CONFIG = f"""
sources:
  contact-form: {{provider: typeform, secret: x}}
destinations:
  team: {{type: slack, webhook_url: "{SLACK_URL}"}}
  crm: {{type: webhook, url: "https://crm.example.com/in", secret: {WHSEC}}}
  out: {{type: file, path: out.jsonl}}
routes:
  - name: leads
    from: [contact-form]
    when: "answers['How many tickets?'] > 5"
    to: [team, crm, out]
"""


def test_renders_every_destination_without_sending_and_without_secrets(tmp_path: Path, capsys) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    assert cli(["test-route", "leads", "--fixture", str(FIXTURE), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    assert "is false: a real run would not send this" in out
    assert "=== team (slack) — not sent" in out and "=== crm (webhook) — not sent" in out
    assert "=== out (file) — not sent" in out and "append to out.jsonl" in out
    assert "SECRETXYZ" not in out and WHSEC not in out
    assert "POST https://crm.example.com/in" in out
    assert '"Berlin PyConf 2026' in out  # the Slack header block, from the real renderer
    # The webhook part is the real signed request: its body and signature headers verify.
    crm = out.split("=== crm (webhook) — not sent\n", 1)[1].split("=== out", 1)[0]
    head, body = crm.split("\n\n", 1)
    headers = dict(line.split(": ", 1) for line in head.splitlines()[1:])
    sent = json.loads(body)
    assert sent["event_id"] == "01KVG79GJE6RRHM8TEPJ283Y60" and sent["source"] == "contact-form"
    raw = json.dumps(sent, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
    verify_standard_webhooks(
        InboundRequest("POST", "x", headers, raw), [WHSEC], 10**10, float(headers["webhook-timestamp"])
    )


def test_unknown_route_and_bad_fixture_are_clear_errors(tmp_path: Path, capsys) -> None:
    config = tmp_path / "connectors.yaml"
    config.write_text(CONFIG, encoding="utf-8")
    assert cli(["test-route", "nope", "--fixture", str(FIXTURE), "--config", str(config)]) == 2
    assert "no route named 'nope'; routes: leads" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text("{", encoding="utf-8")
    assert cli(["test-route", "leads", "--fixture", str(bad), "--config", str(config)]) == 2
    assert "cannot read a JSON fixture" in capsys.readouterr().err


ALL_TYPES = f"""
sources:
  contact-form: {{provider: typeform, secret: x}}
destinations:
  d-file: {{type: file, path: out.jsonl}}
  d-webhook: {{type: webhook, url: "https://crm.example.com/in", secret: {WHSEC}}}
  d-slack-hook: {{type: slack, webhook_url: "{SLACK_URL}"}}
  d-slack-api: {{type: slack, token: xoxb-1111-2222-SECRETTOKEN, channel: "#leads"}}
  d-smtp: {{type: smtp, host: smtp.example.com, username: u, password: SECRETPASS, from: hub@example.com,
           to: [sales@example.com]}}
  d-sendgrid: {{type: sendgrid, api_key: SG.SECRETKEY, from: hub@example.com, to: [sales@example.com]}}
  d-postmark: {{type: postmark, server_token: SECRETPOSTMARK, from: hub@example.com, to: [sales@example.com]}}
  d-hubspot: {{type: hubspot, token: pat-eu1-SECRETHUBSPOT}}
  d-salesforce: {{type: salesforce, instance_url: "https://acme.my.salesforce.com",
                 access_token: SECRETSF, external_id_field: Hookhub_Id__c,
                 map: {{LastName: "{{{{ name | last_name }}}}",
                       Company: "{{{{ answers['Company'] | default('n/a') }}}}",
                       Email: "{{{{ email }}}}"}}}}
  d-pipedrive: {{type: pipedrive, api_token: SECRETPIPEDRIVE}}
routes:
  - name: everywhere
    from: ["*"]
    to: [d-file, d-webhook, d-slack-hook, d-slack-api, d-smtp, d-sendgrid, d-postmark, d-hubspot,
         d-salesforce, d-pipedrive]
"""


def test_every_destination_type_renders_its_request(tmp_path: Path, capsys) -> None:
    from flows.destinations import destination_types

    config = tmp_path / "connectors.yaml"
    config.write_text(ALL_TYPES, encoding="utf-8")
    assert cli(["test-route", "everywhere", "--fixture", str(FIXTURE), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    sections = dict(part.split(" — not sent\n", 1) for part in out.split("=== ")[1:])
    rendered_types = {head.split("(")[1].rstrip(")") for head in sections}
    assert rendered_types == set(destination_types())
    for head, body in sections.items():
        assert "(nothing would be sent)" not in body and "would not send" not in body, (head, body)
        assert "SECRET" not in body, head
    assert "POST https://slack.com/api/chat.postMessage" in sections["d-slack-api (slack)"]
    assert "Subject:" in sections["d-smtp (smtp)"] and "renee.mueller@example.de" in sections["d-smtp (smtp)"]
    assert (
        "POST https://api.hubapi.com/crm/v3/objects/contacts/batch/upsert" in sections["d-hubspot (hubspot)"]
    )
    assert "/services/data/" in sections["d-salesforce (salesforce)"]
    assert "api.pipedrive.com" in sections["d-pipedrive (pipedrive)"]


def test_a_lone_surrogate_is_shown_as_the_pipeline_sends_it(tmp_path: Path, capsys) -> None:
    """JSON.stringify cut an emoji in half: the pipeline sends U+FFFD, so test-route shows it too."""
    fixture = json.loads(FIXTURE.read_text(encoding="utf-8"))
    assert '"Ren\\u00e9e' not in fixture["body"]
    fixture["body"] = fixture["body"].replace("Renée", "Ren\\ud83d", 1)
    assert "\\ud83d" in fixture["body"]
    cut = tmp_path / "cut_emoji.json"
    cut.write_text(json.dumps(fixture), encoding="utf-8")
    config = tmp_path / "connectors.yaml"
    config.write_text(CONFIG.replace("when: \"answers['How many tickets?'] > 5\"", ""), encoding="utf-8")
    assert cli(["test-route", "leads", "--fixture", str(cut), "--config", str(config)]) == 0
    out = capsys.readouterr().out
    crm = out.split("=== crm (webhook) — not sent\n", 1)[1].split("=== out", 1)[0]
    sent = json.loads(crm.split("\n\n", 1)[1])
    assert "Ren\ufffd" in json.dumps(sent, ensure_ascii=False)
    assert "cannot render" not in out
