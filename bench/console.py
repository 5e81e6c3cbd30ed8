"""The console's data layer on a spool of 1,000,000 submissions: list, search by e-mail, detail.

Builds (once, then reused from the cache dir) a spool like a year of a busy hub: a few hundred
sources and forms, realistic Submission JSON and raw bodies, two deliveries per submission
(mostly delivered, some retrying or dead) with their attempts and search terms. Then times,
over many random keys, hookhub's own functions (hub/spool/search.py, detail.py: SQL, row
mapping, pydantic models) beside the same SQL run directly in SQLite (for the detail: its three
SELECTs of the inbox row, deliveries and attempts), key by key, and prints p50/p95 in ms.

    python bench/console.py [--submissions 1000000] [--samples 400] [--cache DIR]

The HTTP pages (hub/console) are timed by `measure_pages`, which the console adds: it gets the
same BenchContext (spool, config, sample ids and e-mails) and returns more Timing rows.
"""

from __future__ import annotations

import argparse
import json
import random
import sqlite3
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hub.config.loader import load_config
from hub.config.models import HubConfig
from hub.spool.detail import submission_detail
from hub.spool.ids import encode_time
from hub.spool.schema import SPOOL_FILE
from hub.spool.search import Cursor, SearchQuery, build_sql, search
from hub.spool.terms import BACKFILL_KEY, terms_of
from hub.spool.transactions import open_spool

SOURCES = 300
FORMS_PER_SOURCE = 2
DAY = 86400.0
CHUNK = 50_000
FIRST = ["Chloé", "Bob", "Ana", "Léa", "Omar", "Yuki", "Priya", "Jonas", "Fatima", "Mateo", "Zoë", "Ivan"]
LAST = ["Martin", "Stone", "García", "Dubois", "Khan", "Sato", "Müller", "Okafor", "Rossi", "Nguyen"]


class Timing(NamedTuple):
    """One row of the report: a name, its p50 and p95 in ms, and the row it is compared with."""

    name: str
    p50_ms: float
    p95_ms: float
    baseline: str = ""


class BenchContext(NamedTuple):
    """What every measurement of one run shares: the spool, its config, the random keys."""

    spool: Path
    config: Path
    ids: list[str]
    emails: list[str]
    cursors: list[Cursor]
    samples: int


def measure(name: str, keys: list[Any], call: Callable[[Any], object], baseline: str = "") -> Timing:
    """p50/p95 of `call(key)` over `keys`, each timed alone (wall clock, warm cache)."""
    for key in keys[:20]:
        call(key)
    times = []
    for key in keys:
        start = time.perf_counter()
        call(key)
        times.append((time.perf_counter() - start) * 1000)
    return _timing(name, times, baseline)


def _timing(name: str, times: list[float], baseline: str = "") -> Timing:
    times = sorted(times)
    return Timing(name, statistics.median(times), times[int(len(times) * 0.95) - 1], baseline)


def measure_pair(
    name: str, keys: list[Any], sql: Callable[[Any], object], hookhub: Callable[[Any], object]
) -> list[Timing]:
    """The plain SQL and hookhub's function on the same keys, key by key, the one going first
    alternating: neither runs on pages the other has just read more often than it does."""
    times: tuple[list[float], list[float]] = ([], [])
    for n, key in enumerate(keys):
        order = (0, 1) if n % 2 else (1, 0)
        for side in order:
            start = time.perf_counter()
            (sql, hookhub)[side](key)
            times[side].append((time.perf_counter() - start) * 1000)
    return [_timing(f"sql: {name}", times[0]), _timing(name, times[1], f"sql: {name}")]


def measure_pages(ctx: BenchContext) -> list[Timing]:
    """The console's pages through HTTP, beside the rows they show (bench/console_pages.py)."""
    from bench.console_pages import measure_pages as pages

    return pages(ctx)


def write_config(path: Path) -> Path:
    sources = "\n".join(
        f"  s{n:03d}: {{provider: typeform, secret: bench-secret-{n:03d}}}" for n in range(SOURCES)
    )
    path.write_text(
        f"sources:\n{sources}\n"
        "destinations:\n  crm: {type: file, path: crm.jsonl}\n  chat: {type: file, path: chat.jsonl}\n"
        "routes:\n  - {name: all, from: ['*'], to: [crm]}\n"
        "  - {name: vip, from: ['*'], when: \"email endswith '@vip.example'\", to: [chat]}\n"
        "  - {name: chat-few, from: [s000, s001], to: [chat]}\n",
        encoding="utf-8",
    )
    return path


def _rows(n: int, seed: int, now: float) -> Iterator[tuple[list[tuple[Any, ...]], ...]]:
    """Chunks of (inbox, deliveries, attempts, terms) rows, oldest first."""
    rng = random.Random(seed)
    start = now - 365 * DAY
    step = 365 * DAY / n
    for base in range(0, n, CHUNK):
        inbox, deliveries, attempts, terms = [], [], [], []
        for i in range(base, min(n, base + CHUNK)):
            at = start + i * step + rng.random() * step
            inbox_id = encode_time(int(at * 1000)) + "".join(
                rng.choices("0123456789ABCDEFGHJKMNPQRSTVWXYZ", k=16)
            )
            source = f"s{rng.randrange(SOURCES):03d}"
            first, last = rng.choice(FIRST), rng.choice(LAST)
            domain = "vip.example" if rng.random() < 0.02 else "example.com"
            email = f"{first.lower()}.{last.lower()}{rng.randrange(100_000)}@{domain}"
            answers = [
                {
                    "key": f"q{k}",
                    "label": f"Question {k}",
                    "type": "text",
                    "value": f"answer {rng.random():.6f}",
                }
                for k in range(6)
            ]
            submission = {
                "id": inbox_id,
                "source": source,
                "provider": "typeform",
                "form_id": f"{source}-form{rng.randrange(FORMS_PER_SOURCE)}",
                "form_title": "Contact us",
                "event_id": f"evt-{i}",
                "submitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(at)),
                "email": email,
                "name": f"{first} {last}",
                "answers": answers,
                "hidden": {},
                "metadata": {},
            }
            text = json.dumps(submission, ensure_ascii=False, separators=(",", ":"))
            body = json.dumps({"event_id": f"evt-{i}", "form_response": {"answers": answers, "email": email}})
            headers = (
                '{"content-type":"application/json","typeform-signature":"sha256=x","user-agent":"Typeform"}'
            )
            inbox.append((inbox_id, at, source, f"evt-{i}", body.encode(), headers, text, at + 5))
            terms += [(kind, value, at, inbox_id, source) for kind, value in terms_of(text)]
            for destination in ("crm", "chat") if rng.random() < 0.3 else ("crm",):
                roll = rng.random()
                status, tries = (
                    ("dead", 3) if roll < 0.01 else ("retrying", 2) if roll < 0.02 else ("delivered", 1)
                )
                deliveries.append((inbox_id, destination, status, tries, at + 5, f"rid-{i}", at))
                attempts += [
                    (
                        inbox_id,
                        destination,
                        k + 1,
                        at + 5 + k * 60,
                        "delivered" if k + 1 == tries else "retry",
                    )
                    for k in range(tries)
                ]
        yield inbox, deliveries, attempts, terms


def build(path: Path, n: int, now: float) -> None:
    """The spool, written in one transaction (executemany per table and chunk)."""
    open_spool(path).close()
    conn = sqlite3.connect(path, isolation_level=None)
    # No journal while building a throwaway file: a 1,000,000-row transaction would first write
    # the whole database into the WAL once more.
    conn.execute("PRAGMA journal_mode=OFF")
    conn.execute("PRAGMA synchronous=OFF")
    conn.execute("BEGIN")
    for number, (inbox, deliveries, attempts, terms) in enumerate(_rows(n, 14, now)):
        conn.executemany(
            "INSERT INTO inbox (id, received_at, source, provider, event_id, kind, method, url, headers,"
            " body, state, submission, updated_at) VALUES (?,?,?,'typeform',?,'submission','POST',"
            " 'https://hub.example/hooks/x',?,?,'done',?,?)",
            [(r[0], r[1], r[2], r[3], r[5], r[4], r[6], r[7]) for r in inbox],
        )
        conn.executemany(
            "INSERT INTO deliveries (inbox_id, destination, route, status, attempts, next_attempt_at,"
            " last_attempt_at, remote_id, created_at) VALUES (?,?,'all',?,?,?,?,?,?)",
            [(d[0], d[1], d[2], d[3], d[4], d[4], d[5], d[6]) for d in deliveries],
        )
        conn.executemany(
            "INSERT INTO attempts (inbox_id, destination, attempt, at, outcome, status_code)"
            " VALUES (?,?,?,?,?,200)",
            attempts,
        )
        conn.executemany("INSERT OR IGNORE INTO submission_terms VALUES (?,?,?,?,?)", terms)
        done = min(n, (number + 1) * CHUNK)
        print(f"\r  {done:,} / {n:,} submissions", end="", file=sys.stderr, flush=True)
    conn.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, 'done')", (BACKFILL_KEY,))
    conn.execute("COMMIT")
    conn.execute("PRAGMA journal_mode=WAL")
    conn.close()
    print(file=sys.stderr)


def context(spool: Path, config: Path, samples: int, seed: int = 7) -> BenchContext:
    conn = sqlite3.connect(spool)
    rng = random.Random(seed)
    (rows,) = conn.execute("SELECT max(rowid) FROM inbox").fetchone()
    picked = [
        conn.execute(
            "SELECT id, received_at, json_extract(submission, '$.email') FROM inbox WHERE rowid=?", (r,)
        ).fetchone()
        for r in (rng.randrange(1, rows + 1) for _ in range(samples))
    ]
    conn.close()
    return BenchContext(
        spool=spool,
        config=config,
        ids=[p[0] for p in picked],
        emails=[p[2] for p in picked],
        cursors=[Cursor(received_at=p[1], id=p[0]) for p in picked],
        samples=samples,
    )


def data_layer(ctx: BenchContext, config: HubConfig) -> list[Timing]:
    conn = open_spool(ctx.spool)

    def direct(query: SearchQuery) -> object:
        sql, args = build_sql(query)
        return conn.execute(sql, args).fetchall()

    def raw_detail(inbox_id: str) -> object:
        return (
            conn.execute("SELECT * FROM inbox WHERE id=?", (inbox_id,)).fetchone(),
            conn.execute("SELECT * FROM deliveries WHERE inbox_id=?", (inbox_id,)).fetchall(),
            conn.execute("SELECT * FROM attempts WHERE inbox_id=?", (inbox_id,)).fetchall(),
        )

    first = [SearchQuery()] * ctx.samples
    deep = [SearchQuery(after=c) for c in ctx.cursors]
    by_source = [SearchQuery(source=f"s{i % SOURCES:03d}", after=c) for i, c in enumerate(ctx.cursors)]
    by_email = [SearchQuery(email=e.upper()) for e in ctx.emails]
    # A common first name with a source: the terms range is walked newest first until a page of
    # that source is found (~1 in 300 rows of the name).
    by_name = [
        SearchQuery(name=FIRST[i % len(FIRST)], source=f"s{i % SOURCES:03d}") for i in range(ctx.samples)
    ]

    def found(query: SearchQuery) -> object:
        return search(conn, query)

    return [
        *measure_pair("list, first page", first, direct, found),
        *measure_pair("list, page at a random row", deep, direct, found),
        *measure_pair("list by source, random page", by_source, direct, found),
        *measure_pair("search by e-mail", by_email, direct, found),
        *measure_pair("search by name word and source", by_name, direct, found),
        *measure_pair("detail", ctx.ids, raw_detail, lambda i: submission_detail(conn, i, config)),
    ]


def report(timings: list[Timing]) -> None:
    by_name = {t.name: t for t in timings}
    width = max(len(t.name) for t in timings)
    print(f"{'':<{width}}  {'p50 ms':>8}  {'p95 ms':>8}  p95 vs SQL")
    for t in timings:
        base = by_name.get(t.baseline)
        ratio = f"{t.p95_ms / base.p95_ms:8.1f}x" if base and base.p95_ms else ""
        print(f"{t.name:<{width}}  {t.p50_ms:8.3f}  {t.p95_ms:8.3f}  {ratio}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--submissions", type=int, default=1_000_000)
    parser.add_argument("--samples", type=int, default=400, help="random keys per measurement")
    parser.add_argument(
        "--cache", type=Path, default=Path(".bench-cache"), help="where the built spool is kept"
    )
    args = parser.parse_args()
    data_dir = args.cache / f"console-{args.submissions}"
    spool = data_dir / SPOOL_FILE
    if not spool.exists():
        print(f"building {spool} ({args.submissions:,} submissions, once)", file=sys.stderr)
        started = time.monotonic()
        partial = data_dir / "partial"
        partial.mkdir(parents=True, exist_ok=True)
        build(partial / SPOOL_FILE, args.submissions, time.time())
        (partial / SPOOL_FILE).rename(spool)
        partial.rmdir()
        print(f"built in {time.monotonic() - started:.0f} s", file=sys.stderr)
    config_path = write_config(data_dir.parent / "console-bench.yaml")
    ctx = context(spool, config_path, args.samples)
    size = spool.stat().st_size / 1e9
    print(f"{args.submissions:,} submissions, {size:.2f} GB; {args.samples} random keys each")
    report(data_layer(ctx, load_config(config_path)) + measure_pages(ctx))


if __name__ == "__main__":
    main()
