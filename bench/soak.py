"""Soak: signed webhooks at a steady rate through `hookhub serve` for minutes; does memory stay flat?

Two destinations take every submission: a loopback webhook receiver (bench/sink_app.py, its own
process) and a `file` destination in the hub's data dir. The resident memory (RSS) of the hub,
of its Prefect ephemeral server and of its delivery worker processes is sampled every minute
from /proc and printed as a table, with each process's growth after the warm-up.

    python bench/soak.py [--minutes 10] [--rate 50] [--warmup 2]

Goal: flat after warm-up, every process under 10 % growth from the end of the warm-up to the
end; the script prints "NOT MET" and exits 1 otherwise. Delivered and backlog at the end are
printed too (the backlog should be near zero at 50/s: the hub delivers hundreds per second).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import procs
from bench.servers import free_port, process
from hub.config.loader import load_config
from hub.runtime import prepare_sources

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
GOAL_GROWTH = 10.0
"""Percent growth of RSS allowed after the warm-up, per process."""
CONFIG = """
sources:
  contact-form: {{provider: typeform, secret: bench-typeform-secret}}
destinations:
  sink: {{type: webhook, url: 'http://127.0.0.1:{sink_port}/in/sink', secret: {whsec}}}
  lines: {{type: file, path: deliveries.jsonl}}
routes:
  - {{name: all, from: [contact-form], to: [sink, lines]}}
"""


def role(proc: procs.ProcInfo) -> str:
    """What a process under the hub is, from its command line."""
    if "prefect.server" in proc.cmdline:
        return "prefect server"
    if "multiprocessing.spawn" in proc.cmdline or "spawn_main" in proc.cmdline:
        return "delivery worker"
    if "resource_tracker" in proc.cmdline:
        return "resource tracker"
    return "other"


@dataclass
class Samples:
    """RSS in MiB per process ("hub", "prefect server", "delivery worker 1", ...), one column a minute."""

    at: list[float] = field(default_factory=list)
    rss: dict[str, list[float | None]] = field(default_factory=dict)
    delivered: list[int] = field(default_factory=list)
    backlog: list[int] = field(default_factory=list)
    acked: list[int] = field(default_factory=list)

    def take(self, hub_pid: int, started: float, spool: Path, acked: int) -> None:
        column = len(self.at)
        self.at.append(time.monotonic() - started)
        names = {"hub": hub_pid}
        counts: dict[str, int] = {}
        for proc in sorted(procs.descendants(hub_pid), key=lambda p: p.pid):
            kind = role(proc)
            counts[kind] = counts.get(kind, 0) + 1
            names[f"{kind} {counts[kind]}" if kind != "prefect server" else kind] = proc.pid
        for name, pid in names.items():
            rss = procs.rss_bytes(pid)
            series = self.rss.setdefault(name, [None] * column)
            series.append(None if rss is None else rss / 2**20)
        for series in self.rss.values():
            series.extend([None] * (column + 1 - len(series)))
        done, waiting = ledger_counts(spool)
        self.delivered.append(done)
        self.backlog.append(waiting)
        self.acked.append(acked)


def ledger_counts(spool: Path) -> tuple[int, int]:
    """(deliveries delivered, submissions and deliveries still waiting) from the spool, read-only."""
    conn = sqlite3.connect(f"file:{spool}?mode=ro", uri=True, timeout=30)
    try:
        delivered = conn.execute("SELECT count(*) FROM deliveries WHERE status='delivered'").fetchone()[0]
        waiting = conn.execute(
            "SELECT count(*) FROM deliveries WHERE status IN ('pending', 'sending', 'retrying')"
        ).fetchone()[0]
        unrouted = conn.execute(
            "SELECT count(*) FROM inbox WHERE state IN ('pending', 'claimed')"
        ).fetchone()[0]
        return int(delivered), int(waiting) + int(unrouted)
    finally:
        conn.close()


class Sender:
    """Signed Typeform webhooks at a fixed rate, signed as they go (a 10-minute run is 30,000)."""

    def __init__(self, config: Path, port: int) -> None:
        self.source = prepare_sources(load_config(config))["contact-form"]
        self.url = f"http://127.0.0.1:{port}/hooks/contact-form"
        self.acked = 0
        self.failed: dict[str, int] = {}

    async def run(self, rate: float, seconds: float) -> None:
        limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
        async with httpx.AsyncClient(timeout=30, limits=limits) as client:
            start = time.monotonic()
            tasks: set[asyncio.Task[None]] = set()
            index = 0
            while (due := start + index / rate) < start + seconds:
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                task = asyncio.create_task(self._one(client))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
                index += 1
            await asyncio.gather(*tasks)

    async def _one(self, client: httpx.AsyncClient) -> None:
        request = self.source.connector.sample_request(self.source.config, self.url, time.time())
        headers = {k: v for k, v in request.headers.items() if k.lower() != "content-length"}
        try:
            answer = await client.post(self.url, content=request.body, headers=headers)
        except httpx.HTTPError as exc:
            reason = type(exc).__name__
        else:
            if answer.status_code == 200:
                self.acked += 1
                return
            reason = f"HTTP {answer.status_code}"
        self.failed[reason] = self.failed.get(reason, 0) + 1


async def soak(sender: Sender, samples: Samples, hub_pid: int, spool: Path, args: argparse.Namespace) -> None:
    started = time.monotonic()
    sending = asyncio.create_task(sender.run(args.rate, 60.0 * args.minutes))
    samples.take(hub_pid, started, spool, sender.acked)
    for minute in range(1, args.minutes + 1):
        await asyncio.sleep(max(0.0, started + 60.0 * minute - time.monotonic()))
        samples.take(hub_pid, started, spool, sender.acked)
        print(
            f"  {samples.at[-1] / 60:4.1f} min: {sender.acked:,} acknowledged, "
            f"{samples.delivered[-1]:,} deliveries done, backlog {samples.backlog[-1]:,}",
            flush=True,
        )
    await sending


def growth(series: list[float | None], warmup_column: int) -> float | None:
    """Percent from the first sample after the warm-up to the last one; None if either is missing."""
    if len(series) <= warmup_column:
        return None
    base, last = series[warmup_column], series[-1]
    if base is None or last is None:
        return None
    return 100.0 * (last - base) / base


def report(samples: Samples, warmup: int, sender: Sender, drained: tuple[int, int], drain_s: float) -> bool:
    names = list(samples.rss)
    print()
    print("RSS in MiB, sampled each minute (minute 0: Prefect ready and the first deliveries done):")
    header = (
        f"{'minute':>6} | "
        + " | ".join(f"{n:>18}" for n in names)
        + f" | {'acked':>7} | {'delivered':>9} | backlog"
    )
    print(header)
    print("-" * len(header))
    for column, at in enumerate(samples.at):
        cells = " | ".join(
            f"{'-' if v is None else f'{v:.1f}':>18}" for v in (samples.rss[n][column] for n in names)
        )
        print(
            f"{at / 60:6.1f} | {cells} | {samples.acked[column]:>7,} | {samples.delivered[column]:>9,} "
            f"| {samples.backlog[column]:,}"
        )
    print()
    met = True
    for name in names:
        change = growth(samples.rss[name], warmup)
        if change is None:
            print(f"{name}: not measured from minute {warmup} to the end (the process was not there)")
            met = False
            continue
        flag = "ok" if change < GOAL_GROWTH else "NOT MET"
        met &= change < GOAL_GROWTH
        print(f"{name}: {change:+.1f} % from minute {warmup} to the end ({flag}, goal < {GOAL_GROWTH:g} %)")
    delivered, backlog = drained
    print(
        f"acknowledged {sender.acked:,}; failed sends {sender.failed or 0}; deliveries done {delivered:,} "
        f"(2 destinations each); backlog at the end of sending {samples.backlog[-1]:,}, "
        f"{backlog:,} after {drain_s:.1f} s more"
    )
    print("memory after warm-up: " + ("MET (flat)" if met else "NOT MET"))
    return met


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=int, default=10, help="length of the run, in minutes")
    parser.add_argument("--rate", type=float, default=50.0, help="webhooks/s offered")
    parser.add_argument("--warmup", type=int, default=2, help="minutes not counted in the growth")
    args = parser.parse_args()
    if args.warmup >= args.minutes:
        parser.error("--warmup must be shorter than --minutes")

    with tempfile.TemporaryDirectory(prefix="hookhub-soak-") as tmp:
        root = Path(tmp)
        sink_port, hub_port = free_port(), free_port()
        config = root / "connectors.yaml"
        config.write_text(CONFIG.format(sink_port=sink_port, whsec=WHSEC), encoding="utf-8")
        data_dir = root / "data"
        spool = data_dir / "spool.db"
        os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))
        with (
            process(["-m", "bench.sink_app", "--port", str(sink_port)], sink_port),
            process(
                [
                    "-m",
                    "hub.cli",
                    "serve",
                    "--port",
                    str(hub_port),
                    "--config",
                    str(config),
                    "--data-dir",
                    str(data_dir),
                    "--log-level",
                    "warning",
                ],
                hub_port,
                log=root / "hub.log",
            ) as hub,
        ):
            sender = Sender(config, hub_port)
            print("waiting for Prefect and the first deliveries ...", flush=True)
            warm_up(sender, spool)
            print(f"soak: {args.rate:g} webhooks/s for {args.minutes} min to 2 destinations", flush=True)
            samples = Samples()
            asyncio.run(soak(sender, samples, hub.pid, spool, args))
            drain_started = time.monotonic()
            drained = drain(spool, timeout=120)
            met = report(samples, args.warmup, sender, drained, time.monotonic() - drain_started)
    sys.exit(0 if met else 1)


def warm_up(sender: Sender, spool: Path, timeout: float = 300) -> None:
    """A few webhooks first, delivered, so Prefect's start is not in the first sample."""
    asyncio.run(sender.run(rate=10, seconds=1))
    deadline = time.monotonic() + timeout
    while ledger_counts(spool)[1] > 0 or ledger_counts(spool)[0] == 0:
        if time.monotonic() > deadline:
            raise TimeoutError(f"the warm-up webhooks were not delivered in {timeout:g} s")
        time.sleep(0.5)


def drain(spool: Path, timeout: float) -> tuple[int, int]:
    """Wait (at most `timeout` s) for the backlog to clear; (delivered, backlog) then."""
    deadline = time.monotonic() + timeout
    while True:
        delivered, backlog = ledger_counts(spool)
        if backlog == 0 or time.monotonic() > deadline:
            return delivered, backlog
        time.sleep(0.5)


if __name__ == "__main__":
    main()
