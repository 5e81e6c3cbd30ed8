"""The baseline: a bare Starlette POST endpoint, served exactly like the hub."""

from __future__ import annotations

import argparse

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hub.server import uvicorn_config


async def hook(request: Request) -> JSONResponse:
    await request.body()
    return JSONResponse({"status": "accepted", "id": request.path_params["source_id"]})


app = Starlette(
    routes=[
        Route("/hooks/{source_id}", hook, methods=["POST"]),
        Route("/healthz", lambda r: JSONResponse({"status": "alive"})),
    ]
)

if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    # Stock uvicorn (httptools), as a bare endpoint is served: not the hub's edge protocol.
    uvicorn.Server(uvicorn_config(app, "127.0.0.1", args.port, http="httptools")).run()
