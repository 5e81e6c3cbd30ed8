"""Normalize stored requests and plan their deliveries: pure work, no Prefect, no I/O.

Used by the flow's "normalize and route" task and by `hookhub replay --dry-run`, so what
a dry run shows is what a real run does.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from connectors import get_connector
from connectors.base import InboundRequest, NormalizeContext
from hub.config.models import HubConfig
from hub.routing.plan import plan
from hub.spool.ledger import InboxRow, PlannedDelivery
from hub.submission import Submission

log = logging.getLogger("hookhub.routing")

Routed = dict[str, tuple[str, list[PlannedDelivery]]]


def normalize_row(config: HubConfig, row: InboxRow) -> Submission:
    source = config.sources.get(row.source)
    connector = get_connector(source.provider).for_source(source.options) if source else get_connector(row.provider)
    request = InboundRequest(method=row.method, url=row.url, headers=row.headers, body=row.body)
    context = NormalizeContext(
        submission_id=row.id, source=row.source,
        received_at=datetime.fromtimestamp(row.received_at, tz=UTC),
    )
    return connector.normalize(request, context)


def route_rows(config: HubConfig, rows: list[InboxRow]) -> tuple[Routed, dict[str, str]]:
    """Normalize and route each row on its own: one poisoned submission never fails its batch.

    Returns (inbox id -> (Submission JSON, deliveries), inbox id -> why it is a dead letter).
    """
    routed: Routed = {}
    failed: dict[str, str] = {}
    for row in rows:
        try:
            submission = normalize_row(config, row)
        except Exception as exc:  # noqa: BLE001 - any connector failure makes a dead letter, never a lost row
            failed[row.id] = f"unnormalizable ({row.provider}): {exc}"
            log.warning("submission not normalizable", extra={"event": "unnormalizable", "id": row.id,
                                                              "source": row.source, "error": type(exc).__name__})
            continue
        result = plan(config, submission)
        routed[row.id] = (submission.model_dump_json(), result.deliveries)
        if result.errors:
            failed[row.id] = "; ".join(result.errors)
    return routed, failed
