"""Slack message bodies for a Submission: Block Kit by default, or a route's text template
(helper of `slack`, not a destination type).

Limits come from Slack's Block Kit reference (https://docs.slack.dev/reference/block-kit/blocks;
each limit's source is listed in docs/destinations/slack.md): 50 blocks per
message, header plain_text ≤150, section text ≤3000, ≤10 section fields of ≤2000 each. Slack
rejects a message that breaks one (400 invalid_blocks / invalid_payload), and a retry cannot
fix that, so every text is clipped here with an ellipsis instead.

Lengths are counted in UTF-16 code units: Slack does not say how it counts, and that count is
never smaller than the number of code points, so a clipped text fits either way.
"""

from __future__ import annotations

import re
from typing import Any

from flows.mapping import MappingError, format_value, render
from hub.submission import AnswerValue, Submission

MAX_BLOCKS = 50
HEADER_CHARS = 150
SECTION_TEXT_CHARS = 3000
FIELD_CHARS = 2000
FIELDS_PER_SECTION = 10
CONTEXT_TEXT_CHARS = 3000
FALLBACK_TEXT_CHARS = 3000
"""The top-level `text` is what notifications show; keep it short like a section text."""
LABEL_CHARS = 200
SHORT_ANSWER_CHARS = 120
"""Answers longer than this get a full-width section (3000) instead of a two-column field (2000)."""
MAX_LINK_CHARS = 1000
TEMPLATE_TEXT_CHARS = 40_000
"""Slack truncates a longer `text` (unconfirmed) or answers msg_too_long: clip it first."""
ELLIPSIS = "…"

Block = dict[str, Any]


def escape(text: str) -> str:
    """Escape Slack's mrkdwn control characters so user text cannot form links or mentions."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def units(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def clip(text: str, limit: int, escaped: bool = False) -> str:
    """`text` cut to at most `limit` UTF-16 units, ending in an ellipsis when cut.

    `escaped`: text went through `escape`, so a trailing partial entity (`&am`) is dropped too.
    """
    if units(text) <= limit:
        return text
    budget = limit - units(ELLIPSIS)
    kept: list[str] = []
    used = 0
    for char in text:
        width = 2 if ord(char) > 0xFFFF else 1
        if used + width > budget:
            break
        kept.append(char)
        used += width
    cut = "".join(kept)
    if escaped:
        cut = re.sub(r"&[a-z]*$", "", cut)
    return cut + ELLIPSIS


def mrkdwn(text: str, limit: int) -> Block:
    return {"type": "mrkdwn", "text": clip(text, limit, escaped=True)}


def title_of(submission: Submission) -> str:
    # A header must not be empty: Slack rejects the whole message for it.
    title = submission.form_title or submission.form_id or submission.source or ""
    return title.strip() or "Form submission"


def respondent_of(submission: Submission) -> str | None:
    if submission.name and submission.email:
        return f"{submission.name} ({submission.email})"
    return submission.name or submission.email


def fallback_text(submission: Submission) -> str:
    """The notification text: form and respondent, escaped (Slack parses it as mrkdwn)."""
    who = respondent_of(submission)
    text = f"New submission: {title_of(submission)}" + (f" from {who}" if who else "")
    return clip(escape(text), FALLBACK_TEXT_CHARS, escaped=True)


def _answer_text(label: str, value: AnswerValue, limit: int) -> str:
    head = f"*{clip(escape(label), LABEL_CHARS, escaped=True)}*\n"
    return head + clip(escape(format_value(value)), limit - units(head), escaped=True)


def _answer_chunks(submission: Submission) -> list[tuple[Block, int]]:
    """Answer blocks in form order with how many answers each holds.

    Short answers share sections as two-column fields; a long one gets its own section so
    it can use the larger section limit.
    """
    chunks: list[tuple[Block, int]] = []
    fields: list[Block] = []

    def flush() -> None:
        if fields:
            chunks.append(({"type": "section", "fields": list(fields)}, len(fields)))
            fields.clear()

    for answer in submission.answers:
        label = answer.label or answer.key
        if units(format_value(answer.value)) > SHORT_ANSWER_CHARS:
            flush()
            text = _answer_text(label, answer.value, SECTION_TEXT_CHARS)
            chunks.append(({"type": "section", "text": {"type": "mrkdwn", "text": text}}, 1))
            continue
        fields.append({"type": "mrkdwn", "text": _answer_text(label, answer.value, FIELD_CHARS)})
        if len(fields) == FIELDS_PER_SECTION:
            flush()
    flush()
    return chunks


def _respondent_block(submission: Submission) -> Block | None:
    fields = [
        mrkdwn(f"*{name}*\n{escape(value)}", FIELD_CHARS)
        for name, value in (("Name", submission.name), ("Email", submission.email))
        if value
    ]
    return {"type": "section", "fields": fields} if fields else None


def _link(record_link: str | None, label: str) -> str | None:
    """A mrkdwn link to the hub's record, or None when there is none or it is absurdly long.

    A link must stay whole (a clipped URL points somewhere else), so it is never clipped.
    """
    if not record_link or units(record_link) > MAX_LINK_CHARS:
        return None
    return f"<{escape(record_link)}|{label}>"


def _footer_block(submission: Submission, record_link: str | None) -> Block:
    submitted = submission.submitted_at.strftime("%Y-%m-%d %H:%M UTC")
    text = escape(f"Submitted {submitted} · source {submission.source}")
    link = _link(record_link, "View in hookhub")
    if link:
        text = clip(text, CONTEXT_TEXT_CHARS - units(link) - 3, escaped=True) + " · " + link
    return {"type": "context", "elements": [mrkdwn(text, CONTEXT_TEXT_CHARS)]}


def render_blocks(submission: Submission, record_link: str | None) -> list[Block]:
    """Header, respondent, answers and a footer, within MAX_BLOCKS."""
    head: list[Block] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(title_of(submission), HEADER_CHARS)}}
    ]
    respondent = _respondent_block(submission)
    if respondent:
        head.append(respondent)
    footer = _footer_block(submission, record_link)
    chunks = _answer_chunks(submission)
    budget = MAX_BLOCKS - len(head) - 1
    if len(chunks) > budget:
        # Keep room for one line saying how many answers were left out.
        shown = chunks[: budget - 1]
        hidden = len(submission.answers) - sum(count for _, count in shown)
        more = f"…and {hidden} more answer{'s' if hidden != 1 else ''} not shown here"
        link = _link(record_link, "see the full submission")
        if link:
            more += f": {link}"
        chunks = [*shown, ({"type": "context", "elements": [mrkdwn(more, CONTEXT_TEXT_CHARS)]}, 0)]
    return [*head, *(block for block, _ in chunks), footer]


def render_message(
    submission: Submission,
    record_link: str | None,
    username: str | None = None,
    icon_emoji: str | None = None,
) -> dict[str, Any]:
    """The default message body: blocks plus the `text` notifications show."""
    message: dict[str, Any] = {
        "text": fallback_text(submission),
        "blocks": render_blocks(submission, record_link),
    }
    return _with_identity(message, username, icon_emoji)


def render_template_message(
    template: str,
    submission: Submission,
    username: str | None = None,
    icon_emoji: str | None = None,
) -> dict[str, Any]:
    """A plain-text message from an admin's Jinja template; raises MappingError.

    The template's own markup (`*bold*`, `<https://…|links>`) is kept, while what respondents
    typed is escaped before rendering, so an answer cannot mention @channel or forge a link.
    """
    text = render(template, escaped_submission(submission), field="template").strip()
    if not text:
        raise MappingError("template: rendered to an empty message; Slack refuses a message without text")
    return _with_identity({"text": clip(text, TEMPLATE_TEXT_CHARS, escaped=True)}, username, icon_emoji)


def escaped_submission(submission: Submission) -> Submission:
    """`submission` with respondent-supplied text mrkdwn-escaped.

    Answer keys and labels are left alone: the form owner wrote them, and templates look
    answers up by them (`answers['Terms & conditions']`).
    """
    answers = [answer.model_copy(update={"value": _escaped(answer.value)}) for answer in submission.answers]
    return submission.model_copy(
        update={
            "form_title": _escaped(submission.form_title),
            "email": _escaped(submission.email),
            "name": _escaped(submission.name),
            "answers": answers,
            "hidden": _escaped(submission.hidden),
            "metadata": _escaped(submission.metadata),
        }
    )


def _escaped(value: Any) -> Any:
    if isinstance(value, str):
        return escape(value)
    if isinstance(value, list):
        return [_escaped(item) for item in value]
    if isinstance(value, dict):
        return {key: _escaped(item) for key, item in value.items()}
    return value


def _with_identity(message: dict[str, Any], username: str | None, icon_emoji: str | None) -> dict[str, Any]:
    if username:
        message["username"] = username
    if icon_emoji:
        message["icon_emoji"] = icon_emoji
    return message
