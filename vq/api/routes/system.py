"""System routes: the liveness probe, the OpenAPI document, and the job types served."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request

from vq.api.context import Context
from vq.jobtypes import job_types
from vq.tokens import Principal


def router(ctx: Context) -> APIRouter:
    routes = APIRouter()

    @routes.get("/livez", tags=["system"], summary="Liveness probe: the server answers")
    async def livez() -> dict:  # no token: a probe only learns that the server answers
        return {"status": "ok"}

    @routes.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request, _: Principal = Depends(ctx.caller)) -> dict:
        """The OpenAPI 3 document of this server (it needs a token, like every route)."""
        return request.app.openapi()

    @routes.get("/api/jobs/types", tags=["system"], summary="The job types")
    async def types(_: Principal = Depends(ctx.caller)) -> list:
        return [
            {"name": jt.name, "description": jt.description, "timeoutMs": jt.timeout_ms, "attempts": jt.attempts}
            for jt in job_types(ctx.settings).values()
        ]

    return routes
