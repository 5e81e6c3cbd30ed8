"""Jotform webhooks (multipart/form-data, one request per submission).

Sources: captured requests in Zulip's integration fixtures
(https://github.com/zulip/zulip/tree/main/zerver/webhooks/jotform/fixtures: response.multipart,
screenshot_response.multipart, response_with_colon_comma_characters.multipart) and the n8n JotForm trigger
(https://github.com/n8n-io/n8n/blob/master/packages/nodes-base/nodes/JotForm/JotFormTrigger.node.ts),
both [obs]; answer rules from tests/fixtures/providers/README.md ("jotform" row).

Jotform signs nothing and posts no submission time: the source's secret is a token in the webhook URL
query (`?token=...`, connectors/_tokens.py), the receive time stands in for the submission time, and the
dedupe key is `submissionID`. Answers come from the `rawRequest` JSON (keys `q<id>_<slug>`); labels exist
only in `pretty` ("Label:Value, Label:Value"), where labels and values may contain ":" and ", ". So we do not
split `pretty`: we predict how each rawRequest value is shown there and align the two (see `_labels`).
Answers the alignment cannot place keep their slug as label (listed in metadata `labels_not_in_pretty`).

Reconciliation (missed webhooks) lists the form's submissions through Jotform's API (api.py).
"""

from __future__ import annotations

import json
import re
import secrets
from bisect import bisect_left
from dataclasses import dataclass
from heapq import heappop, heappush
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from connectors import _answers
from connectors._tokens import TOKEN_PARAM, UrlTokenVerification
from connectors.base import (
    Connector,
    Envelope,
    InboundRequest,
    NormalizeContext,
    SourceSettings,
    UnsupportedPayload,
    require_secrets,
)
from connectors.jotform.api import JotformReconciler
from connectors.jotform.values import deep_empty, shape
from hub.submission import Answer, Submission

_MULTIPART = "multipart/form-data"
_QKEY = re.compile(r"^q([0-9]{1,18})_(.+)$")  # bounded: int() of a question id stays cheap
_MAX_STEPS = 200_000  # bound on the pretty alignment search; past it every answer keeps its slug
_SPAN = 8  # most ", " a label, or a value in an unpredicted format, is looked for with
_LOOSE, _SEGMENT, _NOT_SHOWN, _SKIP = 100, 50, 200, 300  # alignment costs; ", " in a label costs 1
_LOOKS_LIKE_SEGMENT = re.compile(r", [^,:]*:")


@dataclass(frozen=True)
class _Field:
    key: str  # q3_fullName
    slug: str
    qid: int
    type: str
    value: Any
    shown: tuple[str, ...]  # how `pretty` is expected to render the value
    loose: bool = False  # rendering not known for sure: may take a segment in another format


def _form(request: InboundRequest) -> dict[str, str]:
    # A repeated name keeps its last value, as PHP (Jotform's side) reads it.
    return dict(_answers.multipart_pairs(request.body, request.header("content-type") or ""))


def _raw_request(form: dict[str, str]) -> dict[str, Any]:
    if "rawRequest" not in form:
        raise UnsupportedPayload("no rawRequest field: not a Jotform submission webhook")
    raw = _answers.parse_json(form["rawRequest"], "rawRequest")
    if not isinstance(raw, dict):
        raise UnsupportedPayload("rawRequest is not a JSON object")
    return raw


def _fields(raw: dict[str, Any]) -> list[_Field]:
    uploads = _answers.maybe_obj(raw, "temp_upload")
    fields: list[_Field] = []
    for key, value in raw.items():
        match = _QKEY.match(key)
        if match and key not in uploads and not deep_empty(value):
            fields.append(_Field(key, match[2], int(match[1]), *shape(value)))
    for key, names in uploads.items():
        match = _QKEY.match(key)
        if not match or not isinstance(names, list) or not names:
            continue
        # temp_upload holds "<file name>#<server>#<id>"; the public URLs sit under the bare slug.
        shown = [str(n).split("#", 1)[0] for n in names]
        found = raw.get(match[2])
        urls = [u for u in (found if isinstance(found, list) else [found]) if isinstance(u, str)]
        f = _Field(
            key, match[2], int(match[1]), "file", _answers.file_value(urls or shown), (" ".join(shown),)
        )
        # Form order is unknown until `pretty` is matched; put the upload where its question id fits.
        at = next((i for i, g in enumerate(fields) if g.qid > f.qid), len(fields))
        fields.insert(at, f)
    return fields


def _occurrences(pretty: str, field: _Field) -> list[tuple[int, int]]:
    """(colon, end) of every place `pretty` shows `field` exactly: ":<value>" then ", " or the end."""
    found: set[tuple[int, int]] = set()
    for shown in {s for s in field.shown if s}:
        at = pretty.find(":" + shown)
        while at != -1:
            end = at + 1 + len(shown)
            if end == len(pretty) or pretty.startswith(", ", end):
                found.add((at, end))
            at = pretty.find(":" + shown, at + 1)
    return sorted(found)


def _labels(pretty: str, fields: list[_Field]) -> dict[int, str]:
    """Field index → label, from the cheapest reading of `pretty` as "Label:Value" segments.

    `pretty` lists answered fields in form order, which is rawRequest's order, so this is an
    alignment, searched cheapest-first (Dijkstra over (position, field)): field i shows exactly
    (cost 0), in an unpredicted format (loose fields only), is not shown, or a segment explains no
    field. A label that swallows later segments forces their fields to "not shown", so it loses;
    each ", " inside a label costs 1, which only breaks ties (a value may hold ", " too).
    """
    n, size = len(fields), len(pretty)
    if not pretty or not fields:
        return {}
    search = _Alignment(
        pretty,
        fields,
        bounds=[m.start() for m in re.finditer(", ", pretty)],
        colons=[m.start() for m in re.finditer(":", pretty)],
        exact=[_occurrences(pretty, f) for f in fields],
    )
    dist: dict[tuple[int, int], int] = {(0, 0): 0}
    back: dict[tuple[int, int], tuple[int, int, int, int]] = {}  # state → (pos, i, field, colon)
    heap = [(0, 0, 0)]
    for _ in range(_MAX_STEPS):
        if not heap:
            break
        cost, pos, i = heappop(heap)
        if (pos, i) == (size, n):
            return _traced(pretty, back, (size, n))
        if cost > dist[(pos, i)]:
            continue
        for step, nxt, j, taken, colon in search.moves(pos, i):
            state = (min(nxt, size), j)
            if cost + step < dist.get(state, cost + step + 1):
                dist[state] = cost + step
                back[state] = (pos, i, taken, colon)
                heappush(heap, (cost + step, *state))
    return {}  # search budget spent: every answer keeps its slug


_Move = tuple[int, int, int, int, int]
"""(cost, next pos, next field index, field taken or -1, its colon): one step of the alignment."""


@dataclass(frozen=True)
class _Alignment:
    """What `_labels`' search reads at every state: `pretty`, its ", " and ":" offsets, exact matches."""

    pretty: str
    fields: list[_Field]
    bounds: list[int]
    colons: list[int]
    exact: list[list[tuple[int, int]]]

    def moves(self, pos: int, i: int) -> list[_Move]:
        """Every step from state (pos, i): field i not shown, shown here, or a segment explaining none."""
        n, size = len(self.fields), len(self.pretty)
        moves: list[_Move] = []
        if i < n:
            moves.append((_NOT_SHOWN, pos, i + 1, -1, 0))
        if pos >= size:
            return moves
        bounds, colons = self.bounds, self.colons
        k = bisect_left(colons, pos)
        colon = colons[k] if k < len(colons) else -1
        a = bisect_left(bounds, colon + 1 if colon >= 0 else pos)
        after = bounds[a : a + _SPAN]  # value ends for a loose field
        if i < n:
            # A label holds at most _SPAN ", ": bounds how far an exact match may be looked for.
            b = bisect_left(bounds, pos) + _SPAN
            moves += self._exact_moves(pos, i, bounds[b] if b < len(bounds) else size)
            if self.fields[i].loose and colon >= 0:
                moves += self._loose_moves(pos, i, colon, after)
        moves.append((_SKIP, (after[0] if after else size) + 2, i, -1, 0))
        return moves

    def _exact_moves(self, pos: int, i: int, limit: int) -> list[_Move]:
        """Field i shown exactly, at a colon up to `limit`; each ", " in its label costs 1."""
        moves: list[_Move] = []
        exact = self.exact[i]
        for c, e in exact[bisect_left(exact, (pos, 0)) :]:
            if c > limit:
                break
            moves.append((self.pretty.count(", ", pos, c), e + 2, i + 1, i, c))
        return moves

    def _loose_moves(self, pos: int, i: int, colon: int, after: list[int]) -> list[_Move]:
        """Loose field i shown at the next colon in an unpredicted format, up to each value end."""
        pretty = self.pretty
        extra = _LOOSE + pretty.count(", ", pos, colon)
        # A loose value may hold ", " (dates, addresses) but rarely ", Label:" itself.
        return [
            (extra + _SEGMENT * len(_LOOKS_LIKE_SEGMENT.findall(pretty, colon, e)), e + 2, i + 1, i, colon)
            for e in [*after, len(pretty)]
        ]


def _traced(
    pretty: str, back: dict[tuple[int, int], tuple[int, int, int, int]], state: tuple[int, int]
) -> dict[int, str]:
    labels: dict[int, str] = {}
    while state in back:
        pos, i, taken, colon = back[state]
        if taken >= 0:
            labels[taken] = pretty[pos:colon]
        state = (pos, i)
    return labels


def _collect_answers(form: dict[str, str], raw: dict[str, Any]) -> tuple[list[Answer], list[str]]:
    fields = _fields(raw)
    labels = _labels(form.get("pretty") or "", fields)
    answers: list[Answer | None] = []
    unplaced: list[str] = []
    for i, f in enumerate(fields):
        label = labels.get(i, "").strip()
        if not label:
            unplaced.append(f.key)
        answers.append(_answers.answer(f.key, label or f.slug, f.type, f.value))
    return _answers.collect(answers), unplaced


class JotformConnector(UrlTokenVerification, Connector):
    provider = "jotform"
    title = "Jotform"
    content_types = frozenset({_MULTIPART})
    reconciler = JotformReconciler()

    def envelope(self, request: InboundRequest) -> Envelope:
        form = _form(request)
        _raw_request(form)  # shape check on the request path: a broken body is flagged at once
        submission_id = _answers.text(form, "submissionID", "body")
        # The webhook's submissionID is the API's submission `id` (connectors/jotform/api.py).
        return Envelope(
            event_id=submission_id,
            form_id=_answers.optional_text(form, "formID"),
            response_id=submission_id,
        )

    def normalize(self, request: InboundRequest, context: NormalizeContext) -> Submission:
        form = _form(request)
        answers, unplaced = _collect_answers(form, _raw_request(form))
        # Not `webhookURL`: it repeats the URL token.
        metadata: dict[str, Any] = {k: form[k] for k in ("username", "ip", "type") if form.get(k)}
        if unplaced:
            metadata["labels_not_in_pretty"] = unplaced  # these answers are labelled by their slug
        return _answers.submission(
            self.provider,
            context,
            answers,
            form_id=_answers.optional_text(form, "formID"),
            form_title=_answers.optional_text(form, "formTitle"),
            event_id=_answers.text(form, "submissionID", "body"),
            submitted_at=context.received_at,  # Jotform posts no submission time
            metadata=metadata,
        )

    def sample_request(self, source: SourceSettings, url: str, now: float) -> InboundRequest:
        form_id, submission_id = "240000000000001", str(secrets.randbelow(9 * 10**18) + 10**18)
        raw = {
            "q3_fullName": {"first": "Ada", "last": "Lovelace"},
            "q4_email": "ada@example.org",
            "q5_sessions": ["Keynote", "Workshop: Engines"],
            "q6_arrivalDate": {"month": "03", "day": "14", "year": "2026"},
            "q7_notes": "",
        }
        parts = {
            "webhookURL": urlunsplit(urlsplit(url)._replace(query="")),
            "formID": form_id,
            "type": "WEB",
            "formTitle": "hookhub test form",
            "submissionID": submission_id,
            # PHP json_encode style, as Jotform sends it: \uNNNN escapes and escaped slashes.
            "rawRequest": json.dumps(raw, separators=(",", ":")).replace("/", "\\/"),
            "pretty": "Full name:Ada Lovelace, Email:ada@example.org, Sessions:Keynote Workshop: Engines, "
            "Arrival date:03-14-2026",
        }
        boundary = "------------------------" + secrets.token_hex(11)
        body = "".join(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'
            for k, v in parts.items()
        )
        token = urlencode({TOKEN_PARAM: require_secrets(source)[0]})
        return InboundRequest(
            method="POST",
            url=f"{url}{'&' if '?' in url else '?'}{token}",
            headers={"content-type": f"{_MULTIPART}; boundary={boundary}", "user-agent": "hookhub-send-test"},
            body=f"{body}--{boundary}--\r\n".encode(),
        )


connector = JotformConnector()
