"""A second baseline: the bare Starlette endpoint plus one durable SQLite insert per request.

The naive way to make a webhook endpoint durable: each request inserts its body into a SQLite
WAL database (synchronous=FULL, so each commit is fsynced, like the hub's spool) before it is
answered, on the event loop. Served exactly like the hub and the bare endpoint.
"""

from __future__ import annotations

import argparse
import sqlite3
import tempfile
import time
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hub.server import uvicorn_config


def make_app(db_path: Path) -> Starlette:
    conn = sqlite3.connect(db_path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute(
        "CREATE TABLE IF NOT EXISTS inbox (id INTEGER PRIMARY KEY, received_at REAL, source TEXT, body BLOB)"
    )

    async def hook(request: Request) -> JSONResponse:
        body = await request.body()
        source = request.path_params["source_id"]
        row_id = conn.execute(
            "INSERT INTO inbox (received_at, source, body) VALUES (?, ?, ?)", (time.time(), source, body)
        ).lastrowid
        return JSONResponse({"status": "accepted", "id": row_id})

    return Starlette(
        routes=[
            Route("/hooks/{source_id}", hook, methods=["POST"]),
            Route("/healthz", lambda r: JSONResponse({"status": "alive"})),
        ]
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--db", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hookhub-bare-sqlite-") as tmp:
        app = make_app(args.db or Path(tmp) / "bare.db")
        # Stock uvicorn (httptools), as a naive endpoint is served: not the hub's edge protocol.
        uvicorn.Server(uvicorn_config(app, "127.0.0.1", args.port, http="httptools")).run()
