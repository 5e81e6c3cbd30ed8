"""`hookhub test-route ROUTE --fixture FILE | --id ID`: what each destination would send, unsent.

It runs each destination's real `deliver` (the same code path as delivery up to the network)
with a FakeSender (hub/sender.py) that records requests instead of sending them, and an SMTP sender
that records messages, then prints them with every configured secret blanked out.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr, ValidationError
from yarl import URL

from connectors import get_connector
from connectors.base import InboundRequest, NormalizeContext
from hub.config.loader import ConfigError, load_config
from hub.config.models import HubConfig, RouteConfig
from hub.routing.plan import route_target
from hub.routing.when import WhenError, WhenSyntaxError, compile_when
from hub.sender import Answer, FakeSender, Request, json_content
from hub.spool.schema import SPOOL_FILE
from hub.store.location import SqliteStore
from hub.submission import Submission, parse_instant

REDACTED = "REDACTED"
_STAND_IN = Answer(
    200, {"content-type": "application/json"}, json_content({"ok": True, "id": "test-route", "results": []})
)
"""What every HTTP destination is answered in a dry run: a success of no particular kind."""


class TestRouteError(Exception):
    """The route, fixture or submission cannot be used; the message says what to fix."""


def _route(config: HubConfig, name: str) -> RouteConfig:
    for route in config.routes:
        if route.name == name:
            return route
    names = ", ".join(r.name for r in config.routes) or "none"
    raise TestRouteError(f"no route named {name!r}; routes: {names}")


def submission_from_fixture(path: Path, config: HubConfig, route: RouteConfig) -> Submission:
    """A fixture (tests/fixtures/providers/ format) normalized by its connector, or a Submission JSON file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise TestRouteError(f"{path}: cannot read a JSON fixture: {exc}") from None
    if "answers" in data and "body" not in data:
        try:
            return Submission.model_validate(data)
        except ValidationError as exc:
            raise TestRouteError(f"{path}: not a Submission: {exc}") from None
    provider = data.get("provider")
    if not isinstance(provider, str) or not isinstance(data.get("body"), str):
        raise TestRouteError(f"{path}: expected a provider fixture (provider, headers, body) or a Submission")
    sources = [s for s, cfg in config.sources.items() if cfg.provider == provider and route.matches_source(s)]
    source = sources[0] if sources else provider
    request = InboundRequest(
        method=data.get("method", "POST"),
        url=data.get("url", ""),
        headers={k.lower(): v for k, v in (data.get("headers") or {}).items()},
        body=data["body"].encode("utf-8"),
    )
    received = parse_instant(data["received_at"]) if data.get("received_at") else datetime.now(UTC)
    context = NormalizeContext(submission_id="test-route", source=source, received_at=received)
    return get_connector(provider).normalize(request, context)


def submission_from_spool(data_dir: Path, submission_id: str, config: HubConfig) -> Submission:
    from hub.routing.process import normalize_row
    from hub.spool.routing_store import load_inbox
    from hub.spool.schema import SPOOL_FILE
    from hub.spool.transactions import open_spool

    conn = open_spool(data_dir / SPOOL_FILE)
    try:
        rows = load_inbox(conn, [submission_id])
    finally:
        conn.close()
    if not rows:
        raise TestRouteError(f"no stored submission {submission_id!r} in {data_dir}")
    return normalize_row(config, rows[0])


def _secrets(settings: BaseModel) -> list[str]:
    found: list[str] = []
    for value in settings.__dict__.values():
        if isinstance(value, SecretStr):
            found.append(value.get_secret_value())
        elif isinstance(value, dict):
            found += [v.get_secret_value() for v in value.values() if isinstance(v, SecretStr)]
    return [s for s in found if s]


def _blank(text: str, secrets: list[str]) -> str:
    for secret in sorted(secrets, key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


AddArgument = Callable[[argparse.ArgumentParser], None]
"""hub.cli's `_data_dir_arg` / `_config_arg`: add one shared option to a subcommand's parser."""

_SECRET_HEADERS = (
    "authorization",
    "x-api-token",
    "api-key",
    "x-api-key",
    "x-postmark-server-token",
    "cookie",
)


def _show_http(request: Request, secrets: list[str]) -> list[str]:
    # The URL as aiohttp sends it: the params appended to the query (yarl is aiohttp's URL type).
    url = str(URL(request.url).extend_query(request.params)) if request.params else request.url
    lines = [f"{request.method} {_blank(url, secrets)}"]
    for name, value in request.headers.items():
        shown = REDACTED if name.lower() in _SECRET_HEADERS else _blank(value, secrets)
        lines.append(f"{name}: {shown}")
    body = (request.content or b"").decode("utf-8", errors="replace")
    with contextlib.suppress(ValueError):
        body = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
    return [*lines, "", _blank(body, secrets)]


def _show_email(message: EmailMessage, secrets: list[str]) -> list[str]:
    return [_blank(message.as_string(), secrets)]


async def _render(
    config: HubConfig, route: RouteConfig, submission: Submission, refused: list[str] | None = None
) -> list[tuple[str, list[str]]]:
    """(destination id, lines to print) per destination; `refused` collects the ids of those that
    would not send this submission (a template failing on it, say)."""
    from flows.destinations import get_destination
    from flows.destinations.base import DeliveryContext, DeliveryItem, Outcome
    from flows.destinations.file import FileConfig
    from flows.pacing import Pacer
    from flows.runtime import Runtime

    shown: list[tuple[str, list[str]]] = []
    runtime = Runtime(config=lambda: config, store=SqliteStore(Path(SPOOL_FILE)), data_dir=Path("."))
    for destination_id in route.destination_ids():
        destination = config.destinations[destination_id]
        settings = destination.settings
        sender = FakeSender(lambda _request: _STAND_IN)
        recorded = sender.requests
        emails: list[EmailMessage] = []

        async def smtp_send(
            message: EmailMessage, *_: Any, emails: list[EmailMessage] = emails, **__: Any
        ) -> None:
            emails.append(message)

        target = route_target(config, route.name, destination_id)
        item = DeliveryItem(
            key=f"{submission.id}.{destination_id}",
            submission=submission,
            route=route.name,
            template=target.template if target else None,
            mapping=target.map if target else None,
        )
        context = DeliveryContext(
            http=sender,
            pacer=Pacer(),
            destination_id=destination_id,
            record_link=runtime.record_link,
            extra={"smtp_send": smtp_send, "dry_run": True, "data_dir": "."},
        )
        if isinstance(settings, FileConfig):  # a file destination: shown as where it would append
            shown.append(
                (destination_id, [f"append to {settings.path}:", submission.model_dump_json(indent=2)])
            )
            continue
        try:
            outcomes = await get_destination(destination.type).deliver([item], settings, context)
        except Exception as exc:  # noqa: BLE001 - shown as the admin's problem, never a traceback
            reason = f"cannot render: {type(exc).__name__}: {exc}"
            outcomes = [Outcome(key=item.key, status="failed", reason=reason)]
        lines: list[str] = []
        secrets = _secrets(settings)
        for request in recorded:
            lines += _show_http(request, secrets) + [""]
        for message in emails:
            lines += _show_email(message, secrets) + [""]
        failed = [o for o in outcomes if o.status == "failed" and not recorded and not emails]
        if failed:
            lines.append(f"would not send: {_blank(failed[0].reason or 'no reason given', secrets)}")
            if refused is not None:
                refused.append(destination_id)
        shown.append((destination_id, lines or ["(nothing would be sent)"]))
    return shown


def cmd_test_route(args: argparse.Namespace) -> int:
    # Destinations log the stand-in answers as failures; nothing here is a real delivery.
    logging.getLogger("hookhub").setLevel(logging.CRITICAL)
    try:
        config = load_config(args.config)
        route = _route(config, args.route)
        if args.fixture:
            submission = submission_from_fixture(Path(args.fixture), config, route)
        elif args.id:
            submission = submission_from_spool(Path(args.data_dir), args.id, config)
        else:
            raise TestRouteError("say what to render: --fixture FILE or --id SUBMISSION_ID")
        submission, _ = submission.to_json()  # as the pipeline stores it: lone surrogates as U+FFFD
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except (TestRouteError, OSError) as exc:
        print(f"hookhub test-route: {exc}", file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001 - a connector's reason is what the admin needs
        print(f"hookhub test-route: cannot normalize the submission: {exc}", file=sys.stderr)
        return 2
    if route.when:
        try:
            matches = compile_when(route.when)(submission)
            print(f"when: {route.when!r} is {'true' if matches else 'false: a real run would not send this'}")
        except (WhenError, WhenSyntaxError) as exc:
            print(
                f"when: {route.when!r} cannot be evaluated: {exc} (a real run dead-letters this submission)"
            )
    refused: list[str] = []
    for destination_id, lines in asyncio.run(_render(config, route, submission, refused)):
        print(f"=== {destination_id} ({config.destinations[destination_id].type}) — not sent")
        print("\n".join(lines).rstrip())
    if refused:
        # Non-zero so a script checking a template change notices; the reasons are printed above.
        print(f"hookhub test-route: {', '.join(refused)} would not send this submission", file=sys.stderr)
        return 1
    return 0


def add_parser(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    data_dir_arg: AddArgument,
    config_arg: AddArgument,
) -> None:
    parser = sub.add_parser(
        "test-route", help="show what each destination of a route would send, without sending"
    )
    parser.add_argument("route", help="route name")
    parser.add_argument("--fixture", help="a provider fixture JSON file or a Submission JSON file")
    parser.add_argument("--id", help="a stored submission id")
    data_dir_arg(parser)
    config_arg(parser)
