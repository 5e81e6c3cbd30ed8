"""A loopback destination that answers every POST after a fixed delay (bench/scale.py's latency-bound
sink): deliveries are then bound by waiting, not by this machine's cores. GET /stats as bench/sink_app.py."""

from __future__ import annotations

import argparse
import asyncio
import time

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from bench.sink_app import app as sink_app
from bench.sink_app import arrivals
from hub.server import uvicorn_config

DELAY = 0.1


async def receive(request: Request) -> Response:
    await request.body()
    await asyncio.sleep(DELAY)
    # Recorded when answered: a delivery is done when its destination has said so.
    arrivals.append((request.headers.get("webhook-id", ""), time.time()))
    return Response(status_code=204)


# bench/sink_app.py's /stats and /healthz, with this delayed /in/{name}.
app = Starlette(
    routes=[
        Route("/in/{name}", receive, methods=["POST"]),
        *(route for route in sink_app.routes if getattr(route, "path", "") != "/in/{name}"),
    ]
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay", type=float, default=DELAY, help="seconds before each answer")
    args = parser.parse_args()
    DELAY = args.delay
    uvicorn.Server(uvicorn_config(app, "127.0.0.1", args.port, backlog=4096)).run()
