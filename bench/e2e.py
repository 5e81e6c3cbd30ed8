"""End-to-end benchmark: signed webhooks through `hookhub serve` to 3 loopback destinations.

Measured in one run, against the same sink process and the same Prefect server:
- batched (hookhub's shape): N webhooks sent as fast as they are acknowledged; submissions/s
  from the first request to the last delivery at all three destinations;
- latency: webhooks offered at a fixed rate; p50/p95 from each 2xx to its last delivery;
- naive: one Prefect flow run per webhook (dispatch batch_size 1), the shape we beat.

    python bench/e2e.py [--requests 5000] [--rate 50] [--seconds 20] [--naive 15]

BENCH_LOG_LEVEL=info|debug sets the hubs' log level, and BENCH_LOG_DIR=<dir> keeps their logs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.ingest import signed_requests
from bench.loadgen import closed_loop
from bench.servers import free_port, process

DESTINATIONS = ("a", "b", "c")
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
CONFIG = """
sources:
  contact-form: {{provider: typeform, secret: bench-typeform-secret}}
destinations:
{destinations}
routes:
  - {{name: all, from: [contact-form], to: [{names}]}}
dispatch: {dispatch}
"""


def write_config(path: Path, sink_port: int, dispatch: str) -> Path:
    destinations = "\n".join(
        f"  {name}: {{type: webhook, url: 'http://127.0.0.1:{sink_port}/in/{name}', secret: {WHSEC}}}"
        for name in DESTINATIONS
    )
    path.write_text(
        CONFIG.format(destinations=destinations, names=", ".join(DESTINATIONS), dispatch=dispatch),
        encoding="utf-8",
    )
    return path


class Sink:
    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/stats"
        # One client for all polls: a new one per poll loads the CA bundle each time, CPU taken
        # from the hub being measured on this 2-core machine. No kept-alive connections: the sink
        # closes one idle for 5 s (uvicorn's default), and a poll after a pause (a hub starting)
        # could race that close and fail with a ReadError; a loopback connect per poll is cheap.
        self.client = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))
        self.seen = 0
        self.last: dict[str, float] = {}  # submission id -> time its last destination got it
        self.copies: dict[str, int] = {}

    def poll(self) -> None:
        answer = self.client.get(self.url, params={"since": self.seen}).json()
        for webhook_id, at in answer["arrivals"]:
            submission = webhook_id.rsplit(".", 1)[0]
            self.copies[submission] = self.copies.get(submission, 0) + 1
            self.last[submission] = max(self.last.get(submission, 0.0), at)
        self.seen += len(answer["arrivals"])

    def wait(self, ids: set[str], timeout: float) -> float:
        """Wait until every id reached all destinations; the time the last one did."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            if all(self.copies.get(i, 0) >= len(DESTINATIONS) for i in ids):
                return max(self.last[i] for i in ids)
            if time.monotonic() > deadline:
                missing = sum(1 for i in ids if self.copies.get(i, 0) < len(DESTINATIONS))
                raise TimeoutError(f"{missing} of {len(ids)} submissions not delivered after {timeout}s")
            time.sleep(0.1)


async def send_at_rate(port: int, requests: list[bytes], rate: float) -> dict[str, float]:
    """POST each prepared request when it is due; returns submission id -> time of its 2xx."""
    acked: dict[str, float] = {}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30) as client:

        async def one(raw: bytes, due: float) -> None:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            head, body = raw.split(b"\r\n\r\n", 1)
            headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n")[1:])
            headers.pop("Content-Length", None)
            answer = await client.post("/hooks/contact-form", content=body, headers=headers)
            acked[answer.json()["id"]] = time.time()

        start = time.monotonic()
        await asyncio.gather(*(one(raw, start + i / rate) for i, raw in enumerate(requests)))
    return acked


def hub_process(config: Path, data_dir: Path, port: int, log: Path):  # type: ignore[no-untyped-def]
    if os.environ.get("BENCH_LOG_DIR"):  # keep the hub's log after the run (e.g. BENCH_LOG_LEVEL=info)
        log = Path(os.environ["BENCH_LOG_DIR"]) / log.name
    return process(
        [
            "-m",
            "hub.cli",
            "serve",
            "--port",
            str(port),
            "--config",
            str(config),
            "--data-dir",
            str(data_dir),
            "--log-level",
            os.environ.get("BENCH_LOG_LEVEL", "warning"),
        ],
        port,
        log=log,
    )


def warm_up(port: int, sink: Sink, requests: list[bytes]) -> None:
    """Deliver a few webhooks first, so Prefect's ephemeral server start is not measured."""
    acked = asyncio.run(send_at_rate(port, requests, rate=50))
    sink.wait(set(acked), timeout=300)


def run_batched(
    root: Path, sink: Sink, sink_port: int, args: argparse.Namespace, requests: list[bytes]
) -> tuple[float, list[float]]:
    config = write_config(
        root / "batched.yaml", sink_port, "{batch_size: 1000, batch_wait: 0.2, chunk_size: 500}"
    )
    port = free_port()
    warm, burst, paced = requests[:5], requests[5 : 5 + args.requests], requests[5 + args.requests :]
    with hub_process(config, root / "batched", port, root / "batched.log"):
        warm_up(port, sink, warm)
        before = set(sink.last)
        started = time.time()
        asyncio.run(closed_loop(port, burst, 32))
        sink.poll()
        # The burst's ids are whatever reaches the sink from now on: wait for N new submissions.
        deadline = time.monotonic() + 600
        while (
            sum(1 for i, n in sink.copies.items() if i not in before and n >= len(DESTINATIONS))
            < args.requests
        ):
            if time.monotonic() > deadline:
                raise TimeoutError("burst not delivered in 600 s")
            time.sleep(0.1)
            sink.poll()
        finished = max(at for i, at in sink.last.items() if i not in before)
        rate = args.requests / (finished - started)

        acked = asyncio.run(send_at_rate(port, paced, args.rate))
        sink.wait(set(acked), timeout=300)
        latencies = sorted(sink.last[i] - at for i, at in acked.items())
    return rate, latencies


def run_naive(root: Path, sink: Sink, sink_port: int, requests: list[bytes]) -> float:
    config = write_config(root / "naive.yaml", sink_port, "{batch_size: 1, batch_wait: 0, max_flows: 1}")
    port = free_port()
    with hub_process(config, root / "naive", port, root / "naive.log"):
        warm_up(port, sink, requests[:2])
        started = time.time()
        acked = asyncio.run(send_at_rate(port, requests[2:], rate=1000))
        finished = sink.wait(set(acked), timeout=600)
    return len(acked) / (finished - started)


def percentile(values: list[float], p: float) -> float:
    return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=5000, help="webhooks in the throughput burst")
    parser.add_argument("--rate", type=float, default=50.0, help="offered rate for the latency run")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the latency run")
    parser.add_argument(
        "--naive", type=int, default=15, help="webhooks through the one-flow-per-webhook shape"
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="hookhub-e2e-") as tmp:
        root = Path(tmp)
        os.environ.setdefault("PREFECT_HOME", str(root / "prefect"))
        paced = int(args.rate * args.seconds)
        total = 5 + args.requests + paced + 2 + args.naive
        print(f"signing {total:,} Typeform requests ...", flush=True)
        write_config(root / "sign.yaml", 1, "{}")
        requests = signed_requests(root / "sign.yaml", total)
        sink_port = free_port()
        with process(["-m", "bench.sink_app", "--port", str(sink_port)], sink_port):
            sink = Sink(sink_port)
            rate, latencies = run_batched(root, sink, sink_port, args, requests[: 5 + args.requests + paced])
            naive = run_naive(root, sink, sink_port, requests[5 + args.requests + paced :])
            duplicates = sum(1 for n in sink.copies.values() if n > len(DESTINATIONS))

    print()
    print(
        f"hookhub, {args.requests:,} webhooks as fast as acknowledged: {rate:,.0f} submissions/s "
        f"(first request to last delivery at {len(DESTINATIONS)} destinations)"
    )
    print(
        f"hookhub, {args.rate:,.0f}/s offered for {args.seconds:g}s: ack->delivered p50 "
        f"{percentile(latencies, 50):.2f} s, p95 {percentile(latencies, 95):.2f} s, max {latencies[-1]:.2f} s"
    )
    print(f"naive (one flow run per webhook), {args.naive} webhooks: {naive:.2f} submissions/s")
    print()
    print(
        f"submissions/s: {rate:,.0f} (goal >= 500); ratio to naive: {rate / naive:,.0f}x (goal >= 500x); "
        f"p95 at {args.rate:g}/s: {percentile(latencies, 95):.2f} s (goal <= 2 s); "
        f"duplicate deliveries: {duplicates}"
    )


if __name__ == "__main__":
    main()
