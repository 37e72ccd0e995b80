"""The HTTP API (FastAPI): every endpoint of the spec under /api/jobs, JWT-protected.

An adapter only: each route checks who is calling, then calls the same service function
the CLI calls (submission, jobs, queues, recurring, history, stats, health). Errors are
`{"error": {"code", "message", "field"}}` with the status their `VqError` names
(vq/api/errors.py).

`create_app` only assembles: the shared context (vq/api/context.py: clients, the token
check, whom a request acts for), the middleware, the error handlers, and one router per
resource (vq/api/routes/). The routers of fixed paths (recurring, stats, user, queues,
health, performance, types, events) are included before the jobs router's `{jobType}`
routes, and no job type may take one of their names (config validation), so neither
shadows the other. The web dashboard (vq/webui) is mounted beside them under /ui.
"""

from __future__ import annotations

from fastapi import FastAPI
from redis import Redis

from vq import telemetry, webui
from vq.api import schemas
from vq.api.body_limit import BodyLimit
from vq.api.context import Context
from vq.api.errors import ERROR_RESPONSES, install_handlers
from vq.api.json_response import StrictJSONResponse
from vq.api.request_id import RequestId
from vq.api.routes import batches, events, history, job_logs, jobs, monitoring, queues, recurring, system
from vq.api.tracing import ServerSpans
from vq.config import Settings
from vq.connection import make_async_client, make_client

ROUTERS = (system, events, batches, recurring, history, monitoring, queues, jobs, job_logs)
"""In this order: every fixed /api/jobs/... path before the jobs router's `{jobType}` ones."""


def create_app(settings: Settings, conn: Redis | None = None) -> FastAPI:
    ctx = Context(settings, conn or make_client(settings), make_async_client(settings))
    app = FastAPI(
        title="vq",
        version="1",
        summary="The job queue of the AI video-generation platform",
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        responses=ERROR_RESPONSES,
        default_response_class=StrictJSONResponse,
        generate_unique_id_function=schemas.operation_id,
    )
    install_handlers(app, html=webui.error_page if settings.http.ui else None)
    app.add_middleware(BodyLimit, limit=settings.http.maxBodyBytes)
    if telemetry.on():  # a SERVER span per request (docs/tracing.md); no layer at all otherwise
        app.add_middleware(ServerSpans)
    app.add_middleware(RequestId)  # outermost: every answer has an id and an access line
    for resource in ROUTERS:
        app.include_router(resource.router(ctx))
    if settings.http.ui:
        webui.mount(app, ctx.conn, settings, ctx.stream_conn)  # the web dashboard under /ui (vq/webui)
    return app
