"""The spool writer's commit on PostgreSQL: psycopg 3 (sync, as the writer's thread uses it) vs asyncpg.

The statement is the writer's own (hub/spool/inbox_rows.py `insert_sql`): one multi-row
`INSERT INTO inbox ... ON CONFLICT (source, event_id) DO NOTHING` per group, its own
transaction, into the real schema (hub/store/postgres/schema.py, with its five inbox indexes),
rows of ~2 KB JSON bodies, in groups of 1, 16 and 128 rows. Measured through:

- psycopg: hub/store/postgres/connection.py's PostgresConnection, autocommit, as the writer;
- psycopg raw $n: the same statement with $n placeholders through psycopg's RawCursor (no
  client-side parse of the statement text, see psycopg_variant);
- asyncpg: the same statement with $n placeholders, awaited in an event loop;
- asyncpg executemany: the one-row statement for each row, in one transaction per group;
- SQLite (synchronous=FULL, WAL, the spool's schema): the embedded baseline, in the same run.

Each round measures every variant for each group size, the variants in a rotated order from
round to round (so none always runs first, on a colder or warmer server), each for --seconds
after one warm-up group, into an emptied table. Prints per group size and variant: rows/s and
commits/s as median [min-max] over the rounds, and the client's CPU per row (this process:
the driver's encoding and, for asyncpg, its event loop), which a writer thread competes for
with the receiver's event loop.

    python bench/store_writer.py [--rounds 3] [--seconds 2] [--groups 1,16,128] [--body 2048]

PostgreSQL: HOOKHUB_TEST_POSTGRES_URL, else postgresql://postgres@127.0.0.1:5432/test (as the
tests, tests/postgres.py); the bench works in a schema of its own and drops it at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import psycopg

try:
    import asyncpg
except ImportError:  # not a dependency of hookhub: only this comparison uses it
    sys.exit("bench/store_writer.py compares asyncpg: `pip install asyncpg` into this environment first")

from bench.figures import spread
from hub.spool.inbox_rows import insert_sql as _insert_sql
from hub.spool.schema import connect, ensure_schema
from hub.store.postgres.connection import PostgresConnection
from hub.store.postgres.schema import migrate
from tests.postgres import scratch_schema

Row = tuple[Any, ...]


@dataclass(frozen=True)
class Figure:
    rows: int
    commits: int
    seconds: float
    cpu: float
    server_cpu: float | None
    """The PostgreSQL backend's CPU seconds (its /proc entry; None for SQLite, which has none)."""

    @property
    def rows_per_s(self) -> float:
        return self.rows / self.seconds

    @property
    def commits_per_s(self) -> float:
        return self.commits / self.seconds

    @property
    def cpu_us_per_row(self) -> float:
        return self.cpu / self.rows * 1e6

    @property
    def server_us_per_row(self) -> float | None:
        return None if self.server_cpu is None else self.server_cpu / self.rows * 1e6


def backend_cpu(pid: int | None) -> float:
    """utime + stime of a local process, in seconds (0 without one)."""
    if pid is None:
        return 0.0
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Rows:
    """Unique (source, event_id) rows shaped as the writer's: id, received_at, source, provider,
    event_id, kind, note, method, url, headers, body, state, then updated_at (redeliveries is 0)."""

    def __init__(self, body_size: int) -> None:
        rng = random.Random(7)
        self.bodies = [_body(rng, body_size) for _ in range(64)]
        self.headers = json.dumps(
            {"content-type": "application/json", "typeform-signature": "sha256=" + "a" * 44}
        )
        self.run = uuid.uuid4().hex[:8]
        self.n = 0

    def group(self, size: int) -> list[Row]:
        out = []
        now = time.time()
        for _ in range(size):
            self.n += 1
            out.append(
                (
                    f"{self.run}-{self.n:09d}",
                    now,
                    "contact-form",
                    "typeform",
                    f"ev-{self.run}-{self.n}",
                    "submission",
                    None,
                    "POST",
                    "http://127.0.0.1:8000/hooks/contact-form",
                    self.headers,
                    self.bodies[self.n % len(self.bodies)],
                    "pending",
                    now,
                )
            )
        return out


def _body(rng: random.Random, size: int) -> bytes:
    """A Typeform-like JSON body of about `size` bytes (answers of random words and numbers)."""
    words = ["plan", "pro", "team", "contact", "budget", "yes", "no", "launch", "agency", "forms"]
    answers: list[dict[str, Any]] = []
    while len(json.dumps(answers)) < size - 200:
        answers.append(
            {
                "field": {"id": f"{rng.getrandbits(40):x}", "type": "short_text"},
                "text": " ".join(rng.choices(words, k=6)),
            }
        )
    return json.dumps(
        {"event_id": "x", "form_response": {"answers": answers, "score": rng.random()}}
    ).encode()


def _flat(rows: list[Row]) -> list[Any]:
    return [value for row in rows for value in row]


def _dollar(sql: str) -> str:
    counter = iter(range(1, 1_000_000))
    return re.sub(r"\?", lambda _: f"${next(counter)}", sql)


Measure = Callable[[int, float, Rows], Awaitable[Figure]]


async def _timed(
    commit: Callable[[list[Row]], Awaitable[None]], size: int, seconds: float, rows: Rows, backend: int | None
) -> Figure:
    await commit(rows.group(size))  # warm-up: connection, prepared statement
    done = commits = 0
    server0, cpu0, start = backend_cpu(backend), time.process_time(), time.perf_counter()
    while True:
        await commit(rows.group(size))
        done += size
        commits += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds and commits >= 5:
            cpu = time.process_time() - cpu0
            server = backend_cpu(backend) - server0 if backend is not None else None
            return Figure(done, commits, elapsed, cpu, server)


def sqlite_variant(path: Path) -> tuple[Measure, Callable[[], None]]:
    ensure_schema(path)
    conn = connect(path, "full")

    async def measure(size: int, seconds: float, rows: Rows) -> Figure:
        conn.execute("DELETE FROM inbox")
        sql = _insert_sql(size)

        async def commit(group: list[Row]) -> None:
            conn.execute(sql, _flat(group))

        return await _timed(commit, size, seconds, rows, None)

    return measure, conn.close


def psycopg_variant(url: str, raw: bool) -> tuple[Measure, Callable[[], None]]:
    """PostgresConnection as the writer uses it; `raw`: the same statement with $n placeholders
    through psycopg's RawCursor, which sends the text as it is. psycopg caches its own parse of
    `%s` statements only up to 4,096 characters, and a group of 16 or 128 rows is longer, so
    PostgresConnection has it parsed again at every commit."""
    conn = PostgresConnection.open(url, application_name="bench psycopg")
    cursor = psycopg.RawCursor(conn.raw)

    async def measure(size: int, seconds: float, rows: Rows) -> Figure:
        conn.execute("TRUNCATE inbox CASCADE")
        sql = _insert_sql(size)
        numbered = _dollar(sql)

        async def commit(group: list[Row]) -> None:
            # Blocking, as in the writer's thread.
            if raw:
                cursor.execute(numbered, _flat(group))
            else:
                conn.execute(sql, _flat(group))

        return await _timed(commit, size, seconds, rows, conn.raw.info.backend_pid)

    return measure, conn.close


async def asyncpg_variants(url: str) -> tuple[Measure, Measure, Callable[[], Awaitable[None]]]:
    conn = await asyncpg.connect(url, server_settings={"application_name": "bench asyncpg"})
    single = _dollar(_insert_sql(1))
    backend = int(await conn.fetchval("SELECT pg_backend_pid()"))

    async def multirow(size: int, seconds: float, rows: Rows) -> Figure:
        await conn.execute("TRUNCATE inbox CASCADE")
        sql = _dollar(_insert_sql(size))

        async def commit(group: list[Row]) -> None:
            await conn.execute(sql, *_flat(group))

        return await _timed(commit, size, seconds, rows, backend)

    async def executemany(size: int, seconds: float, rows: Rows) -> Figure:
        await conn.execute("TRUNCATE inbox CASCADE")

        async def commit(group: list[Row]) -> None:
            async with conn.transaction():
                await conn.executemany(single, group)

        return await _timed(commit, size, seconds, rows, backend)

    return multirow, executemany, conn.close


async def run(args: argparse.Namespace, scoped: str, spool: Path) -> dict[tuple[str, int], list[Figure]]:
    sqlite_measure, close_sqlite = sqlite_variant(spool)
    psycopg_measure, close_psycopg = psycopg_variant(scoped, raw=False)
    raw_measure, close_raw = psycopg_variant(scoped, raw=True)
    asyncpg_multi, asyncpg_many, close_asyncpg = await asyncpg_variants(scoped)
    variants: list[tuple[str, Measure]] = [
        ("psycopg", psycopg_measure),
        ("psycopg raw $n", raw_measure),
        ("asyncpg", asyncpg_multi),
        ("asyncpg executemany", asyncpg_many),
        ("sqlite full", sqlite_measure),
    ]
    rows = Rows(args.body)
    figures: dict[tuple[str, int], list[Figure]] = {}
    try:
        for round_ in range(args.rounds):
            order = variants[round_ % len(variants) :] + variants[: round_ % len(variants)]
            for size in args.groups:
                for name, measure in order:
                    figure = await measure(size, args.seconds, rows)
                    figures.setdefault((name, size), []).append(figure)
                    print(
                        f"  round {round_ + 1} group {size:>3} {name:<20} {figure.rows_per_s:>9,.0f} rows/s"
                        f" {figure.commits_per_s:>7,.0f} commits/s {figure.cpu_us_per_row:>6,.0f} us CPU/row"
                        f" (server {_us(figure.server_us_per_row)})",
                        file=sys.stderr,
                    )
    finally:
        close_sqlite()
        close_psycopg()
        close_raw()
        await close_asyncpg()
    return figures


def _median(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def report(figures: dict[tuple[str, int], list[Figure]], groups: list[int]) -> None:
    names = list(dict.fromkeys(name for name, _ in figures))
    print(
        f"{'group':>5} {'variant':<20} {'rows/s median [range]':>30} {'commits/s median [range]':>28}"
        f" {'CPU us/row':>10} {'server us/row':>13}"
    )
    for size in groups:
        for name in names:
            runs = figures[(name, size)]
            print(
                f"{size:>5} {name:<20} {spread([f.rows_per_s for f in runs]):>30}"
                f" {spread([f.commits_per_s for f in runs]):>28}"
                f" {statistics.median(f.cpu_us_per_row for f in runs):>10,.0f}"
                f" {_us(_median([f.server_us_per_row for f in runs])):>13}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--groups", type=lambda s: [int(x) for x in s.split(",")], default=[1, 16, 128])
    parser.add_argument("--body", type=int, default=2048, help="bytes of each row's JSON body")
    args = parser.parse_args()
    with scratch_schema("store_writer") as scoped, tempfile.TemporaryDirectory() as tmp:
        conn = PostgresConnection.open(scoped)
        try:
            migrate(conn)
        finally:
            conn.close()
        figures = asyncio.run(run(args, scoped, Path(tmp) / "spool.db"))
    report(figures, args.groups)


if __name__ == "__main__":
    main()
