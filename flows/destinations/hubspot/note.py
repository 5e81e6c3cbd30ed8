"""The note `hubspot` can attach to a contact with the full answers (helper, not a destination type).

This follows HubSpot's notes guide
(https://developers.hubspot.com/docs/api-reference/crm-notes-v3/guide):
`POST /crm/v3/objects/notes` with `hs_timestamp` (required; UTC ISO 8601 accepted) and
`hs_note_body` (at most 65,536 characters), associated to the contact with the HUBSPOT_DEFINED
association type 202 (note to contact).

The note is plain text made safe for HubSpot's rich-text body: every line is HTML-escaped and
lines are joined with <br>, so an answer cannot inject markup.
"""

from __future__ import annotations

import html
from typing import Any

from flows.mapping import format_value, render
from hub.submission import Submission, iso_utc

MAX_BODY_CHARS = 65_536
NOTE_TO_CONTACT = 202
CLIPPED = "<br>… (clipped: HubSpot notes hold at most 65,536 characters)"


def default_text(submission: Submission, record_link: str | None) -> str:
    """Form, time and source, then every answer as `Label: value`, in form order."""
    title = (submission.form_title or submission.form_id or submission.source or "").strip() or "Form"
    lines = [
        f"{title}: new submission",
        f"Submitted {submission.submitted_at.strftime('%Y-%m-%d %H:%M UTC')} · source {submission.source}",
        "",
    ]
    for answer in submission.answers:
        lines.append(f"{answer.label or answer.key}: {format_value(answer.value)}")
    if not submission.answers:
        lines.append("(no answers)")
    if record_link:
        lines += ["", f"In hookhub: {record_link}"]
    return "\n".join(lines)


def note_text(submission: Submission, template: str | None, record_link: str | None) -> str:
    """The note's text: the template's (MappingError names `note_template`) or the default."""
    if template is None:
        return default_text(submission, record_link)
    return render(template, submission, field="note_template")


def to_html(text: str) -> str:
    """Escaped lines joined by <br>, clipped between lines to HubSpot's limit."""
    out: list[str] = []
    size = 0
    budget = MAX_BODY_CHARS - len(CLIPPED)
    for line in text.strip("\n").split("\n"):
        piece = html.escape(line.rstrip("\r"), quote=False)
        cost = len(piece) + (4 if out else 0)
        if size + cost > budget:
            room = budget - size - (4 if out else 0)
            if room > 0:
                out.append(_cut(piece, room))
            return "<br>".join(out) + CLIPPED
        out.append(piece)
        size += cost
    return "<br>".join(out)


def _cut(escaped: str, room: int) -> str:
    """At most `room` characters of escaped text, never ending inside an entity such as &amp;."""
    cut = escaped[:room]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut


def note_request(contact_id: str, submission: Submission, body_html: str) -> dict[str, Any]:
    return {
        "properties": {"hs_timestamp": iso_utc(submission.submitted_at), "hs_note_body": body_html},
        "associations": [
            {
                "to": {"id": contact_id},
                "types": [{"associationCategory": "HUBSPOT_DEFINED", "associationTypeId": NOTE_TO_CONTACT}],
            }
        ],
    }
