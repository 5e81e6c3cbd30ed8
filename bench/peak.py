"""Peak load: the all-in-one hub receiving a burst while it delivers a backlog (issue 18).

Each round starts `hookhub serve` (receiver and delivery together, the default) on a copy of
a data dir that already holds BACKLOG undelivered submissions, routed to a file, a webhook
and a Slack-like API (bench/sink_app.py, its own process). Once the hub is delivering:

- burst: CONNECTIONS connections send signed Typeform webhooks as fast as they are answered
  (a closed loop); accepted/s and p99;
- steady: RATE requests/s offered for SECONDS (an open loop, latency counted from when each
  request was due, so queueing shows); p99;
- drain: submissions written to the file destination per second over both phases, and what
  was still undelivered at the end (the backlog must outlast the measurement);
- stop: seconds from SIGTERM until the hub's process (and its children) exited.

Beside each steady phase bench/disk_probe.py times an fsync every 10 ms: a stalled fsync
delays every durable answer behind it, so each round's p99 is shown with what the disk did.

Baseline in the same rounds: the naive durable endpoint (bench/bare_sqlite_app.py: Starlette
plus one fsynced SQLite insert per request) under the same burst and the same steady rate. A
variant with `--no-dispatch` is the receiver alone (the backlog waits, nothing is delivered).
Variants of the hub (how it runs delivery beside the receiver) alternate with it round by round;
medians and ranges.

    python bench/peak.py [--backlog 30000] [--rounds 3] [--burst 10000] [--rate 1000] [--seconds 10]
                         [--variant NAME=SERVE-ARGS[@CHECKOUT] ...] [--to DESTINATIONS]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.disk_probe import DiskProbe, DiskReport
from bench.figures import spread
from bench.ingest import signed_requests
from bench.loadgen import Result, closed_loop, open_loop
from bench.servers import REPO, free_port, process, wait_healthy

WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
XOXB = "xoxb-0000000000-1111111111111-SECRETbotTOKENxyz0000000"
CONFIG = """
sources:
  contact-form: {{provider: typeform, secret: bench-typeform-secret}}
destinations:
  archive: {{type: file, path: "{out}"}}
  crm-hook: {{type: webhook, url: "http://127.0.0.1:{sink}/in/crm", secret: {whsec}}}
  team: {{type: slack, token: {xoxb}, channel: C0123456789, base_url: "http://127.0.0.1:{sink}/api"}}
routes:
  - {{name: all, from: [contact-form], to: [{to}]}}
"""
DESTINATIONS = "archive,crm-hook,team"
DEFAULT_VARIANTS = ("hub=",)
SETTLED = ("done", "failed", "skipped")
"""The inbox states a submission ends in (hub/spool/schema.py INBOX_STATES)."""
START_SECONDS = 240.0
"""How long a hub may take to deliver its first submission (Prefect's ephemeral server starts first)."""


@dataclass
class Round:
    burst: Result
    steady: Result
    drained: int
    drain_seconds: float
    left: int
    stop_seconds: float
    disk: DiskReport
    wal_mb: float
    """The spool's and the intake's WAL files together at the end of the steady phase."""

    @property
    def drain_rate(self) -> float:
        return self.drained / self.drain_seconds


@dataclass
class NaiveRound:
    burst: Result
    steady: Result
    disk: DiskReport


@dataclass
class Variant:
    name: str
    args: list[str]
    checkout: Path = REPO
    """The source tree the hub runs from (another git worktree compares two versions in one run)."""
    rounds: list[Round] = field(default_factory=list)


class Lines:
    """Counts the lines of a file another process appends to, reading only what is new."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.count = 0

    def __call__(self) -> int:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self.offset)
                chunk = handle.read()
        except FileNotFoundError:
            return 0
        complete = chunk.rfind(b"\n") + 1
        self.count += chunk.count(b"\n", 0, complete)
        self.offset += complete
        return self.count


def write_config(path: Path, out: Path, sink_port: int, to: str = DESTINATIONS) -> Path:
    text = CONFIG.format(out=out, sink=sink_port, whsec=WHSEC, xoxb=XOXB, to=to.replace(",", ", "))
    path.write_text(text, encoding="utf-8")
    return path


def serve_args(config: Path, data_dir: Path, port: int, *extra: str) -> list[str]:
    return [
        "-m", "hub.cli", "serve", "--port", str(port), "--config", str(config), "--data-dir", str(data_dir),
        "--log-level", os.environ.get("BENCH_LOG_LEVEL", "warning"), *extra,
    ]  # fmt: skip


def fill_backlog(root: Path, count: int, sink_port: int) -> Path:
    """A data dir holding `count` received, undelivered submissions (a receiver-only hub filled it)."""
    template = root / "backlog"
    config = write_config(root / "fill.yaml", root / "unused.jsonl", sink_port)
    port = free_port()
    print(f"filling a backlog of {count:,} submissions ...", flush=True)
    with process(serve_args(config, template, port, "--no-dispatch"), port, log=root / "fill.log"):
        result = asyncio.run(closed_loop(port, signed_requests(config, count), 128))
    if result.ok() != count:
        raise SystemExit(f"backlog fill: only {result.ok()} of {count} accepted ({result.statuses})")
    return template


def run_hub(
    root: Path, variant: Variant, template: Path, number: int, sink_port: int, args: argparse.Namespace
) -> Round:
    data_dir = root / f"{variant.name}-{number}"
    shutil.copytree(template, data_dir)
    out = root / f"{variant.name}-{number}.jsonl"
    config = write_config(root / f"{variant.name}-{number}.yaml", out, sink_port, args.to)
    port = free_port()
    log = Path(os.environ.get("BENCH_LOG_DIR", root)) / f"{variant.name}-{number}.log"
    burst_requests = signed_requests(config, args.burst)
    steady_requests = signed_requests(config, int(args.rate * args.seconds))
    delivered = Lines(out)
    with log.open("wb") as log_file:
        proc = subprocess.Popen(
            [sys.executable, *serve_args(config, data_dir, port, *variant.args)],
            cwd=variant.checkout,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONPATH": str(variant.checkout)},
            start_new_session=True,  # its own process group: the stop below waits for all of it
        )
        try:
            wait_healthy(port, proc, timeout=60)
            deadline = time.monotonic() + START_SECONDS
            while delivered() == 0 and "--no-dispatch" not in variant.args:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{variant.name}: no delivery within {START_SECONDS:.0f} s; see {log}")
                time.sleep(0.2)
            began, before = time.monotonic(), delivered()
            burst = asyncio.run(closed_loop(port, burst_requests, args.connections))
            with DiskProbe(root) as probe:
                steady = asyncio.run(open_loop(port, steady_requests, args.rate))
            seconds, drained = time.monotonic() - began, delivered() - before
            wal_mb = _wal_megabytes(data_dir)
            left = _undelivered(port)
            stop_seconds = _stop(proc)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
    shutil.rmtree(data_dir, ignore_errors=True)
    out.unlink(missing_ok=True)
    return Round(burst, steady, drained, seconds, left, stop_seconds, probe.report, wal_mb)


def _wal_megabytes(data_dir: Path) -> float:
    sizes = [(data_dir / name).stat().st_size for name in ("spool.db-wal", "intake.db-wal")
             if (data_dir / name).exists()]  # fmt: skip
    return sum(sizes) / 1e6


def _undelivered(port: int) -> int:
    """Submissions not yet settled, from the hub's own `hookhub_submissions` gauge."""
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30).text
    waiting = 0.0
    for line in text.splitlines():
        if line.startswith("hookhub_submissions{"):
            state = line.split('state="', 1)[1].split('"', 1)[0]
            if state not in SETTLED:
                waiting += float(line.rsplit(" ", 1)[1])
    return int(waiting)


def _stop(proc: subprocess.Popen[bytes]) -> float:
    """SIGTERM to the hub; seconds until its whole process group is gone (60 s at most)."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    deadline = started + 60
    while time.monotonic() < deadline:
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        if proc.poll() is not None and not _group_alive(proc.pid):
            break
        time.sleep(0.02)
    else:
        return float("inf")
    proc.wait()
    return time.monotonic() - started


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def run_naive(root: Path, number: int, args: argparse.Namespace, config: Path) -> NaiveRound:
    port = free_port()
    db = root / f"naive-{number}.db"
    requests = signed_requests(config, args.burst + int(args.rate * args.seconds))
    with process(["-m", "bench.bare_sqlite_app", "--port", str(port), "--db", str(db)], port):
        burst = asyncio.run(closed_loop(port, requests[: args.burst], args.connections))
        with DiskProbe(root) as probe:
            steady = asyncio.run(open_loop(port, requests[args.burst :], args.rate))
    db.unlink(missing_ok=True)
    return NaiveRound(burst, steady, probe.report)


def _disk(rounds: list[Round] | list[NaiveRound]) -> str:
    stalls = [r.disk.stalls for r in rounds]
    longest = max(r.disk.longest_ms for r in rounds)
    return f"disk stalls (fsync > 30 ms) per round {stalls}, longest {longest:.0f} ms"


def _steady(rounds: list[Round] | list[NaiveRound], rate: float) -> str:
    p99 = spread([r.steady.percentile(99) * 1000 for r in rounds], 1, " ms")
    p50 = spread([r.steady.percentile(50) * 1000 for r in rounds], 1, " ms")
    return f"{rate:,.0f}/s offered, p99 {p99}, p50 {p50}; {_disk(rounds)}"


def report(naive: list[NaiveRound], variants: list[Variant], args: argparse.Namespace) -> None:
    naive_rates = [r.burst.rate() for r in naive]
    print(
        f"\n== peak load: backlog {args.backlog:,}, burst {args.burst:,} at {args.connections} connections,"
        f" then {args.rate:,.0f}/s for {args.seconds:g} s; {len(naive)} rounds, median [range]"
    )
    naive_p99 = spread([r.burst.percentile(99) * 1000 for r in naive], 0, " ms")
    print("naive durable endpoint (baseline):")
    print(f"  burst:  {spread(naive_rates, unit='/s')} accepted, p99 {naive_p99}")
    print(f"  steady: {_steady(naive, args.rate)}")
    for v in variants:
        ratios = [r.burst.rate() / n for r, n in zip(v.rounds, naive_rates, strict=True)]
        failed = sum(r.burst.sent - r.burst.ok() + r.steady.sent - r.steady.ok() for r in v.rounds)
        burst_p99 = spread([r.burst.percentile(99) * 1000 for r in v.rounds], 0, " ms")
        print(f"{v.name} ({' '.join(v.args) or 'defaults'}):")
        print(
            f"  burst:  {spread([r.burst.rate() for r in v.rounds], unit='/s')} accepted"
            f" = {spread(ratios, 2, 'x')} the naive endpoint (same round), p99 {burst_p99}"
        )
        print(f"  steady: {_steady(v.rounds, args.rate)}")
        print(
            f"  drain:  {spread([r.drain_rate for r in v.rounds], unit='/s')} submissions to the file"
            f" meanwhile; {spread([float(r.left) for r in v.rounds])} still waiting at the end"
        )
        wal = spread([r.wal_mb for r in v.rounds], 1, " MB")
        print(f"  WAL:    {wal} (the spool's and the intake's) after the steady phase")
        print(
            f"  stop:   SIGTERM to exit {spread([r.stop_seconds for r in v.rounds], 1, ' s')};"
            f" non-2xx answers: {failed}"
        )


def show_round(number: int, name: str, r: Round) -> None:
    print(
        f"round {number + 1} {name}: burst {r.burst.summary()}; steady {r.steady.summary()};"
        f" {r.disk.summary()}; WAL {r.wal_mb:.1f} MB; drained {r.drained:,} in {r.drain_seconds:.1f} s,"
        f" {r.left:,} left;"
        f" stop {r.stop_seconds:.1f} s",
        flush=True,
    )


def parse_variant(spec: str) -> Variant:
    """`NAME=ARGS` or `NAME=ARGS@DIR` (the hub runs from the checkout DIR)."""
    name, _, rest = spec.partition("=")
    extra, _, checkout = rest.partition("@")
    return Variant(name, shlex.split(extra), Path(checkout).resolve() if checkout else REPO)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backlog", type=int, default=30_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--burst", type=int, default=10_000, help="requests in each closed-loop burst")
    parser.add_argument("--connections", type=int, default=128)
    parser.add_argument("--rate", type=float, default=1000.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--to", default=DESTINATIONS, help=f"the route's destinations ({DESTINATIONS})")
    parser.add_argument(
        "--variant",
        action="append",
        default=None,
        metavar="NAME=ARGS",
        help="a hub to measure: a name, extra `hookhub serve` arguments and optionally @ a checkout"
        " to run it from (repeatable; default: hub=)",
    )
    args = parser.parse_args()
    variants = [parse_variant(spec) for spec in args.variant or DEFAULT_VARIANTS]
    with tempfile.TemporaryDirectory(prefix="hookhub-peak-") as tmp:
        root = Path(tmp)
        sink_port = free_port()
        with process(["-m", "bench.sink_app", "--port", str(sink_port)], sink_port):
            template = fill_backlog(root, args.backlog, sink_port)
            naive: list[NaiveRound] = []
            for number in range(args.rounds):
                # Alternate: this machine's speed drifts, so each ratio compares neighbours in time.
                naive.append(run_naive(root, number, args, root / "fill.yaml"))
                n = naive[-1]
                print(
                    f"round {number + 1} naive: burst {n.burst.summary()}; steady {n.steady.summary()};"
                    f" {n.disk.summary()}",
                    flush=True,
                )
                for variant in variants if number % 2 == 0 else reversed(variants):
                    variant.rounds.append(run_hub(root, variant, template, number, sink_port, args))
                    show_round(number, variant.name, variant.rounds[-1])
        report(naive, variants, args)
    if statistics.median(r.stop_seconds for v in variants for r in v.rounds) == float("inf"):
        sys.exit(1)


if __name__ == "__main__":
    main()
