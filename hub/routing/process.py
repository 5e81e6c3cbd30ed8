"""Normalize stored requests and plan their deliveries: pure work, no Prefect, no I/O.

Used by the flow's "normalize and route" task and by `hookhub replay --dry-run`, so what
a dry run shows is what a real run does.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from connectors import get_connector
from connectors.base import Connector, InboundRequest, NormalizeContext
from hub.config.models import HubConfig
from hub.routing.plan import compiled_condition, plan
from hub.routing.when import Condition
from hub.spool.rows import InboxRow, PlannedDelivery
from hub.submission import Submission

log = logging.getLogger("hookhub.routing")

Routed = dict[str, tuple[str, list[PlannedDelivery]]]
ConnectorLookup = Callable[[str], Connector]
"""Provider id -> connector: `connectors.get_connector`, or a test's own."""


def connector_for(
    config: HubConfig, source_id: str, provider: str, connectors: ConnectorLookup = get_connector
) -> Connector:
    source = config.sources.get(source_id)
    # Configurable connectors (mapped) read their per-source options through for_source.
    return connectors(source.provider).for_source(source.options) if source else connectors(provider)


def normalize_row(
    config: HubConfig, row: InboxRow, connectors: ConnectorLookup = get_connector
) -> Submission:
    if row.kind == "fetched":  # already normalized when its notification was expanded
        return Submission.model_validate_json(row.body)
    connector = connector_for(config, row.source, row.provider, connectors)
    request = InboundRequest(method=row.method, url=row.url, headers=row.headers, body=row.body)
    context = NormalizeContext(
        submission_id=row.id,
        source=row.source,
        received_at=datetime.fromtimestamp(row.received_at, tz=UTC),
    )
    return connector.normalize(request, context)


def normalize_rows(
    config: HubConfig,
    rows: list[InboxRow],
    connectors: ConnectorLookup = get_connector,
) -> tuple[dict[str, Submission], dict[str, str]]:
    """Each row on its own: one poisoned submission never fails its batch.

    Returns (inbox id -> Submission, inbox id -> why it is a dead letter).
    """
    normalized: dict[str, Submission] = {}
    failed: dict[str, str] = {}
    for row in rows:
        try:
            normalized[row.id] = normalize_row(config, row, connectors)
        except Exception as exc:  # noqa: BLE001 - any connector failure makes a dead letter, never a lost row
            failed[row.id] = f"unnormalizable ({row.provider}): {exc}"
            log.warning(
                "submission not normalizable",
                extra={
                    "event": "unnormalizable",
                    "id": row.id,
                    "source": row.source,
                    "error": type(exc).__name__,
                },
            )
    return normalized, failed


@dataclass
class PlannedBatch:
    routed: Routed = field(default_factory=dict)
    skipped: Counter[str] = field(default_factory=Counter)
    """Destination -> submissions of the batch a false `when` kept from it."""


def plan_batch(
    config: HubConfig,
    submissions: dict[str, Submission],
    failed: dict[str, str],
    condition: Callable[[str], Condition] = compiled_condition,
) -> PlannedBatch:
    """Deliveries and stored JSON for each submission; one that cannot be routed adds to `failed`.

    Each on its own, like normalizing: a submission whose JSON cannot be encoded or whose
    routing raises is a dead letter with the reason, and the others are routed.
    """
    batch = PlannedBatch()
    routed = batch.routed
    for inbox_id, submission in submissions.items():
        try:
            # Encoded first: `when` then sees the text as it is stored and sent (see Submission.to_json).
            stored, data = submission.to_json()
            result = plan(config, stored, condition)
        except Exception as exc:  # noqa: BLE001 - one submission's failure is its own dead letter
            failed[inbox_id] = f"cannot be routed: {type(exc).__name__}: {exc}"
            log.warning(
                "submission not routable",
                extra={
                    "event": "unroutable",
                    "id": inbox_id,
                    "source": submission.source,
                    "error": type(exc).__name__,
                },
            )
            continue
        routed[inbox_id] = (data, result.deliveries)
        batch.skipped.update(result.skipped)
        if result.errors:
            failed[inbox_id] = "; ".join(result.errors)
    return batch


def route_rows(config: HubConfig, rows: list[InboxRow]) -> tuple[Routed, dict[str, str]]:
    """Normalize and plan (what `hookhub replay --dry-run` shows; the flow adds fetching between)."""
    normalized, failed = normalize_rows(config, rows)
    return plan_batch(config, normalized, failed).routed, failed
