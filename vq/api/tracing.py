"""Server spans for the HTTP API (vq/telemetry/, docs/tracing.md): one per request, named
`METHOD /route/{template}` as OpenTelemetry's HTTP conventions have it, continuing the trace
an incoming W3C `traceparent` header names, so a platform's own trace carries on into vq.
Installed only when tracing is on: otherwise the app has no such layer at all."""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vq import telemetry

_PROPAGATED = (b"traceparent", b"tracestate")


class ServerSpans:
    """ASGI middleware: each HTTP request in a SERVER span, current while the app answers it."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in _PROPAGATED}
        method = scope["method"]
        status = 500  # if the app raises before it answers

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with telemetry.continued(offered), telemetry.span(method, kind="server", attributes=_request(scope)) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                if span is not None:
                    template = getattr(scope.get("route"), "path", None)  # the route FastAPI matched
                    if template:
                        span.update_name(f"{method} {template}")
                        span.set_attribute("http.route", template)
                    span.set_attribute("http.response.status_code", status)
                    if status >= 500:
                        span.set_attribute("error.type", str(status))
                        telemetry.failed(span)


def _request(scope: Scope) -> dict:
    server, client = scope.get("server") or (None, None), scope.get("client") or (None, None)
    agent = next((v.decode("latin-1") for k, v in scope["headers"] if k == b"user-agent"), None)
    return {
        "http.request.method": scope["method"],
        "url.path": scope["path"],
        "url.scheme": scope.get("scheme", "http"),
        "server.address": server[0],
        "server.port": server[1],
        "client.address": client[0],
        "user_agent.original": agent,
        "network.protocol.version": scope.get("http_version"),
    }
