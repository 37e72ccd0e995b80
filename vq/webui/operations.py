"""The dashboard's pages beyond queues and jobs (GET): workers per host, providers, limits,
recurring jobs, a user, history search and the audit trail."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request
from redis import Redis
from starlette.concurrency import run_in_threadpool

from vq.config import Settings
from vq.jobtypes import job_types
from vq.keys import LIMIT_KINDS
from vq.webui import reports, views
from vq.webui.auth import Gate
from vq.webui.render import page
from vq.webui.sessions import Session


def router(gate: Gate, conn: Redis, settings: Settings) -> APIRouter:
    routes = APIRouter(include_in_schema=False)

    def call(function, *args, **kwargs):
        return run_in_threadpool(function, conn, settings, *args, **kwargs)

    @routes.get("/ui/workers")
    async def workers(request: Request, session: Session = Depends(gate.operator)):
        return page(request, "workers.html", session=session, data=await call(reports.workers_view))

    @routes.get("/ui/providers")
    async def providers(request: Request, session: Session = Depends(gate.operator)):
        return page(request, "providers.html", session=session, rows=await call(reports.providers_view))

    @routes.get("/ui/limits")
    async def limits(request: Request, session: Session = Depends(gate.operator)):
        data = await call(reports.limits_view)
        return page(request, "limits.html", session=session, data=data, kinds=LIMIT_KINDS)

    @routes.get("/ui/recurring")
    async def recurring(request: Request, session: Session = Depends(gate.viewer)):
        rows = await call(reports.recurring_view, session.principal)
        return page(request, "recurring.html", session=session, rows=rows)

    @routes.get("/ui/users/{userId}")
    async def user(request: Request, userId: str = Path(..., max_length=128), session: Session = Depends(gate.viewer)):
        data = await call(reports.user_page, session.principal, userId)
        return page(request, "user.html", session=session, data=data)

    @routes.get("/ui/history")
    async def history(
        request: Request,
        job_type: str = Query("", alias="type", max_length=64),
        status: str = Query("", max_length=20),
        since: str = Query("", max_length=40),
        where: str = Query("", max_length=500),
        page_number: int = Query(1, alias="page", ge=1, le=10_000),
        session: Session = Depends(gate.viewer),
    ):
        terms = [t for t in where.split() if t]
        data = await call(reports.history_view, session.principal, job_type, status, since, terms, page_number)
        return page(
            request,
            "history.html",
            session=session,
            data=data,
            form={"type": job_type, "status": status, "since": since, "where": where},
            types=list(job_types(settings)),
            statuses=views.STATUSES,
        )

    @routes.get("/ui/audit")
    async def audit(
        request: Request,
        actor: str = Query("", max_length=128),
        action: str = Query("", max_length=64),
        since: str = Query("", max_length=40),
        session: Session = Depends(gate.operator),
    ):
        data = await call(reports.audit_view, actor, action, since)
        return page(
            request, "audit.html", session=session, data=data, form={"actor": actor, "action": action, "since": since}
        )

    return routes
