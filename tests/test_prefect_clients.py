"""The dispatcher's shared Prefect clients: quick retries on a busy (503) API, shared client reuse."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from flows import prefect_clients
from flows.prefect_clients import QuickRetryOnBusy


def _answers(*statuses: int) -> tuple[httpx.MockTransport, list[bytes]]:
    bodies: list[bytes] = []
    queue = list(statuses)

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(request.read())
        return httpx.Response(queue.pop(0) if len(queue) > 1 else queue[0])

    return httpx.MockTransport(handler), bodies


async def _post(transport: httpx.AsyncBaseTransport) -> int:
    async with httpx.AsyncClient(transport=transport, base_url="http://prefect.test") as client:
        return (await client.post("/api/flow_runs/", json={"name": "x"})).status_code


@pytest.mark.anyio
async def test_a_busy_answer_is_sent_again_quickly_with_the_same_body(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(prefect_clients, "BUSY_RETRIES", (0.001, 0.001, 0.001))
    inner, bodies = _answers(503, 503, 201)
    assert await _post(QuickRetryOnBusy(inner)) == 201
    assert len(bodies) == 3 and len(set(bodies)) == 1 and b'"name"' in bodies[0]


@pytest.mark.anyio
async def test_a_lasting_503_reaches_prefects_own_backoff(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(prefect_clients, "BUSY_RETRIES", (0.001, 0.001))
    inner, bodies = _answers(503)
    assert await _post(QuickRetryOnBusy(inner)) == 503
    assert len(bodies) == 3  # two quick retries, then the answer goes up


@pytest.mark.anyio
async def test_other_answers_pass_through_untouched() -> None:
    for status in (200, 404, 500, 429):
        inner, bodies = _answers(status)
        assert await _post(QuickRetryOnBusy(inner)) == status and len(bodies) == 1


def test_the_shared_client_is_wrapped_once() -> None:
    class FakePrefectClient:
        def __init__(self) -> None:
            self._client = httpx.AsyncClient(transport=httpx.MockTransport(lambda r: httpx.Response(200)))

    client = FakePrefectClient()
    prefect_clients._retry_quickly_on_busy(client)
    prefect_clients._retry_quickly_on_busy(client)
    transport = client._client._transport
    assert isinstance(transport, QuickRetryOnBusy) and not isinstance(transport.inner, QuickRetryOnBusy)


@pytest.mark.anyio
async def test_runs_started_after_ensure_use_the_shared_wrapped_client() -> None:
    """Against Prefect's real (ephemeral) server: guards the private attributes the wrap relies on."""
    from prefect import flow, task
    from prefect.client.orchestration import get_client

    @task
    async def client_in_task() -> int:
        return id(get_client())

    @flow(result_storage=prefect_clients.unpersisted_results(), persist_result=False)
    async def client_in_flow() -> tuple[int, int]:
        return id(get_client()), await client_in_task()

    shared = prefect_clients.SharedPrefectClients()
    try:
        assert await shared.ensure()
        from prefect.context import AsyncClientContext

        context = AsyncClientContext.get()
        assert context is not None
        assert isinstance(context.client._client._transport, QuickRetryOnBusy)
        runs = await asyncio.gather(
            asyncio.create_task(client_in_flow()), asyncio.create_task(client_in_flow())
        )
        assert {i for pair in runs for i in pair} == {id(context.client)}
    finally:
        await shared.aclose()
