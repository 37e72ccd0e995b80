"""Jobs over HTTP: create (one, delayed, in bulk), read, its artifacts, remove, retry, cancel.

The fixed paths (delayed, bulk) are declared before `/api/jobs/{jobType}`, and create_app
includes this router after every other /api/jobs/... router, so no `{jobType}` route
shadows a fixed one (config validation keeps job types off those names).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Query, Response
from fastapi.responses import FileResponse

from vq import artifacts, jobs
from vq.api import schemas
from vq.api.context import Context
from vq.api.errors import ERRORS_AS_JSON
from vq.api.json_response import StrictJSONResponse
from vq.errors import InvalidInput
from vq.jobtypes import get_job_type
from vq.submission import submit_each
from vq.tokens import Principal

JOB_ID = Path(
    ...,
    pattern=r"^[A-Za-z0-9_-]{1,128}$",
    description="A job id (RQ's: letters, digits, _ and -), or a unique prefix of 8 or more characters.",
)
MAX_BULK = 1000  # submissions per POST /api/jobs/bulk
DEDUPLICATED: dict[int | str, dict[str, Any]] = {
    200: {"description": "A uniqueKey returned the job that holds it (`deduplicated`: true)", "model": schemas.Job}
}
CREATES_A_JOB: dict[str, Any] = {  # the answer of both routes that create one job
    "status_code": 201,
    "tags": ["jobs"],
    "response_model": schemas.Job,
    "responses": DEDUPLICATED,
    "response_model_exclude_unset": True,
}
TYPE_NAME = Path(..., pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="A job type, see GET /api/jobs/types.")


def _answered(view: dict) -> Response:
    """201 for a new job; 200 when a uniqueKey returned an existing one. Sent as built: its
    JSON is the view itself (`schemas.Job` only documents it, vq/api/schemas.py), so
    FastAPI's validation of the dict into the model and dump back, the same JSON, is skipped
    on the route every submission takes."""
    return StrictJSONResponse(view, status_code=200 if view.get("deduplicated") else 201)


def router(ctx: Context) -> APIRouter:
    routes = APIRouter()
    conn, settings, call, audited, visible_job = ctx.conn, ctx.settings, ctx.call, ctx.audited, ctx.visible_job

    async def acted(principal: Principal, job_type: str, job_id: str, action: str, act, **detail) -> dict:
        """`act(id)` on a job the caller may see (by its full id, a prefix resolved), in the
        thread pool, then recorded with who did it: what remove, retry and cancel share."""
        view = await call(visible_job, principal, job_type, job_id)
        done = await call(act, view["id"])
        await audited(principal, action, job_type, view["id"], **detail)
        return done

    @routes.post("/api/jobs/delayed", summary="Create a delayed job", **CREATES_A_JOB)
    async def create_delayed(
        body: dict[str, Any] = Body(
            ...,
            examples=[
                {
                    "jobType": "image-generation",
                    "data": {"userId": "user-123", "prompt": "Generate an image of a sunset"},
                    "delay": 300000,
                }
            ],
        ),
        principal: Principal = Depends(ctx.caller),
    ) -> Response:
        if "delay" not in body and "at" not in body and "debounce" not in body:
            raise InvalidInput("delay: missing (milliseconds from now)", field="delay")
        return _answered(ctx.create(principal, body, None, delayed=True))  # on the loop: Context.create

    @routes.post(
        "/api/jobs/bulk",
        tags=["jobs"],
        summary="Create many jobs; an outcome per item",
        response_model=schemas.BulkOutcome,
        response_model_exclude_unset=True,
    )
    async def create_bulk(
        body: dict[str, Any] = Body(
            ...,
            examples=[
                {
                    "jobs": [
                        {"jobType": "content-analysis", "data": {"content": "one", "type": "text"}},
                        {"jobType": "image-generation", "data": {"prompt": "a sunset"}, "delay": 60000},
                    ]
                }
            ],
        ),
        principal: Principal = Depends(ctx.caller),
    ) -> dict:
        items = body.get("jobs")
        if not isinstance(items, list) or not items:
            raise InvalidInput("jobs: expected a non-empty list of submissions", field="jobs")
        if len(items) > MAX_BULK:
            raise InvalidInput(f"jobs: at most {MAX_BULK} per request", field="jobs")
        outcomes = await call(
            submit_each, conn, settings, items, lambda item: ctx.own_submission(principal, item, None)
        )
        for outcome in outcomes:
            if outcome["ok"] and outcome.get("unique") in (None, "created"):
                await audited(principal, "create", None, outcome["id"], bulk=True)
        return {
            "submitted": sum(1 for o in outcomes if o["ok"]),
            "rejected": sum(1 for o in outcomes if not o["ok"]),
            "results": outcomes,
        }

    @routes.post("/api/jobs/{jobType}", summary="Create a job", **CREATES_A_JOB)
    async def create_job(
        jobType: str = TYPE_NAME,
        body: dict[str, Any] = Body(
            ...,
            examples=[
                {
                    "userId": "user-123",
                    "projectId": "project-456",
                    "prompt": "Create a video about AI technology",
                    "options": {"quality": "high"},
                    "priority": "high",
                }
            ],
        ),
        principal: Principal = Depends(ctx.caller),
    ) -> Response:
        get_job_type(settings, jobType)
        return _answered(ctx.create(principal, body, jobType))  # on the loop: Context.create

    @routes.get(
        "/api/jobs/{jobType}/{jobId}",
        tags=["jobs"],
        summary="Job details",
        response_model=schemas.Job,
        response_model_exclude_unset=True,
    )
    async def job_details(
        jobType: str = TYPE_NAME, jobId: str = JOB_ID, principal: Principal = Depends(ctx.caller)
    ) -> dict:
        return await call(visible_job, principal, jobType, jobId)

    @routes.get(
        "/api/jobs/{jobType}/{jobId}/progress",
        tags=["jobs"],
        summary="Job progress",
        response_model=schemas.JobProgress,
        response_model_exclude_unset=True,
    )
    async def job_progress(
        jobType: str = TYPE_NAME, jobId: str = JOB_ID, principal: Principal = Depends(ctx.caller)
    ) -> dict:
        view = await call(visible_job, principal, jobType, jobId)
        return {"id": view["id"], "status": view["status"], "progress": view["progress"], "trimmed": view["trimmed"]}

    @routes.get(
        "/api/jobs/{jobType}/{jobId}/result",
        tags=["jobs"],
        summary="Job result",
        response_model=schemas.JobResult,
        response_model_exclude_unset=True,
    )
    async def job_result(
        jobType: str = TYPE_NAME, jobId: str = JOB_ID, principal: Principal = Depends(ctx.caller)
    ) -> dict:
        view = await call(visible_job, principal, jobType, jobId)
        return await call(jobs.result, conn, view["id"], settings)

    @routes.get("/api/jobs/{jobType}/{jobId}/artifacts", tags=["jobs"], summary="The files a job produced")
    async def job_artifacts(
        jobType: str = TYPE_NAME, jobId: str = JOB_ID, principal: Principal = Depends(ctx.caller)
    ) -> dict:
        view = await call(visible_job, principal, jobType, jobId)
        files = await call(artifacts.listing, settings, view["id"])
        return {"id": view["id"], "artifacts": [{"name": f["name"], "bytes": f["bytes"]} for f in files]}

    @routes.get(
        "/api/jobs/{jobType}/{jobId}/artifacts/{name:path}",
        tags=["jobs"],
        summary="One artifact's bytes",
        response_class=FileResponse,
        responses=ERRORS_AS_JSON,
    )
    async def job_artifact(
        jobType: str = TYPE_NAME,
        jobId: str = JOB_ID,
        name: str = Path(..., max_length=512, description="a name from the artifacts list"),
        principal: Principal = Depends(ctx.caller),
    ):
        view = await call(visible_job, principal, jobType, jobId)
        return FileResponse(await call(artifacts.file, settings, view["id"], name))

    @routes.delete("/api/jobs/{jobType}/{jobId}", tags=["jobs"], summary="Remove a job (cancel it first if running)")
    async def remove_job(
        jobType: str = TYPE_NAME, jobId: str = JOB_ID, principal: Principal = Depends(ctx.caller)
    ) -> dict:
        def remove(job_id: str) -> dict:
            return jobs.remove(conn, job_id, artifacts.root(settings), settings)

        return await acted(principal, jobType, jobId, "remove", remove)

    @routes.post(
        "/api/jobs/{jobType}/{jobId}/retry",
        tags=["jobs"],
        summary="Retry a failed job",
        response_model=schemas.Job,
        response_model_exclude_unset=True,
    )
    async def retry_job(
        jobType: str = TYPE_NAME, jobId: str = JOB_ID, principal: Principal = Depends(ctx.caller)
    ) -> dict:
        return await acted(principal, jobType, jobId, "retry", lambda job_id: jobs.retry(conn, job_id, settings))

    @routes.post(
        "/api/jobs/{jobType}/{jobId}/cancel",
        tags=["jobs"],
        summary="Cancel a job that has not ended (now=true interrupts a running one)",
        response_model=schemas.Job,
        response_model_exclude_unset=True,
    )
    async def cancel_job(
        jobType: str = TYPE_NAME,
        jobId: str = JOB_ID,
        now: bool = Query(
            False,
            description="Interrupt a running job within a second on whatever host runs it; without it, a "
            "running job stops at its next progress report. A waiting job is canceled at once either way.",
        ),
        reason: str | None = Query(None, max_length=500, description="Recorded with the job."),
        principal: Principal = Depends(ctx.caller),
    ) -> dict:
        why = reason.strip() if reason and reason.strip() else f"canceled by {principal.user_id}"

        def cancel(job_id: str) -> dict:
            return jobs.cancel(conn, job_id, why, settings, now=now, actor=principal.user_id)

        return await acted(principal, jobType, jobId, "cancel", cancel, reason=why, now=now)

    return routes
