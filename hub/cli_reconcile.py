"""`hookhub reconcile SOURCE` and `hookhub import SOURCE --since ...` (hub/reconcile/).

`reconcile` lists the form's responses through the provider's API in the source's window (or the
one given), shows the ones the spool lacks and stores them, to be delivered by the running hub
like any webhook (`--dry-run` only shows them). `import` brings in a form's history once, marked
`imported`: only routes with `backfill: true` deliver it.

Exit codes: 0 done (or nothing missing), 1 the provider's API could not be read or no spool,
2 usage (unknown source, no `reconcile:` settings).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime

import aiohttp

from connectors.reconciling import UnreadableResponse
from hub.cli_admin import open_spool_or_say
from hub.cli_submissions import USAGE, parse_instant
from hub.config.loader import ConfigError, load_config
from hub.config.models import HubConfig
from hub.reconcile.run import NotReconcilable, Origin, Progress, RunReport, reconcilable, reconcile_source
from hub.sender import AiohttpSender

ArgumentAdder = Callable[[argparse.ArgumentParser], None]
SHOWN = 50
"""Missing responses listed one per line; beyond that, a count."""


def add_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    data_dir_arg: ArgumentAdder,
    config_arg: ArgumentAdder,
) -> None:
    rec = sub.add_parser(
        "reconcile",
        help="list a source's responses through the provider's API; store those whose webhook never came",
    )
    rec.add_argument("source", help="a source id with `reconcile:` settings")
    rec.add_argument(
        "--since",
        default=None,
        help="2026-12-01, 2026-12-01T09:30Z or an age (7d); default: the source's watermark",
    )
    rec.add_argument("--until", default=None, help="end of the window (excluded); default: now less `settle`")
    rec.add_argument("--dry-run", action="store_true", help="show what is missing; store nothing")
    imp = sub.add_parser(
        "import",
        help="bring in a form's past responses once (delivered only by routes with `backfill: true`)",
    )
    imp.add_argument("source", help="a source id with `reconcile:` settings (the API credentials)")
    imp.add_argument("--since", required=True, help="2026-12-01, 2026-12-01T09:30Z or an age such as 90d")
    imp.add_argument("--until", default=None, help="end of the window (excluded); default: now less `settle`")
    imp.add_argument("--dry-run", action="store_true", help="show what would be imported; store nothing")
    for parser in (rec, imp):
        data_dir_arg(parser)
        config_arg(parser)


def cmd_reconcile(args: argparse.Namespace) -> int:
    return _run(args, "reconciled")


def cmd_import(args: argparse.Namespace) -> int:
    return _run(args, "imported")


def _run(args: argparse.Namespace, origin: Origin) -> int:
    name = f"hookhub {args.command}"
    try:
        config = load_config(args.config)
    except (ConfigError, OSError) as exc:
        print(f"{name}: cannot load {args.config}: {exc}", file=sys.stderr)
        return USAGE
    try:
        reconcilable(config, args.source)
    except NotReconcilable as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return USAGE
    now = time.time()
    try:
        since = parse_instant(args.since, now) if args.since else None
        until = parse_instant(args.until, now) if args.until else None
    except argparse.ArgumentTypeError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return USAGE
    conn = open_spool_or_say(args)
    if conn is None:
        return 1
    try:
        with _progress_bar(sys.stderr.isatty()) as progress:
            report = asyncio.run(
                _reconcile(conn, config, args.source, now, since, until, origin, args.dry_run, progress)
            )
    finally:
        conn.close()
    print("\n".join(describe(report, config)))
    return 0 if report.ok else 1


async def _reconcile(
    conn: object,
    config: HubConfig,
    source: str,
    now: float,
    since: float | None,
    until: float | None,
    origin: Origin,
    dry_run: bool,
    progress: Callable[[Progress], None] | None,
) -> RunReport:
    # No cookie jar, as the hub's own sessions (flows/http_clients.py).
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as session:
        return await reconcile_source(
            conn,  # type: ignore[arg-type]
            config,
            source,
            AiohttpSender(session),
            now,
            since=since,
            until=until,
            origin=origin,
            dry_run=dry_run,
            check_webhook=origin == "reconciled",
            progress=progress,
        )


@contextmanager
def _progress_bar(shown: bool) -> Iterator[Callable[[Progress], None] | None]:
    """A progress bar on a terminal (rich, which Prefect brings); nothing when output is piped."""
    if not shown:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    with Bar(
        TextColumn("listing responses"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[missing]} missing"),
        TimeElapsedColumn(),
        console=Console(stderr=True),  # stdout carries the report, which may be piped
        transient=True,
    ) as bar:
        task = bar.add_task("list", total=None, missing=0)

        def show(counts: Progress) -> None:
            bar.update(task, completed=counts.listed, total=counts.total, missing=counts.missing)

        yield show


def _when(at: float | datetime) -> str:
    moment = at if isinstance(at, datetime) else datetime.fromtimestamp(at, UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe(report: RunReport, config: HubConfig) -> list[str]:
    """What the command prints: the window, what was missing, what was stored, the webhook's health."""
    lines = [
        f"{report.source}: {report.listed} response(s) submitted {_when(report.since)}"
        f" - {_when(report.until)} listed; {len(report.missing)} missing from the spool"
    ]
    for item in report.missing[:SHOWN]:
        odd = (
            f" (not readable: {item.problem}; kept as a dead letter)"
            if isinstance(item, UnreadableResponse)
            else ""
        )
        lines.append(f"  response {item.response_id}, submitted {_when(item.submitted_at)}{odd}")
    if len(report.missing) > SHOWN:
        lines.append(f"  ... and {len(report.missing) - SHOWN} more")
    if report.dry_run:
        lines.append("dry run: nothing was stored")
    elif report.missing:
        raced = len(report.missing) - len(report.stored)
        lines.append(
            f"stored {len(report.stored)} as {report.origin} submission(s); the running hub delivers them"
            + (f" ({raced} arrived by webhook meanwhile)" if raced else "")
        )
    if report.origin == "imported":
        routes = [r.name for r in config.routes if r.backfill and r.matches_source(report.source)]
        lines.append(
            f"routes that deliver imported submissions (backfill: true): {', '.join(routes)}"
            if routes
            else "no route from this source has `backfill: true`: the imports are stored, not delivered"
        )
    if report.webhook is not None:
        lines.append(f"webhook: {report.webhook.state}: {report.webhook.detail}")
    if report.error is not None:
        advice = "fix the credentials or settings, then run again" if report.permanent else "run again later"
        lines.append(f"error: {report.error} ({advice}); what was stored before it stays stored")
    return lines


HANDLERS = {"reconcile": cmd_reconcile, "import": cmd_import}
