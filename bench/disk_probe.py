"""How long this machine's disk takes to fsync while a benchmark phase runs.

Every durable endpoint answers a webhook only after an fsync, so a stalled fsync delays every
answer behind it, whatever the server does. On this shared machine fsync usually takes under
1 ms but now and then 100-400 ms, with nothing else of ours running (measured: 3 fsyncs over
30 ms in 60 s, the longest 404 ms). The probe commits 4 KB with fsync every 10 ms beside the
phase (the same load as one more group commit per 10 ms), so a round's p99 can be read against
what the disk did meanwhile. It is a normal-priority process, as the receiver is: a time it
reports includes any wait for a CPU after the fsync returned, as a webhook's answer would.

    python -m bench.disk_probe DIR      # runs until its stdin closes, then prints one JSON line
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

INTERVAL = 0.01
STALL_MS = 30.0


@dataclass
class DiskReport:
    fsyncs: int = 0
    stalls: int = 0
    """fsyncs that took longer than STALL_MS"""
    longest_ms: float = 0.0
    stalled_ms: float = 0.0
    """the stalls' time added up"""

    def summary(self) -> str:
        return f"disk: {self.stalls} fsyncs over {STALL_MS:.0f} ms (longest {self.longest_ms:.0f} ms)"


def probe(directory: Path, stop: threading.Event) -> DiskReport:
    report = DiskReport()
    path = directory / "disk-probe.bin"
    block = os.urandom(4096)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        while not stop.wait(INTERVAL):
            began = time.perf_counter()
            os.write(fd, block)
            os.fsync(fd)
            took = (time.perf_counter() - began) * 1000
            report.fsyncs += 1
            report.longest_ms = max(report.longest_ms, took)
            if took > STALL_MS:
                report.stalls += 1
                report.stalled_ms += took
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)
    return report


class DiskProbe:
    """`with DiskProbe(dir) as p: ...` then `p.report`: the probe in a process of its own (its
    own GIL: the load generator's loop must not delay its timing)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.report = DiskReport()

    def __enter__(self) -> DiskProbe:
        import subprocess

        self._proc = subprocess.Popen(
            [sys.executable, "-m", "bench.disk_probe", str(self.directory)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=Path(__file__).resolve().parents[1],
        )
        return self

    def __exit__(self, *exc: object) -> None:
        out, _ = self._proc.communicate(b"", timeout=30)
        self.report = DiskReport(**json.loads(out))


def main() -> None:
    stop = threading.Event()
    result: list[DiskReport] = []
    worker = threading.Thread(target=lambda: result.append(probe(Path(sys.argv[1]), stop)))
    worker.start()
    sys.stdin.buffer.read()  # until the benchmark closes our stdin
    stop.set()
    worker.join()
    print(json.dumps(result[0].__dict__), flush=True)


if __name__ == "__main__":
    main()
