"""Queue control over HTTP (operator): pause, resume, clear a job type's queues."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from vq import queues
from vq.api.context import Context
from vq.api.routes.jobs import TYPE_NAME
from vq.tokens import Principal


def router(ctx: Context) -> APIRouter:
    routes = APIRouter()
    conn, settings, call, audited = ctx.conn, ctx.settings, ctx.call, ctx.audited

    @routes.post("/api/jobs/queues/{jobType}/pause", tags=["queues"], summary="Pause a queue (operator)")
    async def pause(jobType: str = TYPE_NAME, principal: Principal = Depends(ctx.operator)) -> dict:
        result = await call(queues.pause, conn, settings, jobType)
        await audited(principal, "pause", jobType, "-")
        return result

    @routes.post("/api/jobs/queues/{jobType}/resume", tags=["queues"], summary="Resume a queue (operator)")
    async def resume(jobType: str = TYPE_NAME, principal: Principal = Depends(ctx.operator)) -> dict:
        result = await call(queues.resume, conn, settings, jobType)
        await audited(principal, "resume", jobType, "-")
        return result

    @routes.delete(
        "/api/jobs/queues/{jobType}/clear", tags=["queues"], summary="Clear a queue's waiting jobs (operator)"
    )
    async def clear(jobType: str = TYPE_NAME, principal: Principal = Depends(ctx.operator)) -> dict:
        result = await call(queues.clear, conn, settings, jobType)
        await audited(principal, "clear", jobType, "-")
        return result

    return routes
