"""Scale-out benchmark (issue 15): hookhub on PostgreSQL with N receivers and M workers, against
the SQLite all-in-one, in the same run, on the same machine.

- deliveries/s with 1, 2 and 4 `hookhub worker`s on PostgreSQL (Prefect server on PostgreSQL) and
  the SQLite all-in-one `hookhub serve`, against a sink that answers after 100 ms, with a fixed
  per-worker concurrency (--concurrency requests in flight per batch, --max-flows batches);
  CPU µs per delivery per kind of process (from /proc, children included);
- ingest req/s with 1 and 2 receivers (`serve --no-dispatch`) on PostgreSQL against the SQLite receiver;
- ack->delivered p50/p95 at --rate webhooks/s (2 receivers + 2 workers; SQLite all-in-one);
- with --e2e: bench/e2e.py on SQLite and on PostgreSQL (HOOKHUB_STORE), alternating;
- with --slack N: N Slack posts to one channel from 2 workers (429s, smallest gap, achieved rate).

Rounds alternate the configurations; medians and ranges are printed, with ratios against the
baseline (1 worker; the SQLite receiver; SQLite e2e) measured in the same run.

    python bench/scale.py [--rounds 3] [--backlog 1200] [--e2e] [--slack 300]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import scale_runs as runs
from bench.figures import spread
from bench.ingest import signed_requests
from bench.scale_slack import slack_run
from bench.servers import free_port, process
from tests.cluster import Cluster
from tests.harness import wait_for
from tests.postgres import scratch_schema


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--backlog", type=int, default=1200, help="deliveries per throughput measurement")
    parser.add_argument("--workers", default="1,2,4")
    parser.add_argument("--concurrency", type=int, default=4, help="webhook requests in flight per batch")
    parser.add_argument("--max-flows", type=int, default=1, help="batches in flight per worker")
    parser.add_argument("--batch", type=int, default=40, help="dispatch batch_size and chunk_size")
    parser.add_argument("--ingest", type=int, default=3000, help="requests per ingest measurement")
    parser.add_argument("--rate", type=float, default=50.0, help="offered webhooks/s for ack->delivered")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of the ack->delivered run")
    parser.add_argument("--e2e", action="store_true", help="also bench/e2e.py on SQLite and PostgreSQL")
    parser.add_argument("--e2e-args", default="--requests 2000 --seconds 10 --naive 5")
    parser.add_argument("--slack", type=int, default=0, help="Slack posts to one channel from 2 workers")
    parser.add_argument("--skip-throughput", action="store_true")
    args = parser.parse_args()
    worker_counts = [int(n) for n in args.workers.split(",")]

    figures: dict[str, list[float]] = defaultdict(list)
    cpu: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    with tempfile.TemporaryDirectory(prefix="hookhub-scale-") as tmp, ExitStack() as stack:
        root = Path(tmp)
        os.environ.pop("PREFECT_API_URL", None)
        sink_port = free_port()
        stack.enter_context(process(["-m", "bench.slow_sink", "--port", str(sink_port)], sink_port))
        sink = runs.SinkLog(sink_port)
        text = runs.config(sink_port, (args.concurrency, args.batch, args.max_flows))
        config = root / "connectors.yaml"
        config.write_text(text, encoding="utf-8")
        total = args.rounds * (len(worker_counts) + 1) * args.backlog + args.rounds * 3 * args.ingest
        total += 2 * int(args.rate * args.seconds)
        print(f"signing {total:,} Typeform requests ...", flush=True)
        pool = iter(signed_requests(config, total))

        def take(n: int) -> list[bytes]:
            return [next(pool) for _ in range(n)]

        cluster = stack.enter_context(Cluster(root / "cluster", text, log_level="info"))
        cluster.add_receiver()
        cluster.add_receiver()
        sqlite_receiver = runs.hub_serve(root, "sqlite-ingest", config, "--no-dispatch")
        stack.callback(sqlite_receiver.stop)
        ports = [r.port or 0 for r in cluster.receivers]
        ingest_store = stack.enter_context(scratch_schema("ingest"))
        ingest_receivers = runs.ingest_receivers(cluster, ingest_store, 2)
        for role in ingest_receivers:
            stack.callback(role.stop)
        ingest_ports = [r.port or 0 for r in ingest_receivers]
        for round_no in range(args.rounds):
            print(f"round {round_no + 1} of {args.rounds}", flush=True)
            order: list[str | int] = ["sqlite", *worker_counts]
            order = order[round_no % len(order) :] + order[: round_no % len(order)]
            for what in [] if args.skip_throughput else order:
                if what == "sqlite":
                    result = runs.sqlite_throughput(root, config, sink, take(args.backlog))
                    name = "SQLite all-in-one"
                else:
                    result = runs.pg_throughput(cluster, sink, int(what), take(args.backlog))
                    name = f"PostgreSQL, {what} worker{'s' if what != 1 else ''}"
                figures[name].append(result.rate)
                for kind, used in result.cpu_us.items():
                    cpu[name][kind].append(used)
                print(
                    f"  {name}: {result.rate:,.1f} deliveries/s, CPU µs/delivery {result.cpu_us}", flush=True
                )
            for role in cluster.workers:
                role.stop()
            for name, targets in [
                ("SQLite receiver", [sqlite_receiver.port or 0]),
                ("PostgreSQL, 1 receiver", ingest_ports[:1]),
                ("PostgreSQL, 2 receivers", ingest_ports),
            ]:
                rate = runs.ingest(targets, take(args.ingest))
                figures[f"ingest: {name}"].append(rate)
                print(f"  ingest {name}: {rate:,.0f} req/s", flush=True)
        sqlite_receiver.stop()

        print("ack->delivered ...", flush=True)
        paced = int(args.rate * args.seconds)
        # The latency runs use hookhub's default dispatch settings, not the throughput runs' fixed
        # small concurrency (under which 2 workers deliver less than 50/s).
        latency_config = root / "latency.yaml"
        latency_config.write_text(runs.config(sink_port), encoding="utf-8")
        for role in cluster.add_workers(2, latency_config):
            wait_for(lambda: runs.ready(role), timeout=120, what="a worker to reach Prefect")  # noqa: B023
        pg_latency = runs.latency(ports, take(paced), args.rate, sink)
        for role in cluster.workers:
            role.stop()
        hub = runs.hub_serve(root, "sqlite-latency", latency_config)
        try:
            wait_for(lambda: runs.ready(hub), timeout=120, what="the SQLite hub to reach Prefect")
            sqlite_latency = runs.latency([hub.port or 0], take(paced), args.rate, sink)
        finally:
            hub.stop()

        e2e = e2e_rounds(args.rounds, args.e2e_args.split()) if args.e2e else {}
        slack = slack_posts(root / "slack", args.slack) if args.slack else None

    report(args, worker_counts, figures, cpu, pg_latency, sqlite_latency, e2e, slack)


def slack_posts(root: Path, posts: int) -> str:
    try:
        return slack_run(root, posts)
    except (AssertionError, TimeoutError) as exc:  # the other figures still stand
        return f"Slack run failed: {str(exc)[:2000]}"


def e2e_rounds(rounds: int, e2e_args: list[str]) -> dict[str, list[dict[str, float]]]:
    """bench/e2e.py on SQLite and on PostgreSQL (a scratch schema), the first of the two alternating."""
    e2e: dict[str, list[dict[str, float]]] = defaultdict(list)
    for round_no in range(rounds):
        for engine in ["sqlite", "postgresql"] if round_no % 2 == 0 else ["postgresql", "sqlite"]:
            env = {k: v for k, v in os.environ.items() if not k.startswith(("PREFECT_", "HOOKHUB_"))}
            with ExitStack() as scratch:
                if engine == "postgresql":
                    env["HOOKHUB_STORE"] = scratch.enter_context(scratch_schema("e2e"))
                try:
                    result = runs.e2e(env, e2e_args)
                except (RuntimeError, subprocess.TimeoutExpired) as exc:  # the other figures still stand
                    print(f"  e2e {engine} failed: {exc}", flush=True)
                    continue
            e2e[engine].append(result)
            print(f"  e2e {engine}: {result}", flush=True)
    return e2e


def report(
    args: argparse.Namespace,
    worker_counts: list[int],
    figures: dict[str, list[float]],
    cpu: dict[str, dict[str, list[float]]],
    pg_latency: tuple[float, float],
    sqlite_latency: tuple[float, float],
    e2e: dict[str, list[dict[str, float]]],
    slack: str | None,
) -> None:
    print()
    print(
        f"{os.cpu_count()} cores, shared with other work; sink answers after 100 ms; per worker "
        f"{args.max_flows} batch(es) of {args.batch} in flight, {args.concurrency} requests each; "
        f"{args.rounds} alternating rounds, medians (ranges)"
    )
    base = statistics.median(figures.get("PostgreSQL, 1 worker", [float("nan")]))
    for name, values in figures.items():
        if name.startswith("ingest"):
            continue
        ratio = statistics.median(values) / base
        print(f"deliveries/s, {name}: {spread(values, digits=1)}; {ratio:.2f}x 1 worker")
        for kind, used in cpu[name].items():
            print(f"    CPU per delivery, {kind}: {spread(used, unit=' µs')}")
    goals = {2: 1.8, 4: 3.2}
    for count, goal in goals.items():
        name = f"PostgreSQL, {count} workers"
        if name in figures and count in worker_counts:
            ratio = statistics.median(figures[name]) / base
            print(
                f"goal {count} workers >= {goal}x one: {ratio:.2f}x {'met' if ratio >= goal else 'NOT met'}"
            )
    ingest_base = statistics.median(figures.get("ingest: SQLite receiver", [float("nan")]))
    for name, values in figures.items():
        if name.startswith("ingest"):
            ratio = statistics.median(values) / ingest_base
            print(f"{name}: {spread(values, unit=' req/s')}; {ratio:.2f}x the SQLite receiver")
    print(
        f"ack->delivered at {args.rate:g}/s: PostgreSQL (2 receivers, 2 workers) "
        f"p50 {pg_latency[0]:.2f} s, p95 {pg_latency[1]:.2f} s; "
        f"SQLite all-in-one p50 {sqlite_latency[0]:.2f} s, p95 {sqlite_latency[1]:.2f} s"
    )
    if e2e.get("sqlite") and e2e.get("postgresql"):
        rates = {engine: [r["rate"] for r in results] for engine, results in e2e.items()}
        ratio = statistics.median(rates["postgresql"]) / statistics.median(rates["sqlite"])
        for engine, values in rates.items():
            p95 = [r["p95"] for r in e2e[engine]]
            rate = spread(values, unit=" submissions/s")
            print(f"bench/e2e.py, {engine} all-in-one: {rate}, p95 {spread(p95, digits=2, unit=' s')}")
        verdict = "met" if ratio >= 0.75 else "NOT met"
        print(f"goal PostgreSQL all-in-one within 25% of SQLite on bench/e2e.py: {ratio:.2f}x {verdict}")
    if slack:
        print(slack)
    print(f"finished {time.strftime('%Y-%m-%d %H:%M:%S')}")


if __name__ == "__main__":
    main()
