"""Request ids and the access log: one line per HTTP request through vq's logging.

An incoming `X-Request-Id` that is short and printable (at most 128 visible ASCII
characters) is kept, so a proxy's id follows the request into vq's log; any other, or none,
is replaced by a fresh one. The id goes back in the response's `X-Request-Id` header and
into the access line (`vq.http.access`): method, path, status, duration and request id,
top-level keys under `--log-format json`. It replaces uvicorn's own access log, which has
neither the id nor the duration. In the daemon's HTTP children the lines are written in
batches off the event loop (vq/api/access_log.py)."""

from __future__ import annotations

import logging
import re
import time
import uuid

from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

HEADER = "X-Request-Id"
_ACCEPTABLE = re.compile(r"[\x21-\x7e]{1,128}")
log = logging.getLogger("vq.http.access")


def request_id(offered: str | None) -> str:
    """The client's id when acceptable, else a new one (32 hex digits)."""
    if offered and _ACCEPTABLE.fullmatch(offered):
        return offered
    return uuid.uuid4().hex


class RequestId:
    """ASGI middleware: gives each request an id, returns it, logs the request when answered."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = request_id(Headers(scope=scope).get(HEADER))
        scope.setdefault("state", {})["request_id"] = rid
        started = time.perf_counter()
        status = 500  # if the app raises before it answers

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            if log.isEnabledFor(logging.INFO):
                log.handle(access_record(scope, status, time.perf_counter() - started, rid))


def access_record(scope: Scope, status: int, seconds: float, rid: str) -> logging.LogRecord:
    """The access line's record, made directly: `log.info` would first walk the stack for
    the caller's file and line (findCaller), which no vq format prints, two thirds of the
    line's cost on the event loop."""
    took = round(seconds * 1000, 1)
    client = scope.get("client")
    return log.makeRecord(
        log.name,
        logging.INFO,
        "",
        0,
        "%s %s %s %sms request %s",
        (scope["method"], scope["path"], status, took, rid),
        None,
        extra={
            "request_id": rid,
            "method": scope["method"],
            "path": scope["path"],
            "status": status,
            "duration_ms": took,
            "client": client[0] if client else None,
        },
    )
