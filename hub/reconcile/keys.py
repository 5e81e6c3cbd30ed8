"""Give stored webhooks from before `inbox.response_key` existed their response identity.

A source reconciled for the first time holds webhooks stored by an older hookhub (or before its
connector set `Envelope.response_id`); without their keys every one of them would look missing
and be delivered again. Each run first reads the envelope of such rows in its window again from
their stored request (the connector's own `envelope`, as the receiver would now) and records
the key. A row whose body retention has emptied cannot say, and keeps none.
"""

from __future__ import annotations

import json
import logging

from connectors.base import Connector, InboundRequest, response_key
from hub.spool.transactions import transaction
from hub.store import Connection

log = logging.getLogger("hookhub.reconcile")


def fill_keys(conn: Connection, source: str, connector: Connector, since: float) -> int:
    """Record the response key of the source's submissions received since `since` that have none;
    returns how many got one."""
    rows = conn.execute(
        "SELECT id, method, url, headers, body FROM inbox WHERE source = ? AND received_at >= ?"
        " AND kind = 'submission' AND response_key IS NULL",
        (source, since),
    ).fetchall()
    keyed: list[tuple[str, str]] = []
    for inbox_id, method, url, headers, body in rows:
        try:
            request = InboundRequest(method or "POST", url or "", json.loads(headers or "{}"), bytes(body))
            key = response_key(connector, connector.envelope(request))
        except Exception:  # noqa: BLE001 - a body the connector cannot read has no key to give
            continue
        if key is not None:
            keyed.append((inbox_id, key))
    filled = 0
    with transaction(conn):
        for inbox_id, key in keyed:
            # Two old webhooks of one response (a provider's second event id): the first keeps it.
            filled += conn.execute(
                "UPDATE inbox SET response_key = ? WHERE id = ? AND NOT EXISTS"
                " (SELECT 1 FROM inbox WHERE source = ? AND response_key = ?)",
                (key, inbox_id, source, key),
            ).rowcount
    if filled:
        log.info(
            "response keys recorded",
            extra={"event": "response_keys_filled", "source": source, "rows": filled},
        )
    return filled
