"""One reconciliation of one source: list, compare, store what is missing, check the webhook.

The window a run lists is [since, until): `until` is `settle` before now (younger responses are
left to their webhook, which may still be on its way: Typeform retries for hours), `since` is the
end of the last window less `settle` (an overlap costs a few listed responses and is deduplicated),
or on a source's first run `lookback` before now but not earlier than its first stored submission
(see window_for). The watermark moves only when the whole window
was listed, so a run that fails half way starts from the same place next time; what it stored
before failing stays stored and is not stored again.

`hookhub import` is the same run over a window the admin gives, with origin `imported`: those
submissions go only to routes with `backfill: true` (hub/routing/plan.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

from connectors.base import Connector, storable_text
from connectors.reconciling import (
    ListedResponse,
    ReconcileFailed,
    Reconciler,
    ReconcileSettings,
    UnreadableResponse,
    WebhookHealth,
    Window,
)
from hub.config.models import HubConfig, SourceConfig
from hub.reconcile import ingest, keys, state
from hub.routing.process import connector_for
from hub.sender import Sender
from hub.store import Connection, StoreError

log = logging.getLogger("hookhub.reconcile")

Origin = Literal["reconciled", "imported"]
FIRST_MARGIN = 3600.0
"""A first run also looks this much before the source's first stored submission: a response
submitted just before it may be one whose webhook was lost while the source was being set up."""
KEY_FILL_MARGIN = 3600.0
"""How much earlier than the window webhooks are given their response key (keys.py): a response's
webhook is received at or after its submission, so rows received before the window are not it."""


class NotReconcilable(Exception):
    """The source cannot be reconciled as configured; the message says what to add."""


@dataclass
class Progress:
    """Counts so far, for the command's progress bar."""

    listed: int = 0
    total: int | None = None
    missing: int = 0
    stored: int = 0


@dataclass
class RunReport:
    source: str
    origin: Origin
    since: float
    until: float
    dry_run: bool
    listed: int = 0
    missing: list[ListedResponse | UnreadableResponse] = field(default_factory=list)
    """Listed responses the spool did not hold (stored, unless a dry run or a webhook won the race;
    an unreadable one as a dead letter saying why)."""
    stored: list[str] = field(default_factory=list)
    """Ids of the rows stored."""
    keys_filled: int = 0
    webhook: WebhookHealth | None = None
    error: str | None = None
    permanent: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None


def reconcilable(
    config: HubConfig, source_id: str
) -> tuple[SourceConfig, Connector, Reconciler, ReconcileSettings]:
    """The source, its connector, reconciler and settings; NotReconcilable says what is missing."""
    source = config.sources.get(source_id)
    if source is None:
        known = ", ".join(sorted(config.sources)) or "none"
        raise NotReconcilable(f"no source {source_id!r} in the config (sources: {known})")
    connector = connector_for(config, source_id, source.provider)
    if connector.reconciler is None:
        raise NotReconcilable(
            f"{connector.title} has no responses API hookhub can list: {source_id!r} cannot be reconciled"
        )
    settings = source.reconcile_settings
    if settings is None:
        raise NotReconcilable(
            f"source {source_id!r} has no `reconcile:` settings; add them (the API credentials and form) to"
            f" connectors.yaml: see docs/providers/{connector.provider}.md"
        )
    return source, connector, connector.reconciler, settings


def expected_url(config: HubConfig, source_id: str) -> str | None:
    """The URL the provider's webhook should post to: where the hub says it is reachable."""
    source = config.sources[source_id]
    if source.public_url:
        return source.public_url
    base = config.server.public_base_url
    return f"{base.rstrip('/')}/hooks/{source_id}" if base else None


def window_for(
    settings: ReconcileSettings,
    watermark: float | None,
    now: float,
    since: float | None,
    first_received: float | None,
) -> tuple[float, float]:
    """[since, until) for a run; `since` given (the commands' --since) wins.

    A source's first run (no watermark) looks back `lookback`, but not before the source's first
    stored submission (less FIRST_MARGIN): what the form collected before the hub received its
    webhooks is history, which `hookhub import` brings in for the routes that ask for it, not
    missed webhooks. A source with nothing stored yet starts now.
    """
    until = now - settings.settle
    if since is not None:
        return since, until
    if watermark is not None:
        return watermark - settings.settle, until
    if first_received is None:
        return until, until
    return max(now - settings.lookback, first_received - FIRST_MARGIN), until


async def reconcile_source(
    conn: Connection,
    config: HubConfig,
    source_id: str,
    http: Sender,
    now: float,
    *,
    since: float | None = None,
    until: float | None = None,
    origin: Origin = "reconciled",
    dry_run: bool = False,
    check_webhook: bool = True,
    progress: Callable[[Progress], None] | None = None,
) -> RunReport:
    """List the source's responses in the window and store the missing ones; see the module doc.

    Raises NotReconcilable when the source cannot be; the API's failures are in the report (and in
    `reconcile_state`, unless a dry run).
    """
    source, connector, reconciler, settings = reconcilable(config, source_id)
    before = await asyncio.to_thread(state.read, conn, source_id)
    first = (
        None if before.watermark is not None else await asyncio.to_thread(_first_received, conn, source_id)
    )
    start, end = window_for(settings, before.watermark, now, since, first)
    if until is not None:
        end = until
    report = RunReport(source_id, origin, start, end, dry_run)
    try:
        if end > start:  # a source with nothing stored yet lists nothing on its first run
            await _list_window(conn, reconciler, connector, source, settings, report, now, http, progress)
        if check_webhook:
            report.webhook = await reconciler.webhook_health(
                source, settings, expected_url(config, source_id), http
            )
    except ReconcileFailed as exc:
        report.error, report.permanent = str(exc), exc.permanent
    except StoreError as exc:  # locked, gone, or a webhook of the same response committed meanwhile
        report.error = (
            f"the store could not be written ({type(exc).__name__}: {exc}); the next run tries again"
        )
        with contextlib.suppress(*StoreError):
            conn.execute("ROLLBACK")
        if not dry_run and origin == "reconciled":
            with contextlib.suppress(*StoreError):  # recorded if the store allows it now
                await asyncio.to_thread(_remember, conn, before.source, report, now, False)
        _log(report, connector)
        return report
    if not dry_run and origin == "reconciled":  # an import is not a reconciliation: its counter only
        # The watermark moves only past a window that starts where the schedule's would have.
        default_start = window_for(settings, before.watermark, now, None, first)[0]
        advance = start <= default_start
        await asyncio.to_thread(_remember, conn, before.source, report, now, advance)
    _log(report, connector)
    return report


async def _list_window(
    conn: Connection,
    reconciler: Reconciler,
    connector: Connector,
    source: SourceConfig,
    settings: ReconcileSettings,
    report: RunReport,
    now: float,
    http: Sender,
    progress: Callable[[Progress], None] | None,
) -> None:
    """List [report.since, report.until) page by page, storing each page's missing responses
    (unless a dry run) before asking for the next; raises ReconcileFailed."""
    if not report.dry_run:
        report.keys_filled = await asyncio.to_thread(
            keys.fill_keys, conn, report.source, connector, report.since - KEY_FILL_MARGIN
        )
    note = (
        f"reconciled from the {reconciler.api}: its webhook never arrived"
        if report.origin == "reconciled"
        else f"imported from the {reconciler.api}"
    )
    counts = Progress()
    window = Window(datetime.fromtimestamp(report.since, UTC), datetime.fromtimestamp(report.until, UTC))
    async for page in reconciler.responses(source, settings, window, http):
        counts.total = page.total if page.total is not None else counts.total
        listed: dict[str, ListedResponse | UnreadableResponse] = {
            _key(connector, item.response_id, item.submission.form_id): item for item in page.responses
        }
        for odd in page.unreadable:
            listed.setdefault(_key(connector, odd.response_id, odd.form_id), odd)
        known = await asyncio.to_thread(ingest.known_keys, conn, report.source, list(listed))
        missing = [_missing(key, item) for key, item in listed.items() if key not in known]
        report.listed += len(listed)
        report.missing.extend(listed[m.key] for m in missing)
        if missing and not report.dry_run:
            report.stored += await asyncio.to_thread(
                ingest.store_missing,
                conn,
                now,
                report.source,
                connector.provider,
                missing,
                report.origin,
                note,
                reconciler.api,
            )
        counts.listed, counts.missing, counts.stored = report.listed, len(report.missing), len(report.stored)
        if progress is not None:
            progress(counts)


def _key(connector: Connector, response_id: str, form_id: str | None) -> str:
    """The response's key in the spool, as connectors.base.response_key makes it for its webhook."""
    key = f"{form_id}/{response_id}" if connector.event_ids_per_form and form_id else response_id
    return storable_text(key)


def _missing(key: str, item: ListedResponse | UnreadableResponse) -> ingest.Missing:
    if isinstance(item, UnreadableResponse):
        return ingest.Missing(key, None, item.problem)
    return ingest.Missing(key, item.submission)


def _first_received(conn: Connection, source_id: str) -> float | None:
    """When the source's first submission was stored (along inbox_by_source_time)."""
    row = conn.execute(
        "SELECT received_at FROM inbox WHERE source = ? ORDER BY received_at LIMIT 1", (source_id,)
    ).fetchone()
    return None if row is None else float(row[0])


def _remember(conn: Connection, source_id: str, report: RunReport, now: float, advance: bool) -> None:
    current = state.read(conn, source_id)  # re-read: the counters moved as rows were stored
    current.last_run_at = now
    current.last_listed, current.last_missing = report.listed, len(report.missing)
    if report.ok:
        current.last_outcome, current.last_error = "ok", None
        if advance:
            current.watermark = max(report.until, current.watermark or report.until)
    else:
        current.last_outcome = "refused" if report.permanent else "failed"
        current.last_error = report.error
    if report.webhook is not None:
        current.webhook_state, current.webhook_detail = report.webhook.state, report.webhook.detail
        current.webhook_checked_at = now
    state.save(conn, current)


def _log(report: RunReport, connector: Connector) -> None:
    extra = {
        "event": "reconciled" if report.ok else "reconcile_failed",
        "source": report.source,
        "origin": report.origin,
        "listed": report.listed,
        "missing": len(report.missing),
        "stored": len(report.stored),
        "dry_run": report.dry_run,
    }
    if report.webhook is not None:
        extra["webhook"] = report.webhook.state
    if report.ok:
        log.info("%s listed", connector.title, extra=extra)
    else:
        log.warning("%s could not be listed", connector.title, extra={**extra, "error": report.error})
