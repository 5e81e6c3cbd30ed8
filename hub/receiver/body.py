"""Reading a request body under a size limit, without reading past it."""

from __future__ import annotations

from starlette.requests import Request


class BodyTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"request body exceeds the limit of {limit} bytes")
        self.limit = limit


class BadContentLength(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    """The raw body, or BodyTooLarge as soon as it is known to exceed `limit`.

    A declared Content-Length over the limit is refused before any byte is read; a
    chunked body (no Content-Length) is counted as it arrives and abandoned at the limit.
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            length = int(declared)
        except ValueError:
            raise BadContentLength(f"invalid Content-Length {declared[:32]!r}") from None
        if length > limit:
            raise BodyTooLarge(limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(limit)
        chunks.append(chunk)
    return b"".join(chunks)
