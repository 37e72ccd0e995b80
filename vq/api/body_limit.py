"""The request body limit (`http.maxBodyBytes`), counted as the body arrives.

A `Content-Length` over the limit is refused without parsing the body: one up to
`DRAIN_FACTOR` times the limit is read and dropped first, since a client that sends its
whole body before reading (urllib asks to close the connection after the answer) would
otherwise get a broken pipe instead of the 413; a larger one is refused at once. A body
without a length (`Transfer-Encoding: chunked`) is counted chunk by chunk as the route reads
it and refused the moment the count passes the limit, so a 200 MB chunked body is neither
read whole nor parsed: a client that reads as it sends stops there. The 413 is in vq's
error shape (FastAPI's own `max_body_size` answers in other shapes).
"""

from __future__ import annotations

from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DRAIN_FACTOR = 16  # a declared body up to this many times the limit is read (and dropped) before the 413


class BodyTooLarge(HTTPException):
    """Raised from `receive` when the body passes the limit (the app's HTTPException handler
    answers it; the middleware does if nothing did)."""

    def __init__(self, limit: int, length: int | None = None):
        size = f"{length} bytes" if length is not None else f"more than {limit} bytes"
        super().__init__(413, f"body: {size} is over the limit of {limit} bytes (http.maxBodyBytes)")


class BodyLimit:
    """ASGI middleware: at most `limit` bytes of request body."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            if int(declared) <= DRAIN_FACTOR * self.limit:
                await _discard(receive)
            await _answer(BodyTooLarge(self.limit, int(declared)), scope, receive, send)
            return
        received = 0
        started = False

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:
                    raise BodyTooLarge(self.limit)
            return message

        async def watched(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted, watched)
        except BodyTooLarge as exc:
            if started:
                raise
            await _answer(exc, scope, receive, send)


async def _discard(receive: Receive) -> None:
    """Read a body of known, bounded length and drop it."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def _answer(exc: BodyTooLarge, scope: Scope, receive: Receive, send: Send) -> None:
    response = JSONResponse({"error": {"code": "too_large", "message": exc.detail, "field": None}}, status_code=413)
    await response(scope, receive, send)
