"""`hookhub add destination NAME --type T [--set KEY=VALUE ...]`: a destination appended to connectors.yaml.

The type's required keys come from its pydantic `Config`: given with `--set` (values read as
YAML, so `--set 'to=[ops@example.com]'` is a list), asked for on a terminal, or refused with
the list of what is missing. A webhook destination's signing secret is generated (Standard
Webhooks, `whsec_`), written as `${VAR}` and printed once on stdout, never logged. The result is
checked as `hookhub check` does and the file restored if it does not load.
Exit codes as `hookhub add source`: 0 added, 1 the result would not load, 2 usage.
"""

from __future__ import annotations

import argparse
import base64
import difflib
import os
import secrets
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import YAMLError

from flows.destinations import UnknownDestinationType, destination_types, get_destination
from hub.cli_add import Edit, Refused, apply_edit, ask, secret_variable
from hub.config.edit import append_entry, section_keys
from hub.config.semantic import ID_PATTERN

DESTINATION_USAGE = "hookhub add destination NAME --type T [--set KEY=VALUE ...] [--config FILE] [--yes]"
GENERATED_SECRET_TYPES = frozenset({"webhook"})
"""Types whose `secret` hookhub signs with: the hub may make it up (the receiver is told it)."""


def add_parser(
    kinds: argparse._SubParsersAction[argparse.ArgumentParser],
    config_arg: Callable[[argparse.ArgumentParser], None],
) -> None:
    dest = kinds.add_parser("destination", help="a place submissions are delivered to")
    dest.add_argument("name", nargs="?", help="the destination id, used in routes' `to:`")
    dest.add_argument("--type", dest="dest_type", help=f"one of: {', '.join(destination_types())}")
    dest.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a key of the type (repeatable); keep secrets as ${VAR}",
    )
    dest.add_argument(
        "--secret-env", default=None, help="webhook: variable for the signing secret (HOOKHUB_<NAME>_SECRET)"
    )
    dest.add_argument("--yes", action="store_true", help="write without asking for confirmation")
    config_arg(dest)


@dataclass(frozen=True)
class NewDestination:
    name: str
    type: str
    body: dict[str, Any]
    env_var: str | None
    secret: str | None


def cmd_add_destination(args: argparse.Namespace) -> int:
    path = Path(args.config)
    planned: list[NewDestination] = []

    def plan(text: str) -> Edit:
        new = _plan(args, text, sys.stdin.isatty())
        planned.append(new)
        comment = f"added by `hookhub add destination` on {datetime.now(UTC).date().isoformat()}"
        environ = dict(os.environ)
        if new.env_var and new.secret:
            environ[new.env_var] = new.secret
        return Edit(
            append_entry(text, "destinations", new.name, new.body, comment),
            f"destination {new.name!r}",
            environ,
            f". See docs/destinations/{new.type}.md for its keys.",
        )

    code = apply_edit(args, path, plan)
    if code is not None:
        return code
    [new] = planned
    lines = [f"Added destination {new.name!r} ({new.type}) to {path}."]
    if new.env_var and new.secret:
        lines += [
            f"Its signing secret, shown this once (the file only names {new.env_var}); set it where the hub"
            " runs and give it to the receiver, which verifies requests with it:",
            f"  export {new.env_var}={shlex.quote(new.secret)}",
        ]
    lines += [
        f"Setup: docs/destinations/{new.type}.md",
        f"Route submissions to it: hookhub add route NAME --from SOURCE --to {new.name}",
    ]
    print("\n".join(lines))
    return 0


def _plan(args: argparse.Namespace, text: str, interactive: bool) -> NewDestination:
    name = args.name or ask(interactive, "destination id", "NAME", DESTINATION_USAGE)
    if not ID_PATTERN.fullmatch(name):
        raise Refused(
            f"bad destination id {name!r}: use 1-64 letters, digits, '.', '_' or '-',"
            " starting with a letter or digit"
        )
    if name in section_keys(text, "destinations"):
        raise Refused(f"destination {name!r} already exists in {args.config}; choose another name")
    type_name = args.dest_type or ask(interactive, "type", "--type", DESTINATION_USAGE)
    try:
        config_model = get_destination(type_name).Config
    except UnknownDestinationType:
        close = difflib.get_close_matches(type_name, destination_types(), n=1, cutoff=0.5)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise Refused(
            f"unknown destination type {type_name!r}; {hint}types: {', '.join(destination_types())}"
        ) from None
    body: dict[str, Any] = {"type": type_name, **_settings(args.settings)}
    env_var = secret = None
    if type_name in GENERATED_SECRET_TYPES and "secret" not in body:
        env_var = secret_variable(name, args.secret_env)
        # Standard Webhooks' format: whsec_ + base64 of the key bytes.
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        body["secret"] = f"${{{env_var}}}"
    required = [f.alias or n for n, f in config_model.model_fields.items() if f.is_required()]
    missing = [key for key in required if key not in body]
    if missing and not interactive:
        raise Refused(
            f"a {type_name} destination needs {', '.join(missing)}: pass --set KEY=VALUE for each"
            f" (docs/destinations/{type_name}.md)"
        )
    for key in missing:
        body[key] = _value(ask(interactive, f"{key} (keep secrets as ${{VAR}})", f"--set {key}=..."))
    return NewDestination(name=name, type=type_name, body=body, env_var=env_var, secret=secret)


def _settings(pairs: list[str]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise Refused(f"--set {pair!r}: write KEY=VALUE")
        settings[key.strip()] = _value(value)
    return settings


def _value(text: str) -> Any:
    """The value as YAML reads it (a number, a list), so that `--set to=[a@x.com]` is a list."""
    try:
        value = YAML(typ="safe").load(text)
    except YAMLError:
        return text
    return text if value is None else value
