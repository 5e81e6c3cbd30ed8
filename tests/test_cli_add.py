"""`hookhub add source` (issue 17): a new source appended to connectors.yaml, ready to paste.

Covers: the repository's own commented connectors.yaml keeps every byte outside the new block;
the result loads, passes `check` and accepts a `send-test` on a running hub; taken names,
unknown providers (did you mean) and bad names are refused with exit 2 and the file unchanged;
a result that would not load is undone; the secret is printed once on stdout and never logged;
prompts on a terminal, usage errors elsewhere; the edit keeps CRLF files and other layouts.
"""

from __future__ import annotations

import io
import logging
import re
import shutil
from pathlib import Path

import pytest

from hub.cli import main as cli
from hub.config.check import check_file
from hub.config.edit import EditError, append_entry, append_item
from hub.config.loader import load_config
from tests.harness import start_hub

REPO_CONFIG = Path(__file__).resolve().parent.parent / "connectors.yaml"
VAR = "HOOKHUB_CONTACT_FORM_SECRET"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    copy = tmp_path / "connectors.yaml"
    shutil.copyfile(REPO_CONFIG, copy)
    return copy


def _inserted(before: bytes, after: bytes) -> bytes:
    """The one run of whole lines `after` adds to `before`; fails if anything else changed."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    first = next((i for i, (a, b) in enumerate(zip(old, new, strict=False)) if a != b), len(old))
    added = len(new) - len(old)
    assert added > 0, "nothing was added"
    assert new[:first] + new[first + added :] == old, "bytes outside the new block changed"
    return b"".join(new[first : first + added])


def _secret(stdout: str) -> str:
    match = re.search(rf"^  export {VAR}=(\S+)$", stdout, re.MULTILINE)
    assert match, stdout
    return match.group(1)


def test_add_typeform_keeps_the_file_and_the_result_checks(
    config: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = config.read_bytes()

    code = cli(["add", "source", "contact-form", "--provider", "typeform", "--config", str(config), "--yes"])

    out, err = capsys.readouterr()
    assert code == 0, err
    block = _inserted(before, config.read_bytes()).decode()
    assert "  contact-form:\n    provider: typeform\n    secret: ${" + VAR + "}\n" in block
    assert re.search(r"^  # Typeform, added by `hookhub add source`", block, re.MULTILINE), block
    secret = _secret(out)
    assert len(secret) >= 43 and secret not in block  # 32 random bytes; only the ${VAR} is in the file
    # Printed once, on stdout only, never logged.
    assert out.count(secret) == 1 and secret not in err and secret not in caplog.text
    assert "http://127.0.0.1:8000/hooks/contact-form" in out
    assert "docs/providers/typeform.md" in out
    assert f"hookhub send-test contact-form --config {config}" in out

    environ = {VAR: secret}
    assert load_config(config, environ).sources["contact-form"].provider == "typeform"
    code, report = check_file(config, environ)
    assert code == 0, report


def test_the_added_source_accepts_a_send_test(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        cli(["add", "source", "contact-form", "--provider", "typeform", "--config", str(config), "--yes"])
        == 0
    )
    secret = _secret(capsys.readouterr().out)
    monkeypatch.setenv(VAR, secret)
    hub, server = start_hub(config, tmp_path / "data", environ={VAR: secret})
    try:
        code = cli(["send-test", "contact-form", "--config", str(config), "--url", server.url])
    finally:
        server.stop()
    out = capsys.readouterr().out
    assert code == 0, out
    assert "/hooks/contact-form -> 200" in out and "accepted" in out, out


def test_standard_webhooks_secret_and_public_base_url(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = config.read_text() + "\nserver:\n  public_base_url: https://hooks.example.com/\n"
    config.write_text(text)
    argv = ["add", "source", "signed", "--provider", "standard_webhooks", "--secret-env", "SIGNED_KEY"]
    assert cli([*argv, "--config", str(config), "--yes"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^  export SIGNED_KEY=whsec_[A-Za-z0-9+/]{43}=$", out, re.MULTILINE), out
    assert "https://hooks.example.com/hooks/signed" in out
    assert "secret: ${SIGNED_KEY}" in config.read_text()


def test_a_provider_issued_secret_is_not_made_up(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # HubSpot signs with its app's client secret: a generated one could never verify.
    before = config.read_bytes()
    argv = ["add", "source", "crm-form", "--provider", "hubspot", "--config", str(config), "--yes"]
    assert cli(argv) == 0
    out = capsys.readouterr().out
    assert "export HOOKHUB_CRM_FORM_SECRET='<the secret from HubSpot" in out, out
    assert "secret: ${HOOKHUB_CRM_FORM_SECRET}" in _inserted(before, config.read_bytes()).decode()


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["demo", "--provider", "typeform"], "source 'demo' already exists"),
        (["contact-form", "--provider", "typefrom"], "did you mean 'typeform'?"),
        (["contact form", "--provider", "typeform"], "bad source id 'contact form'"),
        ([".lead", "--provider", "typeform"], "bad source id"),
        (["lead", "--provider", "typeform", "--secret-env", "MY-VAR"], "not an environment variable name"),
        (["contact-form"], "missing --provider"),
        (["contact-form", "--provider", "typeform", "--no-yes"], None),
    ],
)
def test_refusals_exit_2_and_leave_the_file(
    config: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str | None
) -> None:
    before = config.read_bytes()
    if says is None:  # not a terminal and no --yes: refused rather than written unasked
        argv, says = argv[:-1], "pass --yes"
        code = cli(["add", "source", *argv, "--config", str(config)])
    else:
        code = cli(["add", "source", *argv, "--config", str(config), "--yes"])
    assert code == 2
    assert says in capsys.readouterr().err
    assert config.read_bytes() == before


def test_a_result_that_does_not_load_is_undone(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The Forms API watch needs keys of its own (service_account_email) that `add` cannot guess.
    before = config.read_bytes()
    code = cli(
        ["add", "source", "survey", "--provider", "google_forms_pubsub", "--config", str(config), "--yes"]
    )
    err = capsys.readouterr().err
    assert code == 1
    assert "service_account_email" in err and "is unchanged" in err, err
    assert config.read_bytes() == before
    assert not list(config.parent.glob(".*hookhub-add"))


def test_prompts_on_a_terminal(
    config: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    answers = iter(["leads", "tally", "y"])
    asked: list[str] = []

    def answer(prompt: str) -> str:
        asked.append(prompt)
        return next(answers)

    monkeypatch.setattr("sys.stdin", Terminal())
    monkeypatch.setattr("builtins.input", answer)
    assert cli(["add", "source", "--config", str(config)]) == 0
    assert len(asked) == 3 and "provider" in asked[1] and str(config) in asked[2], asked
    assert "  leads:\n    provider: tally\n    secret: ${HOOKHUB_LEADS_SECRET}\n" in config.read_text()
    assert "export HOOKHUB_LEADS_SECRET=" in capsys.readouterr().out


BODY = {"provider": "typeform", "secret": "${S}"}


def test_edit_keeps_crlf_and_indentation() -> None:
    text = "sources:\r\n    a:\r\n        provider: tally\r\n\r\n# routes next\r\nroutes: []\r\n"
    result = append_entry(text, "sources", "b", BODY, "new")
    block = "\r\n    # new\r\n    b:\r\n      provider: typeform\r\n      secret: ${S}\r\n"
    head, tail = "sources:\r\n    a:\r\n        provider: tally\r\n", "\r\n# routes next\r\nroutes: []\r\n"
    assert result == head + block + tail


def test_edit_appends_to_a_last_section_and_creates_a_missing_one() -> None:
    last = "routes: []\nsources:\n  a:\n    provider: tally"  # no final newline
    assert append_entry(last, "sources", "b", BODY, "c").endswith(
        "provider: tally\n\n  # c\n  b:\n    provider: typeform\n    secret: ${S}\n"
    )
    none = "routes: []\n"
    assert append_entry(none, "sources", "b", BODY, "c") == (
        "routes: []\n\nsources:\n  # c\n  b:\n    provider: typeform\n    secret: ${S}\n"
    )


def test_edit_refuses_a_flow_style_section() -> None:
    with pytest.raises(EditError, match="flow style"):
        append_entry("sources: {a: {provider: tally}}\n", "sources", "b", BODY, "c")


# --- add route -------------------------------------------------------------------------------------


def test_add_route_keeps_the_file_and_loads(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = config.read_bytes()
    when = "answers['How many tickets?'] > 2"
    argv = ["add", "route", "big", "--from", "demo", "--to", "local-file", "--when", when]
    assert cli([*argv, "--config", str(config), "--yes"]) == 0, capsys.readouterr().err
    block = _inserted(before, config.read_bytes()).decode()
    expected = f'  - name: big\n    from: [demo]\n    when: "{when}"\n    to: [local-file]\n'
    assert expected in block, block
    route = load_config(config).routes[-1]
    assert (route.name, route.from_, route.when, route.destination_ids()) == (
        "big",
        ["demo"],
        when,
        ["local-file"],
    )


@pytest.mark.parametrize(
    ("argv", "code", "says"),
    [
        (["demo-to-file", "--from", "demo", "--to", "local-file"], 2, "route 'demo-to-file' already exists"),
        (["r", "--from", "dmeo", "--to", "local-file"], 2, "did you mean 'demo'?"),
        (["r", "--from", "demo", "--to", "local-fil"], 2, "did you mean 'local-file'?"),
        (["r", "--from", "demo"], 2, "missing --to"),
        (["r", "--from", "demo", "--to", "local-file", "--when", "answers["], 1, "is unchanged"),
    ],
)
def test_add_route_refusals_leave_the_file(
    config: Path, capsys: pytest.CaptureFixture[str], argv: list[str], code: int, says: str
) -> None:
    before = config.read_bytes()
    assert cli(["add", "route", *argv, "--config", str(config), "--yes"]) == code
    assert says in capsys.readouterr().err
    assert config.read_bytes() == before


def test_edit_appends_list_items_at_the_list_indentation() -> None:
    text = "routes:\n- name: a\n  from: [b]\n  to: [c]\n"
    item = {"name": "x", "from": ["y", "z"], "to": ["c"]}
    assert (
        append_item(text, "routes", item, "new") == text + "\n# new\n- name: x\n  from: [y, z]\n  to: [c]\n"
    )
    created = append_item("sources: {}\n", "routes", item, "new")
    assert created == "sources: {}\n\nroutes:\n  # new\n  - name: x\n    from: [y, z]\n    to: [c]\n"


# --- add destination -------------------------------------------------------------------------------


def test_add_webhook_destination_generates_its_signing_secret(
    config: Path, capsys: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    before = config.read_bytes()
    argv = ["add", "destination", "crm", "--type", "webhook", "--set", "url=https://crm.example.com/hooks"]
    assert cli([*argv, "--set", "timeout=20", "--config", str(config), "--yes"]) == 0
    out = capsys.readouterr().out
    match = re.search(r"^  export HOOKHUB_CRM_SECRET=(whsec_\S+)$", out, re.MULTILINE)
    assert match, out
    block = _inserted(before, config.read_bytes()).decode()
    assert "  crm:\n    type: webhook\n    url: https://crm.example.com/hooks\n    timeout: 20\n" in block
    assert "    secret: ${HOOKHUB_CRM_SECRET}\n" in block and match.group(1) not in block
    assert out.count(match.group(1)) == 1 and match.group(1) not in caplog.text
    loaded = load_config(config, {"HOOKHUB_CRM_SECRET": match.group(1)})
    assert loaded.destinations["crm"].type == "webhook"
    assert "docs/destinations/webhook.md" in out


def test_add_destination_takes_lists_as_yaml(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["add", "destination", "mail", "--type", "smtp", "--set", "host=smtp.example.com"]
    argv += ["--set", "from=hub@example.com", "--set", "to=[ops@example.com, sales@example.com]"]
    assert cli([*argv, "--config", str(config), "--yes"]) == 0, capsys.readouterr().err
    assert "    to: [ops@example.com, sales@example.com]\n" in config.read_text()
    load_config(config)


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (
            ["local-file", "--type", "file", "--set", "path=x.jsonl"],
            "destination 'local-file' already exists",
        ),
        (["s", "--type", "slak"], "did you mean 'slack'?"),
        (["mail", "--type", "smtp"], "a smtp destination needs from, to, host"),
        (["bad id", "--type", "file"], "bad destination id"),
        (["f", "--type", "file", "--set", "path"], "write KEY=VALUE"),
    ],
)
def test_add_destination_refusals_leave_the_file(
    config: Path, capsys: pytest.CaptureFixture[str], argv: list[str], says: str
) -> None:
    before = config.read_bytes()
    assert cli(["add", "destination", *argv, "--config", str(config), "--yes"]) == 2
    assert says in capsys.readouterr().err
    assert config.read_bytes() == before


def test_add_destination_that_does_not_load_is_undone(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = config.read_bytes()
    argv = ["add", "destination", "crm", "--type", "webhook", "--set", "url=ftp://nowhere"]
    assert cli([*argv, "--config", str(config), "--yes"]) == 1
    assert "is unchanged" in capsys.readouterr().err
    assert config.read_bytes() == before
