"""The job history over HTTP (a user's, and a search), read from the history database (vq/history/queries.py)."""

from __future__ import annotations

from typing import NamedTuple

from fastapi import APIRouter, Depends, Path, Query
from starlette.concurrency import run_in_threadpool

from vq.api import schemas
from vq.api.context import Context
from vq.errors import NotFound
from vq.history import queries as history_service
from vq.history import search
from vq.tokens import Principal


class Filters(NamedTuple):
    since: str | None
    job_type: str | None
    status: str | None
    where: list[str]
    limit: int
    offset: int


WHERE = (
    "FIELD OP VALUE, repeatable (all must match): status=failed, data.projectId=p1 (a field of "
    "history.indexedFields; any other data field is refused with 422); OP one of = != > >= < <= ~ (starts with)"
)


def history_filters(
    since: str | None = Query(None, description="7d, 12h or an ISO time"),
    jobType: str | None = Query(None),
    status: str | None = Query(None),
    where: list[str] = Query([], max_length=20, description=WHERE),
    limit: int = Query(50, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=history_service.MAX_OFFSET),
) -> Filters:
    """The query parameters both history routes take, declared once."""
    return Filters(since, jobType, status, where, limit, offset)


def router(ctx: Context) -> APIRouter:
    routes = APIRouter()
    conn, settings = ctx.conn, ctx.settings

    def read(principal: Principal, user: str | None, q: Filters) -> list[dict]:
        """The history rows the filters select, as this caller may see them (vq/history/search.py)."""
        indexed = settings.history.indexedFields
        search.clauses(q.where, indexed)  # a bad term: 422 before the catch-up
        db, _ = history_service.fresh(conn, settings, strict=True)
        match = history_service.JobFilter(
            user=user, since=q.since, job_type=q.job_type, status=q.status, where=q.where, indexed=indexed
        )
        rows = history_service.jobs(db, match, limit=q.limit, offset=q.offset)
        if principal.projects is not None and not principal.is_operator:
            rows = [r for r in rows if r["project_id"] in principal.projects]
        return [history_service.camel_case(r) for r in rows]

    @routes.get(
        "/api/jobs/user/{userId}/history",
        tags=["history"],
        summary="A user's job history",
        response_model=schemas.UserHistory,
        response_model_exclude_unset=True,
    )
    async def user_history(
        userId: str = Path(..., max_length=128),
        q: Filters = Depends(history_filters),
        principal: Principal = Depends(ctx.caller),
    ) -> dict:
        if userId != principal.user_id and not principal.is_operator:
            raise NotFound(f"no history for user {userId!r}")
        return {"userId": userId, "jobs": await run_in_threadpool(read, principal, userId, q)}

    @routes.get(
        "/api/jobs/history",
        tags=["history"],
        summary="Search the job history (an operator: everyone's jobs; a user: their own)",
        response_model=schemas.HistorySearch,
        response_model_exclude_unset=True,
    )
    async def search_history(
        q: Filters = Depends(history_filters),
        principal: Principal = Depends(ctx.caller),
    ) -> dict:
        user = None if principal.is_operator else principal.user_id
        return {"jobs": await run_in_threadpool(read, principal, user, q)}

    return routes
