"""Normalize stored requests and plan their deliveries: pure work, no Prefect, no I/O.

Used by the flow's "normalize and route" task and by `hookhub replay --dry-run`, so what
a dry run shows is what a real run does.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from connectors import get_connector
from connectors.base import Connector, InboundRequest, NormalizeContext
from hub.config.models import HubConfig
from hub.routing.plan import plan
from hub.spool.ledger import InboxRow, PlannedDelivery
from hub.submission import Submission

log = logging.getLogger("hookhub.routing")

Routed = dict[str, tuple[str, list[PlannedDelivery]]]


def connector_for(config: HubConfig, source_id: str, provider: str) -> Connector:
    source = config.sources.get(source_id)
    # Configurable connectors (mapped) read their per-source options through for_source.
    return get_connector(source.provider).for_source(source.options) if source else get_connector(provider)


def normalize_row(config: HubConfig, row: InboxRow) -> Submission:
    if row.kind == "fetched":  # already normalized when its notification was expanded
        return Submission.model_validate_json(row.body)
    connector = connector_for(config, row.source, row.provider)
    request = InboundRequest(method=row.method, url=row.url, headers=row.headers, body=row.body)
    context = NormalizeContext(
        submission_id=row.id, source=row.source,
        received_at=datetime.fromtimestamp(row.received_at, tz=UTC),
    )
    return connector.normalize(request, context)


def normalize_rows(config: HubConfig, rows: list[InboxRow]) -> tuple[dict[str, Submission], dict[str, str]]:
    """Each row on its own: one poisoned submission never fails its batch.

    Returns (inbox id -> Submission, inbox id -> why it is a dead letter).
    """
    normalized: dict[str, Submission] = {}
    failed: dict[str, str] = {}
    for row in rows:
        try:
            normalized[row.id] = normalize_row(config, row)
        except Exception as exc:  # noqa: BLE001 - any connector failure makes a dead letter, never a lost row
            failed[row.id] = f"unnormalizable ({row.provider}): {exc}"
            log.warning("submission not normalizable", extra={"event": "unnormalizable", "id": row.id,
                                                              "source": row.source, "error": type(exc).__name__})
    return normalized, failed


def plan_submissions(config: HubConfig, submissions: dict[str, Submission], failed: dict[str, str]) -> Routed:
    """Deliveries for each submission; a route that cannot be evaluated adds to `failed`."""
    routed: Routed = {}
    for inbox_id, submission in submissions.items():
        result = plan(config, submission)
        routed[inbox_id] = (submission.model_dump_json(), result.deliveries)
        if result.errors:
            failed[inbox_id] = "; ".join(result.errors)
    return routed


def route_rows(config: HubConfig, rows: list[InboxRow]) -> tuple[Routed, dict[str, str]]:
    """Normalize and plan (what `hookhub replay --dry-run` shows; the flow adds fetching between)."""
    normalized, failed = normalize_rows(config, rows)
    return plan_submissions(config, normalized, failed), failed
