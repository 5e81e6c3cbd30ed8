"""Reading a request body under a size limit, without reading past it."""

from __future__ import annotations

from starlette.types import Receive


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes")
        self.limit = limit


class BadContentLength(Exception):
    pass


class ClientGone(Exception):
    """The client disconnected before sending the whole body: there is no one to answer."""


async def read_limited(receive: Receive, declared: str | None, limit: int) -> bytes:
    """The raw body from ASGI `receive`, or BodyTooLarge as soon as it is known to exceed `limit`.

    A declared Content-Length over the limit is refused before any byte is read; a
    chunked body (no Content-Length) is counted as it arrives and abandoned at the limit.
    """
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise BadContentLength(f"invalid Content-Length {declared[:32]!r}") from None
        if length > limit:
            raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone()
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)
