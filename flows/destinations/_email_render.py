"""E-mail content shared by `smtp`, `sendgrid` and `postmark` (a helper, not a destination type).

One rendering for the three: subject, plain-text and HTML bodies from Jinja templates in the
sandbox of flows/mapping.py, with its filters and names plus `title`, `submitted`, `record_link`
and `text` on each `answer_list` entry; HTML templates run with autoescape, so an answer can never
inject markup. Headers come from rendered user data, so every header value is flattened to one
line (no header injection) and every address is checked before anything is sent; in recipient
templates each `{{ }}` value must stay within one address, so an answer cannot add a recipient. Per-item
problems (a template that does not render, a recipient that is not an address) raise
`MappingError`, which fails that item only. Limit: ≤50 recipients per message (Postmark's
ErrorCode 300, https://postmarkapp.com/support/article/1180-what-does-errorcode-300-mean)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from jinja2 import Template, TemplateError
from jinja2.sandbox import SandboxedEnvironment

from flows.destinations._email_settings import (
    MAP_FIELDS,
    EmailSettings,
    Mailbox,
    address_value_problem,
    domain_of,
    has_jinja,
    one_line,
    parse_mailboxes,
)
from flows.destinations.base import DeliveryItem
from flows.mapping import MappingError, Rendered, format_value, run_template, sandbox, split_values
from flows.mapping import context as mapping_context
from hub.submission import Submission

MAX_RECIPIENTS = 50
"""Postmark's per-message cap (ErrorCode 300); SES has the same. Kept for every path alike."""
SUBJECT_CHARS = 250

DEFAULT_MAP = {"reply_to": "{{ email | default('') }}", "reply_to_name": "{{ name | default('') }}"}
"""Replies go to the respondent, so answering a contact form is one click."""

DEFAULT_TEXT = """\
New submission: {{ title }}

{% if name %}
Name: {{ name }}
{% endif %}
{% if email %}
Email: {{ email }}
{% endif %}
{% if name or email %}

{% endif %}
{% for a in answer_list %}
{{ a.label or a.key }}: {{ a.text | indent(2) }}
{% else %}
(no answers)
{% endfor %}

--
Submitted {{ submitted }} · source {{ source }}
{% if record_link %}
View in hookhub: {{ record_link }}
{% endif %}
"""

_CELL = "border-top:1px solid #dddddd;padding:6px 8px;vertical-align:top;"
DEFAULT_HTML = f"""\
<!DOCTYPE html>
<html>
<head><meta charset="utf-8"><title>{{{{ title }}}}</title></head>
<body style="margin:0;padding:16px;font-family:Helvetica,Arial,sans-serif;color:#1a1a1a;">
<h1 style="font-size:20px;margin:0 0 12px;">{{{{ title }}}}</h1>
{{% if name or email %}}
<p style="margin:0 0 16px;">{{{{ name or '' }}}}{{% if name and email %}} &middot; {{% endif %}}\
{{% if email %}}<a href="mailto:{{{{ email }}}}">{{{{ email }}}}</a>{{% endif %}}</p>
{{% endif %}}
<table role="presentation" cellspacing="0" style="border-collapse:collapse;max-width:640px;">
{{% for a in answer_list %}}
<tr><th align="left" style="{_CELL}">{{{{ a.label or a.key }}}}</th>\
<td style="{_CELL}white-space:pre-wrap;">{{{{ a.text }}}}</td></tr>
{{% else %}}
<tr><td style="{_CELL}">(no answers)</td></tr>
{{% endfor %}}
</table>
<p style="color:#666666;font-size:12px;margin:16px 0 0;">Submitted {{{{ submitted }}}} &middot; \
source {{{{ source }}}}{{% if record_link %}} &middot; <a href="{{{{ record_link }}}}">View in hookhub</a>\
{{% endif %}}</p>
</body>
</html>
"""


@dataclass(frozen=True)
class EmailContent:
    """Everything a sender needs, already checked; nothing here is sent yet."""

    sender: Mailbox
    to: tuple[Mailbox, ...]
    cc: tuple[Mailbox, ...]
    bcc: tuple[Mailbox, ...]
    reply_to: Mailbox | None
    subject: str
    text: str
    html: str | None
    message_id: str
    submission_id: str
    delivery_key: str

    @property
    def recipients(self) -> list[str]:
        return [m.address for m in (*self.to, *self.cc, *self.bcc)]


@lru_cache(maxsize=3)
def environment(html: bool, mark_values: bool = False) -> SandboxedEnvironment:
    # The mapping sandbox (filters, limits), with trim_blocks so body templates can put
    # {% if %} on lines of their own without leaving blank lines behind.
    return sandbox(
        mark_values=mark_values,
        autoescape=html,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


@lru_cache(maxsize=1024)
def _compile(text: str, html: bool, mark_values: bool = False) -> Template:
    return environment(html, mark_values).from_string(text)


def template_problem(text: str, html: bool = False) -> str | None:
    """The syntax problem in an e-mail template, or None (what `hookhub check` reports)."""
    try:
        _compile(text, html)
    except TemplateError as exc:
        lineno = getattr(exc, "lineno", None)  # TemplateSyntaxError's; other TemplateErrors have none
        line = f" (line {lineno})" if lineno else ""
        return f"{exc.message or exc}{line}"
    return None


def render(text: str, names: dict[str, Any], field: str, html: bool = False) -> str:
    return run_template(lambda: _compile(text, html), names, field)


def render_marked(text: str, names: dict[str, Any], field: str) -> Rendered:
    """The plain-text rendering with each `{{ }}` output kept apart (see `flows.mapping.split_values`)."""
    return split_values(run_template(lambda: _compile(text, False, True), names, field))


def template_names(submission: Submission, record_link: str | None) -> dict[str, Any]:
    """What e-mail templates see: the mapping names plus a title, the time and the hub's link."""
    names = mapping_context(submission)
    # Each answer also as people read it (`a.text`): lists joined, Yes/No, "(no answer)".
    names["answer_list"] = [
        {**entry, "text": format_value(answer.value)}
        for entry, answer in zip(names["answer_list"], submission.answers, strict=True)
    ]
    title = submission.form_title or submission.form_id or submission.source or ""
    names["title"] = title.strip() or "Form submission"
    names["submitted"] = submission.submitted_at.strftime("%Y-%m-%d %H:%M UTC")
    names["record_link"] = record_link
    return names


def _mailboxes(text: str, field: str) -> list[Mailbox]:
    try:
        return parse_mailboxes(text)
    except ValueError as exc:
        raise MappingError(f"{field}: {exc}") from None


def message_id(delivery_key: str, sender: Mailbox) -> str:
    """The same Message-ID on every attempt for one (submission, destination): SMTP's only dedupe handle."""
    digest = hashlib.sha256(delivery_key.encode("utf-8")).hexdigest()[:32]
    return f"<{digest}.hookhub@{sender.address.rpartition('@')[2]}>"


def _chosen_map(settings: EmailSettings, item: DeliveryItem) -> dict[str, str]:
    """The route's map when it has one, else the config's (it replaces, as for every destination)."""
    chosen = item.mapping if item.mapping is not None else (settings.map or {})
    unknown = sorted(set(chosen) - set(MAP_FIELDS))
    if unknown:
        raise MappingError(f"map.{unknown[0]}: not an e-mail field; known: {', '.join(MAP_FIELDS)}")
    return chosen


def _recipients(
    settings: EmailSettings, chosen: dict[str, str], names: dict[str, Any]
) -> tuple[list[Mailbox], list[Mailbox], list[Mailbox]]:
    lists: list[list[Mailbox]] = []
    seen: set[str] = set()
    for name in ("to", "cc", "bcc"):
        # Config lists hold one template per entry; a map gives one comma-separated template.
        entries = (
            [(f"map.{name}", chosen[name])]
            if name in chosen
            else [(f"{name}[{index}]", entry) for index, entry in enumerate(getattr(settings, name))]
        )
        unique: list[Mailbox] = []
        for field, entry in entries:
            for mailbox in _addresses(entry, names, field, settings.allowed_recipient_domains):
                # An address twice in one message is a 400 at SendGrid, a double mail elsewhere.
                if mailbox.address.lower() not in seen:
                    seen.add(mailbox.address.lower())
                    unique.append(mailbox)
        lists.append(unique)
    if not lists[0]:
        raise MappingError("to: no recipient address (every `to` template rendered empty)")
    if len(seen) > MAX_RECIPIENTS:
        raise MappingError(f"to/cc/bcc: {len(seen)} recipients, at most {MAX_RECIPIENTS} per message")
    return lists[0], lists[1], lists[2]


def _addresses(entry: str, names: dict[str, Any], field: str, allowed: list[str] | None) -> list[Mailbox]:
    """The mailboxes of one recipient entry. Each `{{ }}` value may come from a respondent, so it
    may only be (part of) one address: separators, brackets, quotes and white space in it would let
    an answer such as `attacker@evil.example, sales` add a recipient (separators the admin wrote
    outside `{{ }}` are the admin's)."""
    if not has_jinja(entry):
        mailboxes = _mailboxes(entry, field)
    else:
        rendered = render_marked(entry, names, field)
        for value in rendered.values:
            problem = address_value_problem(value)
            if problem:
                raise MappingError(
                    f"{field}: the value {one_line(value, 80)!r} from the submission holds "
                    f"{problem}; a value from a submission must stay within one address, "
                    "so nothing was sent"
                )
        mailboxes = _mailboxes(rendered.text, field)
    if allowed is not None:
        for mailbox in mailboxes:
            if domain_of(mailbox.address) not in allowed:
                raise MappingError(
                    f"{field}: {mailbox.address} is outside allowed_recipient_domains "
                    f"({', '.join(allowed)}), so nothing was sent"
                )
    return mailboxes


def _reply_to(chosen: dict[str, str], names: dict[str, Any]) -> Mailbox | None:
    fields = {**DEFAULT_MAP, **chosen}
    address = render(fields["reply_to"], names, "map.reply_to").strip()
    name = one_line(render(fields["reply_to_name"], names, "map.reply_to_name"), 100)
    try:
        found = parse_mailboxes(address)
    except ValueError:
        found = []
    if len(found) != 1:
        # The respondent typed the address: a bad one must not cost the notification itself.
        return None
    return Mailbox(name or found[0].name, found[0].address)


def _bodies(settings: EmailSettings, item: DeliveryItem, names: dict[str, Any]) -> tuple[str, str | None]:
    text_template: str | None
    if item.template is not None:
        text_template, field = item.template, "template"
    else:
        text_template, field = settings.text_template, "text_template"
    text = render(text_template or DEFAULT_TEXT, names, field)
    if not settings.html:
        return text, None
    if item.template is None and settings.html_template:
        return text, render(settings.html_template, names, "html_template", html=True)
    if text_template is not None:
        # A custom text body: the HTML part shows that same text, not the default layout.
        return text, render(TEXT_AS_HTML, {"text": text}, field, html=True)
    return text, render(DEFAULT_HTML, names, "html_template", html=True)


def render_email(settings: EmailSettings, item: DeliveryItem, record_link: str | None) -> EmailContent:
    """The e-mail for one item; MappingError (naming the field) when it cannot be built."""
    names = template_names(item.submission, record_link)
    chosen = _chosen_map(settings, item)
    to, cc, bcc = _recipients(settings, chosen, names)
    subject_field = "map.subject" if "subject" in chosen else "subject"
    subject = render(chosen.get("subject", settings.subject), names, subject_field)
    text, html = _bodies(settings, item, names)
    sender = settings.sender
    return EmailContent(
        sender=sender,
        to=tuple(to),
        cc=tuple(cc),
        bcc=tuple(bcc),
        reply_to=_reply_to(chosen, names),
        subject=one_line(subject, SUBJECT_CHARS) or "New submission",
        text=text,
        html=html,
        message_id=message_id(item.key, sender),
        submission_id=item.submission.id,
        delivery_key=item.key,
    )


def check_email(settings: EmailSettings) -> list[str]:
    """Template syntax problems `hookhub check` reports before start, one line each."""
    templates: list[tuple[str, str, bool]] = [("subject", settings.subject, False)]
    for name in ("to", "cc", "bcc"):
        templates += [(f"{name}[{i}]", entry, False) for i, entry in enumerate(getattr(settings, name))]
    if settings.text_template is not None:
        templates.append(("text_template", settings.text_template, False))
    if settings.html_template is not None:
        templates.append(("html_template", settings.html_template, True))
    templates += [(f"map.{key}", text, False) for key, text in (settings.map or {}).items()]
    problems = []
    for field, text, html in templates:
        problem = template_problem(text, html)
        if problem:
            problems.append(f"{field}: {problem}")
    return problems


TEXT_AS_HTML = (
    '<!DOCTYPE html>\n<html>\n<head><meta charset="utf-8"></head>\n<body>\n'
    '<pre style="font-family:Helvetica,Arial,sans-serif;white-space:pre-wrap;">{{ text }}</pre>\n'
    "</body>\n</html>\n"
)
