"""`hookhub check --against-data DIR`: `when` answer labels no stored submission ever had.

`answers['How many tickets']` against a form whose question is 'How many tickets?' is valid
syntax and silently never true. The only evidence of what a form's labels really are is what
its submissions carried, so this looks at the most recent N normalized submissions of each
source a route takes from, in the store the hub would use with DIR, and warns about every label
the route's `when` reads that none of them had (as a label or as an answer key: evaluation
accepts either, hub/routing/evaluate.py `Evaluation.answer`).

Deliberately NOT compared: a provider's bundled sample (`Connector.sample_request`, what
`hookhub send-test` posts). It is one generic form per provider, and an admin's form asks other
questions, so every real label would "not exist" there: a warning per label, all of them wrong.

Read-only: SQLite is opened with `mode=ro` (no schema creation or upgrade, no writes) and a
PostgreSQL session with `default_transaction_read_only`. Only labels are printed, never an
answer's value (personal data); labels are the admin's own questions.
"""

from __future__ import annotations

import difflib
import sqlite3
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import psycopg
from pydantic import BaseModel, ConfigDict, ValidationError

from hub.config.models import HubConfig
from hub.routing.errors import WhenSyntaxError
from hub.routing.parser import BoolOp, Call, Compare, Field, Node, Not, parse
from hub.store import Connection, StoreError
from hub.store.catalog import tables
from hub.store.location import BadStoreSetting, PostgresStore, SqliteStore, Store, store_from_setting
from hub.store.sqlite import SqliteConnection

DEFAULT_SAMPLE = 500
MAX_LISTED = 8
MAX_LABEL_CHARS = 60
EXIT_NO_DATA = 2


class NoHubData(Exception):
    """DIR holds no spool, or its store cannot be read: one line saying which."""


class _StoredAnswer(BaseModel):
    model_config = ConfigDict(extra="ignore")
    key: str
    label: str


class _StoredSubmission(BaseModel):
    """Only the answers' names: values are never read into anything that could print them."""

    model_config = ConfigDict(extra="ignore")
    answers: list[_StoredAnswer] = []


@dataclass
class SourceSample:
    looked_at: int = 0
    labels: Counter[str] = field(default_factory=Counter)
    keys: set[str] = field(default_factory=set)

    def has(self, name: str) -> bool:
        return name in self.labels or name in self.keys


def check_against_data(
    config: HubConfig, data_dir: Path, environ: Mapping[str, str], sample: int = DEFAULT_SAMPLE
) -> tuple[int, list[str]]:
    """(0, warning and note lines), or (EXIT_NO_DATA, [the one line saying why nothing was read])."""
    try:
        store = store_from_setting(config.store, data_dir, dict(environ))
        conn = open_read_only(store, data_dir)
    except (NoHubData, BadStoreSetting) as exc:
        return EXIT_NO_DATA, [f"error: {exc}"]
    try:
        return 0, label_findings(config, conn, sample)
    except StoreError as exc:
        return EXIT_NO_DATA, [f"error: {store.key}: cannot read stored submissions: {_first_line(exc)}"]
    finally:
        conn.close()


def open_read_only(store: Store, data_dir: Path) -> Connection:
    """A connection that cannot change the store; raises NoHubData when there is no spool to read."""
    if isinstance(store, SqliteStore):
        if not store.file.is_file():
            where = f"{data_dir}: no hub data here" if store.file.parent == data_dir else str(store.file)
            raise NoHubData(f"{where} (no {store.file.name})")
        try:
            conn: Connection = sqlite3.connect(
                f"{store.file.resolve().as_uri()}?mode=ro", uri=True, factory=SqliteConnection
            )
            conn.execute("PRAGMA busy_timeout=30000")
            found = tables(conn)
        except sqlite3.Error as exc:
            raise NoHubData(f"{store.file}: not a hub spool ({_first_line(exc)})") from None
    elif isinstance(store, PostgresStore):
        from hub.store.postgres.connection import PostgresConnection

        try:
            conn = PostgresConnection.open(store.url)
            conn.execute("SET default_transaction_read_only = on")
            found = tables(conn)
        except psycopg.Error as exc:
            raise NoHubData(f"cannot reach the store {store.key}: {_first_line(exc)}") from None
    else:  # the Store protocol has no third kind today; say so rather than guess
        raise NoHubData(f"{store.key}: a store this check cannot open read-only")
    if "inbox" not in found:
        conn.close()
        raise NoHubData(f"{store.key}: no hub data here (no inbox table)")
    return conn


def answer_labels(when: str) -> list[str]:
    """The answer labels or keys a condition reads, in order of first use, from its parsed tree."""
    try:
        tree = parse(when)
    except WhenSyntaxError:  # reported by the config check itself
        return []
    return list(dict.fromkeys(f.keys[0] for f in _fields(tree) if f.root == "answers" and f.keys))


def _fields(node: Node) -> Iterator[Field]:
    if isinstance(node, Field):
        yield node
    elif isinstance(node, Call):
        yield from _fields(node.arg)
    elif isinstance(node, Not):
        yield from _fields(node.operand)
    elif isinstance(node, (BoolOp, Compare)):
        yield from _fields(node.left)
        yield from _fields(node.right)


def recent_sample(conn: Connection, source: str, limit: int) -> SourceSample:
    """The labels and keys of `source`'s `limit` most recently received normalized submissions."""
    out = SourceSample()
    rows = conn.execute(
        "SELECT submission FROM inbox WHERE source = ? AND submission IS NOT NULL"
        " ORDER BY received_at DESC, id DESC LIMIT ?",
        (source, limit),
    )
    for (text,) in rows:
        try:
            stored = _StoredSubmission.model_validate_json(text)
        except ValidationError:  # a row this version cannot read tells nothing about labels
            continue
        out.looked_at += 1
        out.labels.update(list(dict.fromkeys(a.label for a in stored.answers)))  # once each, form order
        out.keys.update(a.key for a in stored.answers)
    return out


def label_findings(config: HubConfig, conn: Connection, sample: int) -> list[str]:
    samples: dict[str, SourceSample] = {}
    lines: list[str] = []
    noted: set[str] = set()
    for index, route in enumerate(config.routes):
        labels = answer_labels(route.when) if route.when else []
        if not labels:
            continue
        sources = list(config.sources) if "*" in route.from_ else list(dict.fromkeys(route.from_))
        for source in sources:
            if source not in samples:
                samples[source] = recent_sample(conn, source, sample)
        empty = [s for s in sources if samples[s].looked_at == 0]
        for source in empty:
            if source not in noted:
                noted.add(source)
                lines.append(f"note: no stored submissions of {source} to compare `when` labels against")
        with_data = [s for s in sources if s not in empty]
        seen = [samples[s] for s in with_data]
        for label in labels:
            if seen and not any(s.has(label) for s in seen):
                where = f"routes[{index}].when ({route.name})"
                lines.append(f"warning: {where}: {_missing(label, with_data, seen)}")
    return lines


def _missing(label: str, sources: list[str], seen: list[SourceSample]) -> str:
    counts: Counter[str] = Counter()
    for s in seen:
        counts.update(s.labels)
    names = [name for name, _ in counts.most_common()]
    keys = sorted({k for s in seen for k in s.keys} - set(names))
    # Compared without case: 'how many tickets?' should point at 'How many tickets?'.
    folded = {name.casefold(): name for name in reversed(names + keys)}
    close = [folded[c] for c in difflib.get_close_matches(label.casefold(), list(folded), n=1)]
    looked_at = sum(s.looked_at for s in seen)
    head = f"no recent submission of {', '.join(sources)} has an answer {_quote(label)}"
    if not names:
        return f"{head} ({looked_at} looked at; none had any answers)"
    # The near miss first, so the list shows it even when the form has many questions.
    listed = list(dict.fromkeys(close + names))[:MAX_LISTED]
    more = ", ..." if set(names) - set(listed) else ""
    shown = ", ".join(map(_quote, listed)) + more
    hint = f"a typo? did you mean {_quote(close[0])}" if close else "a typo?"
    return f"{head} ({looked_at} looked at; labels seen include: {shown}) — {hint}"


def _quote(label: str) -> str:
    shown = label if len(label) <= MAX_LABEL_CHARS else label[: MAX_LABEL_CHARS - 1] + "…"
    return repr(shown)


def _first_line(error: Exception) -> str:
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__
