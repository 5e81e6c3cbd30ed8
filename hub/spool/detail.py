"""One submission, everything the console page and `hookhub show` print.

Its normalized answers, the raw request as received (credentials removed: hub/spool/redact.py),
which of the current config's routes matched it and why the others did not, and per
destination the delivery with every attempt. Read-only: a few primary-key and index reads.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel

from connectors.base import Connector
from hub.config.models import HubConfig
from hub.routing.plan import compiled_condition
from hub.routing.when import WhenError, WhenSyntaxError
from hub.spool.redact import RawRequest, raw_request
from hub.spool.search import SUMMARY_COLUMNS, SubmissionSummary
from hub.store import Connection, Cursor
from hub.submission import Submission


class SubmissionNotFound(LookupError):
    """No stored submission has this id."""


class RouteVerdict(BaseModel):
    route: str
    matched: bool
    destinations: list[str]
    """What the route sends to (when it matched, those no earlier route took)."""
    why_not: str | None
    """'source ... not in from', '`when` is false: ...', '`when` could not be evaluated: ...'."""


class Attempt(BaseModel):
    attempt: int
    generation: int
    at: float
    outcome: str
    status_code: int | None
    error: str | None
    retry_after: float | None


class Delivery(BaseModel):
    destination: str
    route: str
    status: str
    generation: int
    """0: the first sending; n: the n-th resend."""
    attempts: int
    next_attempt_at: float | None
    """When it is tried next (pending or retrying), else None."""
    remote_id: str | None
    previous_remote_id: str | None
    """What the generation before a resend created (the Slack ts, the CRM record id)."""
    last_status_code: int | None
    last_error: str | None
    delivered_at: float | None
    paused: bool
    disabled: str | None
    """Why a 410 disabled the destination, if it did."""
    history: list[Attempt]


class SubmissionDetail(SubmissionSummary):
    """A list row (hub/spool/search.py) and everything else the page shows."""

    kind: str
    note: str | None
    submission: dict[str, Any] | None
    """The normalized Submission (public JSON field names), once it has been routed."""
    raw: RawRequest
    routes: list[RouteVerdict] | None
    """None without a config or before the submission was normalized."""
    deliveries: list[Delivery]


def submission_detail(
    conn: Connection,
    inbox_id: str,
    config: HubConfig | None = None,
    connector: Connector | None = None,
) -> SubmissionDetail:
    """Raises SubmissionNotFound. `config`: routes are judged by it; `connector`: the source's
    (hub.routing.process.connector_for), whose declared credential names are redacted."""
    found = _dicts(
        conn.execute(
            f"SELECT {SUMMARY_COLUMNS}, i.kind, i.note, i.method, i.url, i.headers, i.body, i.submission"
            " FROM inbox i WHERE i.id=?",
            (inbox_id,),
        )
    )
    if not found:
        raise SubmissionNotFound(f"no submission with id {inbox_id!r}")
    row = found[0]
    stored = _parse(row["submission"])
    raw = raw_request(
        row.pop("method") or "POST",
        row.pop("url") or "",
        json.loads(row.pop("headers") or "{}"),
        row.pop("body") or b"",
        connector,
    )
    return SubmissionDetail.model_validate(
        {
            **row,
            "submission": json.loads(row["submission"]) if stored is not None else None,
            "raw": raw,
            "routes": route_verdicts(config, stored) if config is not None and stored is not None else None,
            "deliveries": deliveries(conn, inbox_id),
        }
    )


def _dicts(cursor: Cursor) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, values, strict=True)) for values in cursor]


def _parse(text: str | None) -> Submission | None:
    if not text:
        return None
    try:
        return Submission.model_validate_json(text)
    except ValueError:
        return None


def route_verdicts(config: HubConfig, submission: Submission) -> list[RouteVerdict]:
    """Every route of `config` judged on `submission` as hub/routing/plan.py would route it now."""
    out: list[RouteVerdict] = []
    taken: set[str] = set()
    for route in config.routes:
        why = _why_not(route.from_, route.when, submission)
        destinations = [] if why else [d for d in route.destination_ids() if d not in taken]
        taken.update(destinations)
        out.append(
            RouteVerdict(route=route.name, matched=why is None, destinations=destinations, why_not=why)
        )
    return out


def _why_not(from_: list[str], when: str | None, submission: Submission) -> str | None:
    if "*" not in from_ and submission.source not in from_:
        return f"source {submission.source!r} is not in from {from_}"
    if not when:
        return None
    try:
        return None if compiled_condition(when)(submission) else f"`when` is false: {when}"
    except (WhenError, WhenSyntaxError) as exc:
        return f"`when` could not be evaluated: {exc}"
    except Exception as exc:  # noqa: BLE001 - the router records the same as a route error
        return f"`when` failed: {type(exc).__name__}: {exc}"


def deliveries(conn: Connection, inbox_id: str) -> list[Delivery]:
    paused = {r[0] for r in conn.execute("SELECT destination FROM paused_destinations")}
    disabled = dict(conn.execute("SELECT destination, reason FROM disabled_destinations").fetchall())
    history: dict[str, list[Attempt]] = {}
    for a in _dicts(
        conn.execute(
            "SELECT destination, attempt, generation, at, outcome, status_code, error, retry_after"
            " FROM attempts WHERE inbox_id=? ORDER BY destination, attempt",
            (inbox_id,),
        )
    ):
        history.setdefault(a["destination"], []).append(Attempt.model_validate(a))
    rows = _dicts(
        conn.execute(
            "SELECT destination, coalesce(route, '') AS route, status, generation, attempts,"
            " CASE WHEN status IN ('pending', 'retrying') THEN next_attempt_at END AS next_attempt_at,"
            " remote_id, previous_remote_id, last_status_code, last_error, delivered_at"
            " FROM deliveries WHERE inbox_id=? ORDER BY destination",
            (inbox_id,),
        )
    )
    return [
        Delivery.model_validate(
            {
                **d,
                "paused": d["destination"] in paused,
                "disabled": disabled.get(d["destination"]),
                "history": history.get(d["destination"], []),
            }
        )
        for d in rows
    ]
