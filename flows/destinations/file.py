"""`file`: append Submission JSON lines to a local file (the example config's default)."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from pydantic import Field

from flows.destinations.base import DeliveryContext, DeliveryItem, Destination, DestinationSettings, Outcome


class FileConfig(DestinationSettings):
    path: str = Field(
        description="JSON-lines file; relative paths are relative to the data dir",
        examples=["deliveries.jsonl"],
    )
    fsync: bool = Field(
        default=True, description="fsync after each batch so a delivered line survives a crash"
    )


class FileDestination(Destination[FileConfig]):
    type = "file"
    Config = FileConfig

    async def deliver(
        self, items: list[DeliveryItem], config: FileConfig, context: DeliveryContext
    ) -> list[Outcome]:
        path = Path(config.path)
        if not path.is_absolute() and context.extra.get("data_dir"):
            path = Path(context.extra["data_dir"]) / path
        lines = [
            json.dumps(
                {"delivery_id": item.key, **item.submission.model_dump(mode="json")}, ensure_ascii=False
            )
            for item in items
        ]
        try:
            await asyncio.to_thread(_append, path, lines, config.fsync)
        except OSError as exc:
            reason = f"cannot write {path}: {exc.strerror or exc}"
            return [Outcome(key=item.key, status="retry", reason=reason) for item in items]
        return [Outcome(key=item.key, status="delivered") for item in items]


def _append(path: Path, lines: list[str], fsync: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    # 0600 like the spool: the lines hold whole submissions (the mode applies when the file is created).
    with open(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600), "a", encoding="utf-8") as handle:
        handle.write("".join(line + "\n" for line in lines))
        handle.flush()
        if fsync:
            os.fsync(handle.fileno())


destination = FileDestination()
