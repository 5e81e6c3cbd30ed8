"""`hookhub add source NAME --provider P`: a new source in connectors.yaml, ready to paste into the provider.

It generates a strong secret where the provider's scheme needs one, appends a commented block to
the config (every other byte of the file kept: hub/config/edit.py), checks the result as
`hookhub check` does (restoring the file if it does not load), and prints the webhook URL, where
the secret goes, the provider's docs page and the `hookhub send-test` line. The secret is printed
once on stdout, in the line that exports it, and never logged.

Missing arguments are asked for on a terminal; elsewhere they are a usage error.
Exit codes: 0 added, 1 the result would not load (file restored) or the file cannot be written,
2 usage (bad or taken name, unknown provider, missing argument).
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import connectors
from connectors.base import Connector
from hub.config.check import check_file
from hub.config.edit import EditError, append_entry, section_keys
from hub.config.loader import load_config
from hub.config.new_secret import (
    needs_generated_secret,
    new_secret,
    placeholder_secret,
    provider_issues_secret,
)
from hub.config.semantic import ID_PATTERN

ArgumentAdder = Callable[[argparse.ArgumentParser], None]
USAGE = 2
DEFAULT_BASE_URL = "http://127.0.0.1:8000"
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

WHERE_SECRET_GOES = {
    "standard-webhooks": "the signing secret (whsec_...)",
    "url-token": "the `?token=` at the end of the webhook URL (treat the whole URL as a secret)",
    "header-token": "the token header the provider sends with each request",
    "handshake-key-body": "the webhook's Handshake Key",
}


class Refused(Exception):
    """A usage problem; the message says what to change."""


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser], config_arg: ArgumentAdder) -> None:
    from hub.cli_add_destination import add_parser as add_destination_parser
    from hub.cli_add_route import add_parser as add_route_parser

    add = sub.add_parser("add", help="add a source (with a fresh secret), destination or route to the config")
    kinds = add.add_subparsers(dest="what", required=True, metavar="WHAT")
    source = kinds.add_parser("source", help="a new webhook URL for one provider's form(s)")
    source.add_argument("name", nargs="?", help="the source id: the URL becomes /hooks/NAME")
    source.add_argument("--provider", help="the provider id (`hookhub providers` lists them)")
    source.add_argument(
        "--secret-env",
        default=None,
        help="environment variable holding the secret (default HOOKHUB_<NAME>_SECRET)",
    )
    source.add_argument("--yes", action="store_true", help="write without asking for confirmation")
    config_arg(source)
    add_destination_parser(kinds, config_arg)
    add_route_parser(kinds, config_arg)


@dataclass(frozen=True)
class NewSource:
    name: str
    connector: Connector
    env_var: str
    secret: str | None
    """The generated secret, shown once; None where there is none or the provider issues it."""


def cmd_add(args: argparse.Namespace) -> int:
    if args.what == "route":
        from hub.cli_add_route import cmd_add_route

        return cmd_add_route(args)
    if args.what == "destination":
        from hub.cli_add_destination import cmd_add_destination

        return cmd_add_destination(args)
    return cmd_add_source(args)


def read_config(path: Path) -> tuple[bytes, str]:
    """The file's bytes (to restore) and text; Refused if it cannot be read."""
    try:
        original = path.read_bytes()
        return original, original.decode("utf-8")
    except OSError as exc:
        raise Refused(f"cannot read {path}: {exc.strerror or exc} (pass --config FILE)") from None
    except UnicodeDecodeError as exc:
        raise Refused(f"{path} is not UTF-8 text: {exc.reason}") from None


@dataclass(frozen=True)
class Edit:
    """What an `add` command writes: the whole new text, named for messages (`source 'x'`), loaded
    for the check with `environ` (None: the process's own), and where to read more if it fails."""

    text: str
    what: str
    environ: Mapping[str, str] | None = None
    hint: str = ""


def apply_edit(args: argparse.Namespace, path: Path, plan: Callable[[str], Edit]) -> int | None:
    """Read the config, `plan` the edit (Refused, EditError: exit 2), confirm, write it atomically,
    then load it as `hookhub check` does; undo the write if it does not load. None when the new file
    is written and loads, else the exit code (after saying why on stderr)."""
    interactive = sys.stdin.isatty()
    try:
        original, text = read_config(path)
        edit = plan(text)
        if not confirmed(args, path, interactive):
            print("hookhub add: nothing written", file=sys.stderr)
            return USAGE
    except (Refused, EditError) as exc:
        print(f"hookhub add: {exc}", file=sys.stderr)
        return USAGE
    try:
        write_atomically(path, edit.text.encode("utf-8"))
    except OSError as exc:
        print(f"hookhub add: cannot write {path}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    code, report = check_file(path, edit.environ)
    if code != 0:
        write_atomically(path, original)
        print(report, file=sys.stderr)
        print(
            f"hookhub add: the file would not load with {edit.what} added (problems above);"
            f" {path} is unchanged{edit.hint}",
            file=sys.stderr,
        )
        return 1
    return None


def cmd_add_source(args: argparse.Namespace) -> int:
    path = Path(args.config)
    planned: list[NewSource] = []

    def plan(text: str) -> Edit:
        new = _plan(args, text, sys.stdin.isatty())
        planned.append(new)
        return Edit(
            append_entry(text, "sources", new.name, _body(new), _comment(new)),
            f"source {new.name!r}",
            {**os.environ, new.env_var: new.secret or placeholder_secret(new.connector)},
            f". See docs/providers/{new.connector.provider}.md for the keys it needs.",
        )

    code = apply_edit(args, path, plan)
    if code is not None:
        return code
    [new] = planned
    environ = {**os.environ, new.env_var: new.secret or placeholder_secret(new.connector)}
    base = load_config(path, environ).server.public_base_url or DEFAULT_BASE_URL
    print("\n".join(instructions(new, path, base)))
    return 0


def _plan(args: argparse.Namespace, text: str, interactive: bool) -> NewSource:
    name = args.name or ask(interactive, "source id (the URL becomes /hooks/<id>)", "NAME")
    if not ID_PATTERN.fullmatch(name):
        raise Refused(
            f"bad source id {name!r}: use 1-64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    if name in section_keys(text, "sources"):
        raise Refused(f"source {name!r} already exists in {args.config}; choose another name")
    provider = args.provider or ask(interactive, "provider (`hookhub providers` lists them)", "--provider")
    try:
        connector = connectors.get_connector(provider)
    except connectors.UnknownProvider:
        close = difflib.get_close_matches(provider, connectors.provider_ids(), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise Refused(
            f"unknown provider {provider!r}; {hint}known providers: {', '.join(connectors.provider_ids())}"
        ) from None
    env_var = secret_variable(name, args.secret_env)
    secret = new_secret(connector) if needs_generated_secret(connector) else None
    return NewSource(name=name, connector=connector, env_var=env_var, secret=secret)


def secret_variable(name: str, given: str | None) -> str:
    """The environment variable a new entry's secret goes in: `given`, or HOOKHUB_<NAME>_SECRET."""
    env_var = given or f"HOOKHUB_{name.upper().replace('-', '_').replace('.', '_')}_SECRET"
    if not ENV_NAME.fullmatch(env_var):
        raise Refused(f"--secret-env {env_var!r} is not an environment variable name (letters, digits, '_')")
    return env_var


SOURCE_USAGE = "hookhub add source NAME --provider P [--secret-env VAR] [--config FILE] [--yes]"


def ask(interactive: bool, what: str, flag: str, usage: str = SOURCE_USAGE) -> str:
    """The answer to a prompt on a terminal; elsewhere a missing argument is a usage error."""
    if not interactive:
        raise Refused(f"missing {flag}; usage: {usage}")
    answer = input(f"{what}: ").strip()
    if not answer:
        raise Refused(f"no {flag} given")
    return answer


def confirmed(args: argparse.Namespace, path: Path, interactive: bool) -> bool:
    if args.yes:
        return True
    if not interactive:
        raise Refused("pass --yes to write the file when not on a terminal")
    return input(f"add it to {path}? [Y/n] ").strip().lower() in ("", "y", "yes")


def _body(new: NewSource) -> dict[str, str]:
    body = {"provider": new.connector.provider}
    if new.connector.requires_secret:
        # Only a reference: the value lives in the environment, never in the file.
        body["secret"] = f"${{{new.env_var}}}"
    return body


def _comment(new: NewSource) -> str:
    today = datetime.now(UTC).date().isoformat()
    docs = f"docs/providers/{new.connector.provider}.md"
    return f"{new.connector.title}, added by `hookhub add source` on {today}; {docs}"


def write_atomically(path: Path, data: bytes) -> None:
    """Replace the file in one step (a crash leaves the old or the new file, never half of one)."""
    temp = path.with_name(f".{path.name}.hookhub-add")
    temp.write_bytes(data)
    if path.exists():
        os.chmod(temp, path.stat().st_mode & 0o7777)
    os.replace(temp, path)


def instructions(new: NewSource, path: Path, base_url: str) -> list[str]:
    """What to do next: export the secret, paste the URL and secret into the provider, send a test."""
    connector = new.connector
    url = f"{base_url.rstrip('/')}/hooks/{new.name}"
    lines = [f"Added source {new.name!r} ({connector.provider}) to {path}.", ""]
    if new.secret is not None:
        lines += [
            f"Its secret, shown this once (the file only names {new.env_var}); set it where the hub runs:",
            f"  export {new.env_var}={shlex.quote(new.secret)}",
            "",
        ]
    elif provider_issues_secret(connector):
        lines += [
            f"{connector.title} issues the secret: copy it from there and set it where the hub runs:",
            f"  export {new.env_var}='<the secret from {connector.title}>'",
            "",
        ]
    where = WHERE_SECRET_GOES.get(connector.scheme, "the webhook's signing secret")
    lines += [
        f"In {connector.title}:",
        f"  webhook URL: {url}" + ("?token=<the secret>" if connector.scheme == "url-token" else ""),
    ]
    if connector.requires_secret:
        lines.append(f"  secret:      {where}: the value of {new.env_var}")
    lines += [
        f"  setup steps: docs/providers/{connector.provider}.md",
        "",
        # A running hub reloads the file but reads its environment only at start.
        f"Then restart the hub with {new.env_var} set, and try it:"
        if connector.requires_secret
        else "Then, with the hub running (it reloads the file), try it:",
        f"  hookhub send-test {new.name} --config {shlex.quote(str(path))}",
    ]
    return lines


HANDLERS = {"add": cmd_add}
