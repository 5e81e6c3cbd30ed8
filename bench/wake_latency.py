"""How soon an idle worker claims a new submission on PostgreSQL: LISTEN hookhub_work vs polling.

One hub in this process (receiver and dispatcher, as `serve` runs them) on a scratch schema;
its dispatcher's flow returns at once (nothing is delivered: the claim is what is timed). The
submissions are posted one at a time, each after a random pause of up to --gap seconds (the
dispatcher is idle, waiting, when each arrives). Latency per submission is the ledger's own
`claimed_at - received_at` (both stamped by this process's clock). Modes, each on a new schema:

- listen: hub/dispatch/wake.py's Listen (woken by the writer's NOTIFY, 1 s poll fallback);
- poll 1s: the fallback alone (what a lost LISTEN connection leaves);
- poll 50ms: SQLite's wake-up (a query every 50 ms per idle worker).

Also counts the dispatcher's `has_work` queries per idle second (its cost on the server).

    python bench/wake_latency.py [--submissions 40] [--gap 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

HOME = tempfile.mkdtemp(prefix="wake-bench-")
os.environ["PREFECT_HOME"] = str(Path(HOME) / "prefect")  # before Prefect is imported
os.environ.pop("PREFECT_API_URL", None)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
import psycopg  # noqa: E402

from hub.dispatch import Dispatcher  # noqa: E402
from hub.dispatch.wake import Poll, Wake, wake_for  # noqa: E402
from hub.runtime import ConfigHolder  # noqa: E402
from hub.server import Hub  # noqa: E402
from hub.spool import claiming  # noqa: E402
from hub.store.location import PostgresStore, Store  # noqa: E402
from tests.harness import serve_app, wait_for  # noqa: E402
from tests.postgres import scratch_schema  # noqa: E402

SECRET = "wake-bench-secret"


def _config(path: Path) -> Path:
    path.write_text(
        f"""
sources:
  form: {{provider: typeform, secret: {SECRET}}}
destinations:
  sink: {{type: webhook, url: "http://127.0.0.1:9/hook", secret: whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw}}
routes:
  - {{name: all, from: [form], to: [sink]}}
dispatch: {{batch_wait: 0}}
""",
        encoding="utf-8",
    )
    return path


def _signed(n: int) -> tuple[bytes, dict[str, str]]:
    import base64
    import hashlib
    import hmac

    body = json.dumps(
        {"event_id": f"wake-{n}-{time.time_ns()}", "event_type": "form_response", "form_response": {}}
    ).encode()
    digest = base64.b64encode(hmac.digest(SECRET.encode(), body, hashlib.sha256)).decode()
    return body, {"content-type": "application/json", "typeform-signature": f"sha256={digest}"}


async def _no_flow(**_: object) -> dict[str, int]:
    return {}


class _Counting:
    """Counts `claiming.has_work` calls (each a query on the server)."""

    def __init__(self) -> None:
        self.calls = 0
        self._real = claiming.has_work

    def __call__(self, *args: object) -> bool:
        self.calls += 1
        return self._real(*args)  # type: ignore[arg-type]


Waker = Callable[[Store, asyncio.AbstractEventLoop], Wake]


def run(mode: str, waker: Waker, submissions: int, gap: float, root: Path) -> dict[str, float]:
    with scratch_schema(f"wake_{mode.replace(' ', '_')}") as url:
        data = root / mode.replace(" ", "_")
        hub = Hub(
            config=ConfigHolder(_config(root / "connectors.yaml")), data_dir=data, store=PostgresStore(url)
        )
        hub.watch_config = False
        dispatcher = Dispatcher(hub, run_flow=_no_flow, waker=waker)
        hub.services.append(dispatcher)
        counting = _Counting()
        claiming.has_work = counting  # type: ignore[assignment]
        server = serve_app(hub.app())
        try:
            wait_for(lambda: hub.health.prefect_reachable, timeout=120, what="Prefect ready")
            before, started = counting.calls, time.monotonic()
            time.sleep(2.0)  # idle: how often does it ask?
            idle_rate = (counting.calls - before) / (time.monotonic() - started)
            for n in range(submissions):
                time.sleep(random.uniform(0.05, gap))
                body, headers = _signed(n)
                answer = httpx.post(f"{server.url}/hooks/form", content=body, headers=headers, timeout=10)
                assert answer.status_code == 200, answer.text
            with psycopg.connect(url) as conn:
                claimed = "SELECT count(*) FROM inbox WHERE claimed_at IS NOT NULL"
                wait_for(
                    lambda: (conn.execute(claimed).fetchone() or (0,))[0] == submissions,
                    timeout=30,
                    what="every submission claimed",
                )
                lags = [
                    float(lag)
                    for (lag,) in conn.execute("SELECT claimed_at - received_at FROM inbox").fetchall()
                ]
        finally:
            server.stop()
            claiming.has_work = counting._real
    lags.sort()
    return {
        "p50_ms": statistics.median(lags) * 1000,
        "p95_ms": lags[int(0.95 * (len(lags) - 1))] * 1000,
        "max_ms": lags[-1] * 1000,
        "idle_queries_per_s": idle_rate,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--submissions", type=int, default=40)
    parser.add_argument("--gap", type=float, default=0.3)
    parser.add_argument("--modes", default="listen,poll 1s,poll 50ms")
    args = parser.parse_args()

    def poll(seconds: float) -> Waker:
        return lambda store, loop: Poll(seconds)

    wakers: dict[str, Waker] = {"listen": wake_for, "poll 1s": poll(1.0), "poll 50ms": poll(0.05)}
    root = Path(HOME)
    for mode in args.modes.split(","):
        figures = run(mode, wakers[mode], args.submissions, args.gap, root)
        print(
            f"{mode:>10}: receive->claim p50 {figures['p50_ms']:.1f} ms, p95 {figures['p95_ms']:.1f} ms,"
            f" max {figures['max_ms']:.1f} ms; idle has_work queries {figures['idle_queries_per_s']:.1f}/s",
            flush=True,
        )


if __name__ == "__main__":
    main()
