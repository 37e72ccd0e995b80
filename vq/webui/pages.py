"""The dashboard's pages (GET): the queues overview, lists of jobs, a job, its artifacts and
the dead-letter queue, plus the fragments htmx polls to keep them live. Stable links:
/ui/jobs/<id> for a job, /ui/queues/<type> for a queue."""

from __future__ import annotations

import mimetypes
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Path, Query, Request
from fastapi.responses import FileResponse, RedirectResponse
from redis import Redis
from starlette.concurrency import run_in_threadpool

from vq.config import Settings
from vq.errors import InvalidInput
from vq.webui import views
from vq.webui.auth import Gate
from vq.webui.render import page
from vq.webui.sessions import Session

JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
JOB_ID = Path(..., pattern=JOB_ID_PATTERN)
TYPE_NAME = Path(..., pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
ARTIFACT_HEADERS = {
    # an artifact is whatever a handler wrote: never run as a page of this origin
    "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "private, max-age=300",
}
SHOWN_INLINE = ("image/", "audio/", "video/", "text/plain", "application/json")


PAGE_NUMBER = Query(1, alias="page", ge=1, le=100_000)


def list_filters(
    status: str = Query("", max_length=20),
    user: str = Query("", max_length=200),
    since: str = Query("", max_length=20),
    where: str = Query("", max_length=500),
) -> dict:
    """The job lists' filters (a queue's and every type's), declared once."""
    return {"status": status, "user": user, "since": since, "where": where}


def router(gate: Gate, conn: Redis, settings: Settings) -> APIRouter:
    routes = APIRouter(include_in_schema=False)

    def call(function, *args, **kwargs):
        return run_in_threadpool(function, conn, settings, *args, **kwargs)

    @routes.get("/ui")
    async def home(request: Request, session: Session = Depends(gate.viewer)):
        if not session.principal.is_operator:
            return RedirectResponse("/ui/jobs", status_code=303)
        data = await call(views.overview)
        return page(request, "overview.html", session=session, data=data)

    @routes.get("/ui/fragments/overview")
    async def overview_fragment(request: Request, session: Session = Depends(gate.operator)):
        data = await call(views.overview)
        return page(request, "overview_live.html", session=session, data=data)

    async def listing_page(request: Request, session: Session, job_type: str | None, filters: dict, page_number: int):
        """A list of jobs (a queue's, or every type's): a filter that is refused (an unknown
        status, a data field the history does not index) shows its reason above an empty list."""
        row = await call(views.queue_row, job_type) if job_type else None
        terms = [t for t in filters["where"].split() if t]
        error, code = None, 200
        try:
            listing = await call(
                views.job_list,
                session.principal,
                job_type,
                filters["status"] or None,
                filters["user"] or None,
                page_number,
                filters["since"] or None,
                terms,
            )
        except InvalidInput as exc:
            listing, error, code = views.empty_list(page_number), exc.message, exc.http_status
        return page(
            request,
            "jobs.html",
            code=code,
            session=session,
            listing=listing,
            queue=row,
            job_type=job_type,
            error=error,
            indexed=settings.history.indexedFields,
            query=urlencode({k: v for k, v in filters.items() if v}),
            statuses=views.STATUSES,
            **filters,
        )

    @routes.get("/ui/queues/{jobType}")
    async def queue(
        request: Request,
        jobType: str = TYPE_NAME,
        filters: dict = Depends(list_filters),
        page_number: int = PAGE_NUMBER,
        session: Session = Depends(gate.operator),
    ):
        return await listing_page(request, session, jobType, filters, page_number)

    @routes.get("/ui/jobs")
    async def job_listing(
        request: Request,
        filters: dict = Depends(list_filters),
        page_number: int = PAGE_NUMBER,
        session: Session = Depends(gate.viewer),
    ):
        return await listing_page(request, session, None, filters, page_number)

    @routes.get("/ui/jobs/{jobId}")
    async def job(request: Request, jobId: str = JOB_ID, session: Session = Depends(gate.viewer)):
        view = await call(views.job_page, session.principal, jobId)
        if view["id"] != jobId:  # a prefix: the stable link is the whole id
            return RedirectResponse(f"/ui/jobs/{view['id']}", status_code=303)
        return page(request, "job.html", session=session, job=view)

    @routes.get("/ui/fragments/jobs/{jobId}")
    async def job_fragment(
        request: Request,
        jobId: str = JOB_ID,
        shown: str = Query("", max_length=20),
        session: Session = Depends(gate.viewer),
    ):
        """The job's status and progress bar, polled by its page while it runs; once the status
        differs from the one the page shows, htmx reloads the whole page (result, artifacts)."""
        view = await call(views.visible_job, session.principal, jobId)
        headers = {"HX-Refresh": "true"} if shown and view["status"] != shown else None
        return page(request, "job_live.html", session=session, job=view, headers=headers)

    @routes.get("/ui/jobs/{jobId}/artifacts/{name:path}")
    async def artifact(
        request: Request,
        jobId: str = JOB_ID,
        name: str = Path(..., max_length=512),
        session: Session = Depends(gate.viewer),
    ):
        path = await call(views.artifact, session.principal, jobId, name)
        kind = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
        if not kind.startswith(SHOWN_INLINE):
            kind = "application/octet-stream"  # html, svg, scripts: downloaded, never rendered here
        if kind == "text/plain" or path.suffix.lower() in (".edl", ".srt", ".vtt", ".log", ".md", ".yaml", ".yml"):
            kind = "text/plain; charset=utf-8"
        return FileResponse(path, media_type=kind, headers=ARTIFACT_HEADERS)

    @routes.get("/ui/dlq")
    async def dead_letters(
        request: Request,
        job_type: str | None = Query(None, alias="type", max_length=64),
        session: Session = Depends(gate.operator),
    ):
        rows = await call(views.dead_letters, job_type)
        return page(
            request,
            "dlq.html",
            session=session,
            rows=rows,
            job_type=job_type or "",
        )

    return routes
