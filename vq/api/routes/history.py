"""A user's job history over HTTP, read from the history database (vq/history/queries.py)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query
from starlette.concurrency import run_in_threadpool

from vq.api import schemas
from vq.api.context import Context
from vq.errors import NotFound
from vq.history import queries as history_service
from vq.history import search
from vq.tokens import Principal


def router(ctx: Context) -> APIRouter:
    routes = APIRouter()
    conn, settings = ctx.conn, ctx.settings

    @routes.get(
        "/api/jobs/user/{userId}/history",
        tags=["history"],
        summary="A user's job history",
        response_model=schemas.UserHistory,
        response_model_exclude_unset=True,
    )
    async def user_history(
        userId: str = Path(..., max_length=128),
        since: str | None = Query(None, description="7d, 12h or an ISO time"),
        jobType: str | None = Query(None),
        status: str | None = Query(None),
        where: list[str] = Query(
            [],
            max_length=20,
            description="FIELD OP VALUE, repeatable (all must match): status=failed, data.projectId=p1 "
            "(a field of history.indexedFields; any other data field is refused with 422); OP one of "
            "= != > >= < <= ~ (starts with)",
        ),
        limit: int = Query(50, ge=1, le=1000),
        offset: int = Query(0, ge=0, le=history_service.MAX_OFFSET),
        principal: Principal = Depends(ctx.caller),
    ) -> dict:
        if userId != principal.user_id and not principal.is_operator:
            raise NotFound(f"no history for user {userId!r}")

        indexed = settings.history.indexedFields
        search.clauses(where, indexed)  # a bad term: 422 before waiting for the archiver

        def read() -> list[dict]:
            db, _ = history_service.fresh(conn, settings, strict=True)
            rows = history_service.jobs(
                db,
                user=userId,
                since=since,
                job_type=jobType,
                status=status,
                where=where,
                indexed=indexed,
                limit=limit,
                offset=offset,
            )
            if principal.projects is not None and not principal.is_operator:
                rows = [r for r in rows if r["project_id"] in principal.projects]
            return [history_service.camel_case(r) for r in rows]

        return {"userId": userId, "jobs": await run_in_threadpool(read)}

    return routes
