"""The processes a hub runs, read from Linux's /proc: who belongs to it, what they are, their RSS.

`hookhub serve` starts Prefect's ephemeral server (a uvicorn subprocess) and its delivery
worker processes (multiprocessing, spawned); a benchmark measures them and a test checks
that none outlives the hub. /proc needs no extra package (psutil is not a dependency).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PROC = Path("/proc")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True)
class ProcInfo:
    pid: int
    ppid: int
    pgid: int
    cmdline: str


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name is in parentheses and may itself hold spaces or parentheses.
    return text[text.rindex(")") + 2 :].split()


def info(pid: int) -> ProcInfo | None:
    """None when the process is gone (or already a zombie: it holds no memory and runs nothing)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] == "Z":
        return None
    try:
        raw = (PROC / str(pid) / "cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    return ProcInfo(
        pid=pid,
        ppid=int(fields[1]),
        pgid=int(fields[2]),
        cmdline=raw.replace(b"\0", b" ").decode("utf-8", "replace").strip(),
    )


def everyone() -> list[ProcInfo]:
    found = []
    for entry in PROC.iterdir():
        if entry.name.isdigit():
            proc = info(int(entry.name))
            if proc is not None:
                found.append(proc)
    return found


def descendants(pid: int) -> list[ProcInfo]:
    """Every live process below `pid` (children, their children, ...)."""
    procs = everyone()
    below: list[ProcInfo] = []
    parents = {pid}
    while True:
        new = [p for p in procs if p.ppid in parents and p not in below]
        if not new:
            return below
        below.extend(new)
        parents = {p.pid for p in new}


def group(pgid: int) -> list[ProcInfo]:
    """Every live process of a process group."""
    return [p for p in everyone() if p.pgid == pgid]


def with_environ(name: str, value: str) -> list[ProcInfo]:
    """Live processes (of this user) whose environment has `name=value`: what a process group
    does not catch, such as a server that started its own session, still inherits it."""
    wanted = f"{name}={value}".encode()
    found = []
    for proc in everyone():
        try:
            environ = (PROC / str(proc.pid) / "environ").read_bytes().split(b"\0")
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
        if wanted in environ:
            found.append(proc)
    return found


def rss_bytes(pid: int) -> int | None:
    """Resident set size, or None when the process is gone."""
    try:
        pages = int((PROC / str(pid) / "statm").read_text().split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError, IndexError):
        return None
    return pages * PAGE_BYTES
