"""Recurring jobs over HTTP: create, remove, run now (vq/recurring/definitions.py does the work)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Path

from vq import jobs
from vq.api import schemas
from vq.api.context import Context
from vq.errors import NotFound
from vq.recurring import definitions as recurring
from vq.recurring import firing
from vq.tokens import Principal


def router(ctx: Context) -> APIRouter:
    routes = APIRouter()
    conn, settings, call, audited = ctx.conn, ctx.settings, ctx.call, ctx.audited

    def visible(principal: Principal, recurring_id: str) -> recurring.Recurring:
        """The definition, if the caller may see it; any other is not found (as for jobs)."""
        definition = recurring.get(conn, recurring_id)
        if not principal.may_see(definition.userId, definition.projectId):
            raise NotFound(f"recurring job {recurring_id!r} not found")
        return definition

    @routes.post(
        "/api/jobs/recurring",
        status_code=201,
        tags=["recurring"],
        summary="Create a recurring job",
        response_model=schemas.RecurringJob,
        response_model_exclude_unset=True,
    )
    async def create_recurring(
        body: dict[str, Any] = Body(
            ...,
            examples=[
                {
                    "jobType": "content-analysis",
                    "data": {"userId": "user-123", "content": "Analyze this content", "type": "text"},
                    "cronExpression": "0 0 * * *",
                    "options": {"skipCache": True},
                }
            ],
        ),
        principal: Principal = Depends(ctx.caller),
    ) -> dict:
        body = dict(body)
        data = body.get("data")
        if not isinstance(data, dict):
            data = {}
        claimed = body.get("userId") or data.get("userId")
        user = ctx.acting_for(
            principal, claimed, body.get("projectId") or data.get("projectId"), "create recurring jobs"
        )
        if not principal.is_operator:
            body["userSubscription"] = ctx.tier_of(principal)
        if claimed is None:
            body["userId"] = user
        definition = await call(recurring.add_from_mapping, conn, settings, body, principal.is_operator)
        await audited(principal, "recurring-add", definition.jobType, definition.id, cron=definition.cronExpression)
        return await call(recurring.describe, conn, definition)

    @routes.delete("/api/jobs/recurring/{recurringJobId}", tags=["recurring"], summary="Remove a recurring job")
    async def delete_recurring(
        recurringJobId: str = Path(..., max_length=128), principal: Principal = Depends(ctx.caller)
    ) -> dict:
        definition = await call(visible, principal, recurringJobId)
        removed = await call(recurring.remove, conn, definition.id)
        await audited(principal, "recurring-remove", removed.jobType, removed.id)
        return {"id": removed.id, "removed": True}

    @routes.post(
        "/api/jobs/recurring/{recurringJobId}/run",
        status_code=201,
        tags=["recurring"],
        summary="Run a recurring job now",
        response_model=schemas.Job,
        response_model_exclude_unset=True,
    )
    async def run_recurring(
        recurringJobId: str = Path(..., max_length=128), principal: Principal = Depends(ctx.caller)
    ) -> dict:
        """One job of the definition now, as a tick would submit it; its schedule is unchanged."""
        definition = await call(visible, principal, recurringJobId)
        job_id = await call(firing.run_now, conn, settings, definition.id)
        await audited(principal, "recurring-run", definition.jobType, definition.id, jobId=job_id)
        return await call(jobs.show, conn, job_id, settings, False)

    return routes
