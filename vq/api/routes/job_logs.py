"""A job's own log (vq/job_logs.py): the lines its handler logged, as JSON or as a live
Server-Sent Events stream that ends with the job. Same visibility as the job's other
routes: a user sees only their own jobs' logs."""

from __future__ import annotations

import asyncio
import json

from fastapi import APIRouter, Depends, Query, Request
from starlette.responses import StreamingResponse

from vq import job_log_store
from vq.api import schemas
from vq.api.context import Context
from vq.api.errors import ERRORS_AS_JSON
from vq.api.routes.jobs import JOB_ID, TYPE_NAME
from vq.tokens import Principal

AFTER = Query(0, ge=0, le=2**53, description="only the lines after this sequence number (the last one you saw)")
POLL_S = 0.5  # seconds between looks for new lines while the job runs
KEEP_ALIVE_S = 15.0


def router(ctx: Context) -> APIRouter:
    routes = APIRouter()
    conn, settings, call, visible_job = ctx.conn, ctx.settings, ctx.call, ctx.visible_job

    async def _part(principal: Principal, job_type: str, job_id: str, after: int) -> dict:
        view = await call(visible_job, principal, job_type, job_id)
        return await call(
            job_log_store.read, conn, settings, view["id"], view["status"], after, bool(view.get("trimmed"))
        )

    @routes.get(
        "/api/jobs/{jobType}/{jobId}/logs",
        tags=["jobs"],
        summary="Job log: the lines its handler logged",
        response_model=schemas.JobLog,
        response_model_exclude_unset=True,
    )
    async def job_log(
        jobType: str = TYPE_NAME,
        jobId: str = JOB_ID,
        after: int = AFTER,
        principal: Principal = Depends(ctx.caller),
    ) -> dict:
        return await _part(principal, jobType, jobId, after)

    @routes.get(
        "/api/jobs/{jobType}/{jobId}/logs/stream",
        tags=["jobs"],
        summary="Job log, live (Server-Sent Events) until the job ends",
        response_class=StreamingResponse,
        responses=ERRORS_AS_JSON,
    )
    async def job_log_stream(
        request: Request,
        jobType: str = TYPE_NAME,
        jobId: str = JOB_ID,
        after: int = AFTER,
        principal: Principal = Depends(ctx.caller),
    ):
        """Each line as a `log` event (its id is the line's seq: Last-Event-ID resumes),
        `dropped` where lines were dropped, and one `end` event with the job's status once
        it has ended; then the stream closes."""
        resume = request.headers.get("last-event-id", "")
        start = int(resume) if resume.isdigit() and len(resume) < 16 else after
        first = await _part(principal, jobType, jobId, start)  # 404 before the stream starts

        async def stream():
            part, position, quiet = first, start, 0.0
            while True:
                for line in part["lines"]:
                    if "dropped" in line:
                        yield f"event: dropped\ndata: {json.dumps(line)}\n\n"
                    else:
                        position = line["seq"]
                        yield f"id: {position}\nevent: log\ndata: {json.dumps(line, ensure_ascii=False)}\n\n"
                if part["ended"]:
                    yield f"event: end\ndata: {json.dumps({'id': part['id'], 'status': part['status']})}\n\n"
                    return
                if part["lines"]:
                    quiet = 0.0
                elif quiet >= KEEP_ALIVE_S:
                    quiet = 0.0
                    yield ": keep-alive\n\n"
                if await request.is_disconnected():
                    return
                await asyncio.sleep(POLL_S)
                quiet += POLL_S
                part = await _part(principal, jobType, part["id"], position)

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    return routes
