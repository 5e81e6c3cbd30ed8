"""`hookhub check` catches more mistakes (issue 17): misspelt required keys, weak or misshapen
secrets, a missing config file, unreachable routes and destinations nothing reaches."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from hub.cli import build_parser, main
from hub.config.check import check_file
from hub.config.loader import ConfigError, load_config, load_config_with_warnings
from hub.config.secret_strength import GENERATE, secret_problems

STRONG = "Ygkrkldn2cO56EMYDPhPFNzVfnn5cYa9"
WHSEC = "whsec_o1q69Dns5e0vpVTBjBpUavTx5EnaiDetHxCK7Lyy/Dw="
SLACK = "{type: slack, webhook_url: 'https://hooks.slack.com/services/T/B/x'}"


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "connectors.yaml"
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return str(path)


def problems(path: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        load_config(path, {})
    return [str(p) for p in caught.value.problems]


def warnings(path: str) -> list[str]:
    return [str(w) for w in load_config_with_warnings(path, {})[1]]


# --- 1. a misspelt required key is named as the typo, not only as missing -------------------------


def test_misspelt_keys_in_sources_destinations_and_routes(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        sources:
          signup:
            provdier: typeform
            secret: {STRONG}
        destinations:
          chat:
            tpye: slack
            webhook_url: https://hooks.slack.com/services/T/B/x
        routes:
          - name: r
            form: signup
            to: [chat]
        """,
    )
    assert problems(path) == [
        f"{path}:3:5: sources.signup.provdier: unknown key 'provdier'; did you mean 'provider'?",
        f"{path}:7:5: destinations.chat.tpye: unknown key 'tpye'; did you mean 'type'?",
        f"{path}:11:5: routes[r].form: unknown key 'form'; did you mean 'from'?",
    ]


def test_a_key_that_is_just_missing_is_still_missing(tmp_path: Path) -> None:
    path = write(tmp_path, f"sources:\n  signup:\n    secret: {STRONG}\n    colour: blue\n")
    assert problems(path) == [f"{path}:2:3: sources.signup.provider: missing required key 'provider'"]


# --- 2. secrets ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "secret", ["x", "short-but-ok-1", "aaaaaaaaaaaaaaaaaaaaaaaa", "abababababababababab"]
)
def test_weak_secrets_warn_without_showing_the_secret(tmp_path: Path, secret: str) -> None:
    path = write(
        tmp_path,
        f"""\
        sources:
          signup: {{provider: typeform, secret: "{secret}"}}
        destinations:
          chat: {SLACK}
        routes:
          - {{name: r, from: signup, to: [chat]}}
        """,
    )
    found = warnings(path)
    assert len(found) == 1, found
    assert found[0].startswith(f"{path}:2:40: sources.signup.secret: this secret ")
    assert GENERATE in found[0]
    assert secret not in found[0].removeprefix(f"{path}:2:40: sources.signup.secret:")


def test_each_secret_of_a_rotation_list_is_checked(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        sources:
          signup:
            provider: typeform
            secret: [{STRONG}, tooshort]
        destinations:
          chat: {SLACK}
        routes:
          - {{name: r, from: signup, to: [chat]}}
        """,
    )
    assert [w.split(": this secret")[0] for w in warnings(path)] == [f"{path}:4:48: sources.signup.secret[1]"]


def test_strong_secrets_are_quiet(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        sources:
          signup: {{provider: typeform, secret: {STRONG}}}
          signed: {{provider: standard_webhooks, secret: "{WHSEC}"}}
        destinations:
          chat: {SLACK}
        routes:
          - {{name: r, from: "*", to: [chat]}}
        """,
    )
    assert warnings(path) == []


def test_standard_webhooks_secret_of_the_wrong_shape_is_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """\
        sources:
          signed: {provider: standard_webhooks, secret: "whsec_not*base64!"}
        """,
    )
    [problem] = problems(path)
    assert problem.startswith(f"{path}:2:49: sources.signed.secret: Standard Webhooks secrets are `whsec_`")
    assert "not*base64" not in problem


def test_standard_webhooks_short_key_warns() -> None:
    [problem] = secret_problems("whsec_YWJj", "standard-webhooks")  # base64 of 3 bytes
    assert not problem.is_error
    assert "24 random bytes" in problem.message
    assert secret_problems(WHSEC, "standard-webhooks") == []
    assert [p.is_error for p in secret_problems("whsec_", "standard-webhooks")] == [True]


# --- 3. no config file -----------------------------------------------------------------------------


def test_missing_file_says_how_to_name_one(tmp_path: Path) -> None:
    code, text = check_file(tmp_path / "connectors.yaml", {})
    assert code == 1
    assert "--config" in text and "HOOKHUB_CONFIG" in text


def test_check_takes_the_file_from_config_or_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path, f"sources:\n  signup: {{provider: typeform, secret: {STRONG}}}\n")
    assert main(["check", "--config", path]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: OK")
    monkeypatch.setenv("HOOKHUB_CONFIG", path)
    assert main(["check"]) == 0
    assert capsys.readouterr().out.startswith(f"{path}: OK")
    monkeypatch.setenv("HOOKHUB_CONFIG", str(tmp_path / "gone.yaml"))
    assert main(["check"]) == 1
    assert "HOOKHUB_CONFIG" in capsys.readouterr().err


def test_check_help_names_the_environment_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["check", "--help"])
    assert "HOOKHUB_CONFIG" in capsys.readouterr().out


# --- 4. routes no source reaches, destinations nothing reaches -------------------------------------


def test_unreachable_route_and_its_destination_warn(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        sources:
          signup: {{provider: typeform, secret: {STRONG}}}
        destinations:
          chat: {SLACK}
          old-chat: {SLACK}
          spare: {SLACK}
        routes:
          - {{name: r, from: signup, to: [chat]}}
          - {{name: removed-form, from: [tally-2023], to: [old-chat]}}
        """,
    )
    assert warnings(path) == [
        f"{path}:5:3: destinations.old-chat: only routes no source can reach send to this destination:"
        " nothing will be delivered here",
        f"{path}:6:3: destinations.spare: no route sends to this destination",
        f"{path}:9:26: routes[removed-form].from: no configured source can reach this route: `from` names"
        ' no defined source and not "*" (defined sources: signup); it never runs',
    ]


def test_misspelt_source_in_from_stays_an_error(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        f"""\
        sources:
          signup: {{provider: typeform, secret: {STRONG}}}
        destinations:
          chat: {SLACK}
        routes:
          - {{name: r, from: sigunp, to: [chat]}}
        """,
    )
    assert problems(path) == [f"{path}:6:21: routes[r].from: unknown source 'sigunp'; did you mean 'signup'?"]
