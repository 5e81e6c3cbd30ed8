"""`hookhub send-test --alert KIND`: what an alert looks like, sent to the alert destinations.

Samples use made-up but realistic values (a destination `crm`, two reasons, a source `contact-
form`), marked as tests in their title so nobody on call acts on them. With `--dry-run` nothing is
sent: each alert destination's rendering is printed instead.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import get_args

from hub.alerts import messages
from hub.alerts.model import Alert, AlertNotSent
from hub.alerts.render import slack_text, webhook_payload
from hub.config.models import AlertKind, HubConfig

KINDS: tuple[AlertKind, ...] = get_args(AlertKind)


def sample(kind: AlertKind, now: float) -> Alert:
    """A made-up alert of `kind`, titled as a test."""
    reasons = {"receiver answered HTTP 500": 412, "could not connect (DNS, refused or TLS error)": 88}
    alert = {
        "dead_letters": lambda: messages.dead_letters("crm", 500, reasons, ["contact-form"], 3, now),
        "failing": lambda: messages.failing("crm", 5, ["receiver answered HTTP 503"], now),
        "disabled": lambda: messages.disabled("crm", "receiver answered HTTP 410 Gone", now),
        "stalled": lambda: messages.stalled("delivery", "120 submissions are waiting", 900, now),
        "silent": lambda: messages.silent("contact-form", 6 * 3600, now - 7 * 3600, now),
        "reload_rejected": lambda: messages.reload_rejected(
            "connectors.yaml:12:5: routes[all-leads].to[0]: unknown destination 'crn'", now
        ),
        "webhook": lambda: messages.webhook(
            "contact-form", "typeform", "disabled", "webhook 'hookhub' on form u6nXL7 is disabled", now
        ),
        "reconciled": lambda: messages.reconciled("contact-form", 12, 3600, now),
    }[kind]()
    return alert.model_copy(update={"title": f"TEST: {alert.title}"})


def preview(alert: Alert, type_name: str) -> str:
    """The message as the destination type would send it."""
    if type_name == "slack":
        return slack_text(alert)
    if type_name == "webhook":
        return json.dumps(webhook_payload(alert), indent=2, ensure_ascii=False)
    return f"Subject: {alert.subject()}\n\n{alert.text()}"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--alert",
        choices=KINDS,
        default=None,
        help="send a sample alert of this kind to the alert destinations",
    )
    parser.add_argument("--dry-run", action="store_true", help="with --alert: print it, send nothing")


def cmd_send_test_alert(args: argparse.Namespace) -> int:
    from hub.config.loader import ConfigError, load_config

    try:
        config = load_config(Path(args.config))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    if config.alerts is None:
        print(f"hookhub send-test: {args.config} has no `alerts:` section (README: Alerts)", file=sys.stderr)
        return 2
    kind: AlertKind = args.alert
    alert = sample(kind, time.time()).model_copy(update={"hub": config.server.public_base_url or "hookhub"})
    targets = config.alerts.destinations_of(kind)
    if args.dry_run:
        for dest_id in targets:
            type_name = config.destinations[dest_id].type
            print(f"--- {dest_id} ({type_name})\n{preview(alert, type_name)}")
        return 0
    failures = asyncio.run(_send(config, alert, targets))
    for dest_id in targets:
        print(f"alert {kind} -> {dest_id}: {failures.get(dest_id, 'sent')}")
    return 1 if failures else 0


async def _send(config: HubConfig, alert: Alert, targets: list[str]) -> dict[str, str]:
    import aiohttp

    from flows.destinations import get_destination
    from hub.sender import AiohttpSender

    failures: dict[str, str] = {}
    async with aiohttp.ClientSession() as session:
        sender = AiohttpSender(session)
        for dest_id in targets:
            destination = config.destinations[dest_id]
            try:
                await get_destination(destination.type).send_alert(alert, destination.settings, sender)
            except AlertNotSent as exc:
                failures[dest_id] = f"not sent: {exc.reason}"
    return failures
