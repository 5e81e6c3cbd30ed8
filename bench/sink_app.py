"""A loopback destination for benchmarks: accepts every POST (webhooks, and Slack's chat.postMessage
at /api) and remembers when each webhook-id came."""

from __future__ import annotations

import argparse
import time

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from hub.server import uvicorn_config

arrivals: list[tuple[str, float]] = []


async def receive(request: Request) -> Response:
    await request.body()
    arrivals.append((request.headers.get("webhook-id", ""), time.time()))
    return Response(status_code=204)


async def slack_post(request: Request) -> JSONResponse:
    """Slack's chat.postMessage as it answers a post it accepts (no rate limit here: the hub's own
    per-channel budget paces Slack, flows/budgets.py)."""
    channel = str(orjson.loads(await request.body()).get("channel", ""))
    now = time.time()
    arrivals.append((f"slack:{channel}", now))
    return JSONResponse({"ok": True, "channel": channel, "ts": f"{now:.6f}"})


async def stats(request: Request) -> JSONResponse:
    since = int(request.query_params.get("since", "0"))
    return JSONResponse({"count": len(arrivals), "arrivals": arrivals[since:]})


app = Starlette(
    routes=[
        Route("/in/{name}", receive, methods=["POST"]),
        Route("/api/chat.postMessage", slack_post, methods=["POST"]),
        Route("/stats", stats),
        Route("/healthz", lambda r: JSONResponse({"status": "alive"})),
    ]
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    uvicorn.Server(uvicorn_config(app, "127.0.0.1", args.port)).run()
