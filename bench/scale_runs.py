"""The measurements of bench/scale.py: delivery throughput, CPU per delivery, ingest, ack->delivered.

Deliveries go to bench/slow_sink.py (answers after 100 ms), one destination `a`, so a delivery's
webhook-id is `<submission id>.a`. Throughput is taken between the 10th and the 90th percent of a
pre-loaded backlog's deliveries: the workers' start and the last stragglers are not in it.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.e2e import send_at_rate
from bench.loadgen import closed_loop
from bench.procs import descendants
from bench.servers import free_port
from tests.cluster import Cluster, Role, hookhub, spawn
from tests.harness import wait_for

TICKS = os.sysconf("SC_CLK_TCK")
WHSEC = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SECRET = "bench-typeform-secret"


def config(sink_port: int, fixed: tuple[int, int, int] | None = None) -> str:
    """hookhub's default dispatch settings, or `fixed` (concurrency, batch and chunk size, max_flows):
    the throughput runs' small per-worker concurrency."""
    destination = f"type: webhook, url: 'http://127.0.0.1:{sink_port}/in/a', secret: {WHSEC}"
    dispatch = ""
    if fixed is not None:
        concurrency, batch, max_flows = fixed
        destination += f", concurrency: {concurrency}"
        dispatch = (
            f"dispatch: {{batch_size: {batch}, batch_wait: 0.1, chunk_size: {batch}, max_flows: {max_flows}}}"
        )
    return f"""
sources:
  contact-form: {{provider: typeform, secret: {SECRET}}}
destinations:
  a: {{{destination}}}
routes:
  - {{name: all, from: [contact-form], to: [a]}}
{dispatch}
"""


def cpu_seconds(pid: int) -> float:
    """User + system CPU of `pid` and every live process below it."""
    total = 0.0
    for one in [pid, *(p.pid for p in descendants(pid))]:
        try:
            text = Path(f"/proc/{one}/stat").read_text()
        except OSError:
            continue
        fields = text[text.rindex(")") + 2 :].split()
        total += (int(fields[11]) + int(fields[12])) / TICKS
    return total


class SinkLog:
    """The slow sink's arrivals (webhook-id, answered at), fetched incrementally."""

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/stats"
        self.client = httpx.Client(timeout=30, limits=httpx.Limits(max_keepalive_connections=0))
        self.arrivals: list[tuple[str, float]] = []

    def poll(self) -> list[tuple[str, float]]:
        new = [
            (str(w), float(t))
            for w, t in self.client.get(self.url, params={"since": len(self.arrivals)}).json()["arrivals"]
        ]
        self.arrivals.extend(new)
        return new


@dataclass(frozen=True)
class Throughput:
    rate: float
    """deliveries/s between 10% and 90% of the backlog"""
    cpu_us: dict[str, float]
    """µs of CPU per delivery, per kind of process (summed over processes of that kind)"""


def measure(sink: SinkLog, count: int, processes: dict[str, list[int]], timeout: float = 900) -> Throughput:
    """Wait for `count` new deliveries; rate and CPU per delivery between the 10% and 90% marks."""
    low, high = max(1, count // 10), count - count // 10
    done = 0
    marks: list[tuple[float, int]] = []
    cpu: list[dict[str, float]] = []
    deadline = time.monotonic() + timeout
    while done < high:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done} of {count} deliveries after {timeout:.0f} s")
        done += len(sink.poll())
        if (not marks and done >= low) or (len(marks) == 1 and done >= high):
            marks.append((time.time(), done))
            cpu.append({kind: sum(cpu_seconds(p) for p in pids) for kind, pids in processes.items()})
        time.sleep(0.05)
    (t0, n0), (t1, n1) = marks
    used = {kind: (cpu[1][kind] - cpu[0][kind]) / (n1 - n0) * 1e6 for kind in processes}
    while done < count:  # the rest too, so that no backlog is left to the next measurement
        if time.monotonic() > deadline:
            raise TimeoutError(f"{done} of {count} deliveries after {timeout:.0f} s")
        done += len(sink.poll())
        time.sleep(0.1)
    return Throughput((n1 - n0) / (t1 - t0), used)


def ingest(ports: list[int], requests: list[bytes], connections: int = 32) -> float:
    """Closed loops against every port at once, the requests split evenly; acknowledged req/s."""

    async def run() -> float:
        shares = [requests[i :: len(ports)] for i in range(len(ports))]
        started = time.perf_counter()
        results = await asyncio.gather(
            *(
                closed_loop(port, share, connections // len(ports))
                for port, share in zip(ports, shares, strict=True)
            )
        )
        seconds = time.perf_counter() - started
        refused = sum(r.sent - r.ok() for r in results)
        if refused:
            raise RuntimeError(f"{refused} requests were not acknowledged")
        return sum(r.ok() for r in results) / seconds

    return asyncio.run(run())


def latency(ports: list[int], requests: list[bytes], rate: float, sink: SinkLog) -> tuple[float, float]:
    """Webhooks offered at `rate` (split across ports); p50 and p95 seconds from each 2xx to delivered."""

    async def run() -> dict[str, float]:
        shares = [requests[i :: len(ports)] for i in range(len(ports))]
        acked: dict[str, float] = {}
        for part in await asyncio.gather(
            *(send_at_rate(p, s, rate / len(ports)) for p, s in zip(ports, shares, strict=True))
        ):
            acked.update(part)
        return acked

    acked = asyncio.run(run())
    delivered: dict[str, float] = {}
    deadline = time.monotonic() + 300
    while len(delivered) < len(acked):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(acked) - len(delivered)} of {len(acked)} not delivered in 300 s")
        for webhook_id, at in sink.poll():
            submission = webhook_id.rsplit(".", 1)[0]
            if submission in acked:
                delivered.setdefault(submission, at)
        time.sleep(0.1)
    waits = sorted(delivered[i] - acked[i] for i in acked)
    return statistics.median(waits), waits[min(len(waits) - 1, round(0.95 * (len(waits) - 1)))]


def ready(role: Role) -> bool:
    """The role's dispatcher has reached Prefect (logged once it answered): start-up is over."""
    assert role.running(), f"{role.name} exited: {role.text()[-3000:]}"
    return '"prefect_ready"' in role.text()


def pg_throughput(cluster: Cluster, sink: SinkLog, workers: int, requests: list[bytes]) -> Throughput:
    """`workers` started and ready first (their start-up costs CPU that is not delivery), then the
    backlog through both receivers (much faster than it is delivered), then the measurement."""
    for role in cluster.workers:
        role.stop()
    roles = cluster.add_workers(workers)
    for role in roles:
        wait_for(lambda: ready(role), timeout=120, what=f"{role.name} to reach Prefect")  # noqa: B023
    assert cluster.prefect is not None
    processes = {"workers": [r.pid for r in roles], "Prefect server": [cluster.prefect.pid]}
    sink.poll()
    ingest([r.port or 0 for r in cluster.receivers], requests)
    return measure(sink, len(requests), processes)


def ingest_receivers(cluster: Cluster, store_url: str, count: int) -> list[Role]:
    """Receivers like the cluster's on another store: what the ingest runs accept is never delivered,
    so it cannot queue ahead of a later measurement's webhooks."""
    roles = []
    for number in range(count):
        name = f"ingest-receiver{number + 1}"
        env = {**cluster.hub_env(name), "HOOKHUB_STORE": store_url}
        roles.append(hub_serve(cluster.root, name, cluster.config, "--no-dispatch", env=env))
    return roles


def hub_serve(root: Path, name: str, config: Path, *extra: str, env: dict[str, str] | None = None) -> Role:
    """`hookhub serve` on SQLite in root/<data dir> (unless `env` names a store), once it answers /healthz."""
    port = free_port()
    data_dir = root / ("sqlite-ingest" if "--no-dispatch" in extra else "sqlite")
    argv = hookhub("serve", "--port", str(port), "--config", str(config), "--data-dir", str(data_dir),
                   "--log-level", "info", *extra)  # fmt: skip
    env = env or {**os.environ, "PREFECT_HOME": str(root / "prefect-sqlite"), "HOOKHUB_LOG_FORMAT": "json"}
    role = spawn(name, argv, env, root / f"{name}.log", port)

    def healthy() -> bool:
        assert role.running(), role.text()[-3000:]
        try:
            return httpx.get(f"{role.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, timeout=120, what=f"{name} /healthz")
    return role


def sqlite_throughput(root: Path, config: Path, sink: SinkLog, requests: list[bytes]) -> Throughput:
    """The all-in-one on SQLite, started and ready first, then the backlog sent to it."""
    hub = hub_serve(root, "sqlite-hub", config)
    try:
        wait_for(lambda: ready(hub), timeout=120, what="the SQLite hub to reach Prefect")
        sink.poll()
        ingest([hub.port or 0], requests)
        return measure(sink, len(requests), {"hub (with its Prefect)": [hub.pid]})
    finally:
        hub.stop()


def e2e(env: dict[str, str], args: list[str]) -> dict[str, float]:
    """bench/e2e.py in a process of its own; its submissions/s and ack->delivered p95."""
    done = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("e2e.py")), *args],
        env=env, capture_output=True, text=True, timeout=1800, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"bench/e2e.py failed: {done.stderr[-3000:]}")
    figures: dict[str, float] = {}
    for line in done.stdout.splitlines():
        if line.startswith("submissions/s:"):
            figures["rate"] = float(line.split()[1].replace(",", ""))
            figures["p95"] = float(line.split("p95 at")[1].split(":")[1].split()[0])
    if "rate" not in figures:
        raise RuntimeError(f"no figures in bench/e2e.py's output: {done.stdout[-2000:]}")
    return figures
