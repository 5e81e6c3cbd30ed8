"""A small HTTP/1.1 load generator over keep-alive loopback connections.

Requests are built before the clock starts (signing is not what we measure), sent over
raw asyncio streams (an HTTP client library would cost more CPU than the server we
measure on a 2-core machine), and every response's status and latency are kept.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass, field


@dataclass
class Result:
    sent: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    started: float = 0.0
    finished: float = 0.0

    @property
    def seconds(self) -> float:
        return self.finished - self.started

    def ok(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    def rate(self) -> float:
        return self.ok() / self.seconds if self.seconds else 0.0

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]

    def summary(self) -> str:
        return (
            f"{self.ok()}/{self.sent} ok in {self.seconds:.2f}s = {self.rate():,.0f}/s, "
            f"p50 {self.percentile(50) * 1000:.1f} ms, p99 {self.percentile(99) * 1000:.1f} ms, "
            f"mean {statistics.fmean(self.latencies) * 1000 if self.latencies else 0:.1f} ms"
        )


def build_request(path: str, headers: dict[str, str], body: bytes, host: str = "127.0.0.1") -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: {host}", f"Content-Length: {len(body)}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k.lower() not in ("content-length", "host")]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8") + body


async def _exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    if length:
        await reader.readexactly(length)
    return status


async def closed_loop(port: int, requests: list[bytes], connections: int) -> Result:
    """Each connection sends its next request as soon as the previous answer arrives."""
    result = Result()
    queue = list(reversed(requests))

    async def worker() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while queue:
                raw = queue.pop()
                began = time.perf_counter()
                status = await _exchange(reader, writer, raw)
                result.latencies.append(time.perf_counter() - began)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                result.sent += 1
        finally:
            writer.close()

    result.started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    result.finished = time.perf_counter()
    return result


async def open_loop(port: int, requests: list[bytes], rate: float, connections: int = 64) -> Result:
    """Requests are due at a fixed rate whatever the server does; latency counts from when each was due.

    Counting from the due time (not the send time) keeps queueing delay in the figures
    instead of hiding it (coordinated omission).
    """
    result = Result()
    pool: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = asyncio.Queue()
    for _ in range(connections):
        pool.put_nowait(await asyncio.open_connection("127.0.0.1", port))

    async def one(raw: bytes, due: float) -> None:
        conn = await pool.get()
        try:
            status = await _exchange(conn[0], conn[1], raw)
        finally:
            pool.put_nowait(conn)
        result.latencies.append(time.perf_counter() - due)
        result.statuses[status] = result.statuses.get(status, 0) + 1
        result.sent += 1

    tasks = []
    result.started = start = time.perf_counter()
    interval = 1.0 / rate
    for index, raw in enumerate(requests):
        due = start + index * interval
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(raw, due)))
    await asyncio.gather(*tasks)
    result.finished = time.perf_counter()
    while not pool.empty():
        pool.get_nowait()[1].close()
    return result
