"""Batches over HTTP: list them, create one (its jobs listed in the body) with callbacks,
read it, add jobs while it is open, close it. A user's token lists, sees and changes only its
own batches (any other is a 404, as for jobs); an operator's, every batch."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends, Path, Query

from vq import batch_lists, batches
from vq.api import schemas
from vq.api.context import Context
from vq.batch_views import STATES
from vq.errors import InvalidInput, NotFound, VqError
from vq.submission import Submission
from vq.tokens import Forbidden, Principal

BATCH_ID = Path(..., pattern=batches.BATCH_ID, description="A batch's id (32 hex digits).")
MAX_JOBS = 1000  # jobs per request, as POST /api/jobs/bulk
MAX_PAGE = 100_000
EXAMPLE = {
    "jobs": [
        {"jobType": "content-analysis", "data": {"content": "one", "type": "text"}},
        {"jobType": "content-analysis", "data": {"content": "two", "type": "text"}},
    ],
    "callbacks": {
        "success": {"jobType": "content-analysis", "data": {"content": "all analysed"}},
        "complete": {"url": "https://hooks.example.com/vq"},
    },
    "description": "analyse the uploads",
    "meta": {"upload": "u-42"},
}


def router(ctx: Context) -> APIRouter:
    routes = APIRouter()
    conn, settings, call, audited = ctx.conn, ctx.settings, ctx.call, ctx.audited

    def items_of(principal: Principal, body: dict[str, Any], user_id: str) -> list[tuple[str, Submission]]:
        items = body.get("jobs", [])
        if not isinstance(items, list):
            raise InvalidInput("jobs: expected a list of submissions", field="jobs")
        if len(items) > MAX_JOBS:
            raise InvalidInput(f"jobs: at most {MAX_JOBS} per request", field="jobs")
        built = []
        for index, item in enumerate(items):
            if isinstance(item, dict) and "userId" not in item:
                item = {**item, "userId": user_id}
            try:
                built.append((f"jobs[{index}]", ctx.own_submission(principal, item, None)))
            except VqError as exc:
                raise type(exc)(f"jobs[{index}]: {exc.message}", field=exc.field) from None
        return built

    def visible(principal: Principal, batch_id: str) -> None:
        owner = batches.owner(conn, batch_id)
        if owner is None or not (principal.is_operator or owner == principal.user_id):
            raise NotFound(f"no such batch {batch_id!r}")

    def create(principal: Principal, body: dict[str, Any]) -> dict:
        claimed = body.get("userId")
        if claimed is not None and not isinstance(claimed, str):
            raise InvalidInput("userId: expected text", field="userId")
        user_id = ctx.acting_for(principal, claimed, None, "create batches")
        unknown = sorted(set(body) - {"jobs", "callbacks", "description", "meta", "open", "userId"})
        if unknown:
            raise InvalidInput(f"{unknown[0]}: unknown field", field=unknown[0])
        callbacks = body.get("callbacks") or {}
        if not isinstance(callbacks, dict):
            raise InvalidInput("callbacks: expected an object of success, complete, death", field="callbacks")
        if not isinstance(body.get("open", False), bool):
            raise InvalidInput("open: expected true or false", field="open")
        new = batches.NewBatch(
            user_id=user_id,
            subscription=None if principal.is_operator else ctx.tier_of(principal),
            callbacks=callbacks,
            description=body.get("description"),
            meta=body.get("meta"),
            open=bool(body.get("open", False)),
        )
        return batches.create(conn, settings, new, items_of(principal, body, user_id))

    def add(principal: Principal, batch_id: str, body: dict[str, Any]) -> dict:
        visible(principal, batch_id)
        owner = batches.owner(conn, batch_id) or ""
        return batches.add(conn, settings, batch_id, items_of(principal, body, owner))

    def read(principal: Principal, batch_id: str) -> dict:
        visible(principal, batch_id)
        return batches.show(conn, batch_id)

    def close(principal: Principal, batch_id: str) -> dict:
        visible(principal, batch_id)
        return batches.close(conn, batch_id)

    def listing(principal: Principal, status: str | None, user_id: str | None, limit: int, page: int) -> dict:
        if not principal.is_operator:
            if user_id is not None and user_id != principal.user_id:
                raise Forbidden("userId: a user's token lists only its own batches", field="userId")
            user_id = principal.user_id
        return batch_lists.page_batches(conn, status=status, user=user_id, limit=limit, page=page)

    @routes.get(
        "/api/batches",
        tags=["batches"],
        summary="Batches, newest first, a page at a time (a user's token: its own)",
        response_model=schemas.BatchList,
    )
    async def list_batches(
        status: str | None = Query(
            None,
            pattern="^(" + "|".join(STATES) + ")$",
            description="open (takes jobs), closed (jobs still pending) or complete",
        ),
        userId: str | None = Query(None, max_length=128, description="only this user's (an operator's token)"),
        limit: int = Query(50, ge=1, le=1000),
        page: int = Query(1, ge=1, le=MAX_PAGE),
        principal: Principal = Depends(ctx.caller),
    ) -> dict:
        return await call(listing, principal, status, userId, limit, page)

    @routes.post(
        "/api/batches",
        status_code=201,
        tags=["batches"],
        summary="Create a batch of jobs with callbacks",
        response_model=schemas.Batch,
    )
    async def create_batch(
        body: dict[str, Any] = Body(..., examples=[EXAMPLE]), principal: Principal = Depends(ctx.caller)
    ) -> dict:
        view = await call(create, principal, body)
        await audited(principal, "batch-create", None, view["id"], jobs=view["counts"]["total"])
        return view

    @routes.get(
        "/api/batches/{batchId}", tags=["batches"], summary="A batch's progress and jobs", response_model=schemas.Batch
    )
    async def get_batch(batchId: str = BATCH_ID, principal: Principal = Depends(ctx.caller)) -> dict:
        return await call(read, principal, batchId)

    @routes.post(
        "/api/batches/{batchId}/jobs",
        tags=["batches"],
        summary="Add jobs to an open batch",
        response_model=schemas.Batch,
    )
    async def add_batch_jobs(
        batchId: str = BATCH_ID,
        body: dict[str, Any] = Body(..., examples=[{"jobs": EXAMPLE["jobs"]}]),
        principal: Principal = Depends(ctx.caller),
    ) -> dict:
        view = await call(add, principal, batchId, body)
        await audited(principal, "batch-add", None, view["id"])
        return view

    @routes.post(
        "/api/batches/{batchId}/close",
        tags=["batches"],
        summary="Close an open batch",
        response_model=schemas.Batch,
    )
    async def close_batch(batchId: str = BATCH_ID, principal: Principal = Depends(ctx.caller)) -> dict:
        view = await call(close, principal, batchId)
        await audited(principal, "batch-close", None, view["id"])
        return view

    return routes
