"""The HTTP API (FastAPI): every endpoint of the spec under /api/jobs, JWT-protected.

An adapter only: each route checks who is calling, then calls the same service function
the CLI calls (submission, jobs, queues, recurring, history, stats, health). Errors are
`{"error": {"code", "message", "field"}}` with the status their `VqError` names.

The fixed routes (delayed, recurring, stats, user, queues, health, performance, types) are
declared before the `{jobType}` routes, and no job type may take one of their names
(config validation), so neither shadows the other.
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any

import redis
from fastapi import Body, Depends, FastAPI, Path, Query, Request, Security
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, PlainTextResponse
from fastapi.security import HTTPBearer
from redis import Redis
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import StreamingResponse

from vq import health as health_service
from vq import history as history_service
from vq import (artifacts, audit, costs, events, jobdata, jobs, keys, prometheus, provider_stats, queues, recurring, stats,
                workers)
from vq.api.auth import Forbidden, Principal, bearer_challenge, decode, verify_key
from vq.api.body_limit import BodyLimit
from vq.api import schemas
from vq.api.request_id import RequestId
from vq.api.schemas import ErrorBody
from vq.api.ratelimit import RateLimited, check_rate
from vq.config import Settings
from vq.connection import make_async_client, make_client
from vq.errors import Ambiguous, InvalidInput, NotFound, VqError
from vq.jobtypes import get_job_type, job_types
from vq.submission import Submission, submit, submit_each

JOB_ID = Path(..., pattern=r"^[A-Za-z0-9_-]{1,128}$",
              description="A job id (RQ's: letters, digits, _ and -), or a unique prefix of 8 or more characters.")
BEARER = HTTPBearer(auto_error=False, description="A JWT, e.g. from `vq token create` (documents the scheme; "
                                                  "the token is checked by vq.api.auth)")
SSE_BLOCK_MS = 15_000  # a keep-alive comment at least this often
MAX_BULK = 1000  # submissions per POST /api/jobs/bulk
TYPE_NAME = Path(..., pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="A job type, see GET /api/jobs/types.")


ERROR_RESPONSES = {status: {"model": ErrorBody, "description": text} for status, text in (
    (400, "Malformed request (the body is not JSON)"), (401, "Missing, malformed, expired or wrongly signed token"),
    (403, "The token's role or projects do not allow this"), (404, "No such job type, job or artifact"),
    (409, "The job is not in a state that allows this, or a job id prefix is ambiguous"), (413, "Request body too large (http.maxBodyBytes)"),
    (422, "A field is invalid; `field` names it"), (429, "Rate limited; see Retry-After"),
    (503, "Redis unreachable"))}


ERRORS_AS_JSON = {status: {"description": spec["description"], "content": {"application/json": {
    "schema": {"$ref": "#/components/schemas/ErrorBody"}}}} for status, spec in ERROR_RESPONSES.items()}
"""For routes whose success is not JSON (files, text, event streams): their errors still are."""

HTTP_CODES = {400: "malformed", 401: "unauthorized", 403: "forbidden", 404: "not_found", 405: "method_not_allowed",
              409: "conflict", 413: "too_large", 422: "invalid", 429: "rate_limited"}


class EventAudience:
    """Which job events a caller may see: their own jobs' (in their projects), or every
    event for an operator. Owners are read from the event, else the job, and remembered."""

    def __init__(self, conn: Redis, principal: Principal, remember: int = 10_000):
        self.conn = conn
        self.principal = principal
        self.owners: dict[str, tuple[str | None, str | None]] = {}
        self.remember = remember

    def may_see(self, event: dict) -> bool:
        if self.principal.is_operator:
            return True
        if event["jobId"] == "-" or event["event"] == "audit":
            return False
        owner = self.owners.get(event["jobId"])
        fields = event.get("fields") or {}
        if owner is None and fields.get("userId"):
            owner = (fields["userId"], fields.get("projectId"))
            if event["event"] != "created" and self.principal.projects is not None:
                owner = None  # the project is only on `created`: look at the job
        if owner is None:
            owner = jobs.owner(self.conn, event["jobId"]) or (None, None)
        if len(self.owners) >= self.remember:
            self.owners.clear()
        self.owners[event["jobId"]] = owner
        return self.principal.may_see(*owner)


def _error(status: int, code: str, message: str, field: str | None = None, headers: dict | None = None):
    return JSONResponse({"error": {"code": code, "message": message, "field": field}}, status_code=status,
                        headers=headers)


def _unparsed(cause: BaseException | None) -> str:
    """Why FastAPI could not parse a body (it says only "There was an error parsing the body")."""
    if isinstance(cause, RecursionError):
        return "body: JSON nested too deeply"
    if isinstance(cause, UnicodeDecodeError):
        return "body: not valid JSON (not UTF-8)"
    return f"body: could not be read ({type(cause).__name__ if cause else 'unknown error'})"


class StrictJSONResponse(JSONResponse):
    """Starlette's JSON, with a NaN or infinity (which a job stored before vq refused them
    may hold) written as null instead of failing the request with a 500."""

    def render(self, content) -> bytes:
        return jobdata.dumps_strict(content, ensure_ascii=False, indent=None, separators=(",", ":")).encode()


def create_app(settings: Settings, conn: Redis | None = None) -> FastAPI:
    conn = conn or make_client(settings)
    stream_conn = make_async_client(settings)  # event streams wait on Redis without holding a thread
    app = FastAPI(title="vq", version="1", summary="The job queue of the AI video-generation platform",
                  docs_url=None, redoc_url=None, openapi_url=None, responses=ERROR_RESPONSES,
                  default_response_class=StrictJSONResponse,
                  generate_unique_id_function=schemas.operation_id)

    @app.exception_handler(VqError)
    async def _vq_error(_request: Request, exc: VqError):
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, RateLimited) else None
        if exc.http_status == 401:
            headers = {"WWW-Authenticate": bearer_challenge(exc.message)}
        return _error(exc.http_status, exc.code, exc.message, exc.field, headers)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException):
        """Starlette's own refusals (a body that cannot be parsed, a wrong method, a body over
        the limit) in vq's error shape."""
        message = _unparsed(exc.__cause__) if exc.detail == "There was an error parsing the body" else \
            str(exc.detail)
        return _error(exc.status_code, HTTP_CODES.get(exc.status_code, "error"), message, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        if first.get("type") == "json_invalid":
            return _error(400, "malformed", f"body: not valid JSON ({first.get('ctx', {}).get('error', 'parse error')})")
        where = ".".join(str(p) for p in first.get("loc", ())[1:]) or "body"
        return _error(422, "invalid", f"{where}: {first.get('msg', 'invalid')}", where)

    @app.exception_handler(redis.ConnectionError)
    async def _redis_down(_request: Request, exc: Exception):
        return _error(503, "redis_unavailable", f"Redis unreachable: {str(exc).splitlines()[0] if str(exc) else exc}")

    app.add_middleware(BodyLimit, limit=settings.http.maxBodyBytes)
    app.add_middleware(RequestId)  # outermost: every answer has an id and an access line

    token_key = verify_key(settings)

    async def caller(request: Request, _bearer: object = Security(BEARER)) -> Principal:
        principal = decode(settings, request.headers.get("authorization"), token_key)
        if settings.http.rateLimit.requests > 0:
            await run_in_threadpool(check_rate, conn, settings, principal.user_id)
        return principal

    def operator(principal: Principal = Depends(caller)) -> Principal:
        if not principal.is_operator:
            raise Forbidden("this needs the operator role")
        return principal

    def call(function, *args, **kwargs):
        return run_in_threadpool(partial(function, *args, **kwargs))

    def audited(principal: Principal, action: str, job_type: str | None, target: str, **detail):
        """Record a write with the acting user (the archiver files it in audit_log)."""
        return call(audit.record, conn, principal.user_id, principal.role, action, job_type, target, **detail)

    def create(principal: Principal, body: dict, job_type: str | None, **detail) -> dict:
        """Submit, record who did, answer with the new job: one trip to the thread pool."""
        sub = own_submission(principal, body, job_type)
        job_id = submit(conn, settings, sub)
        audit.record(conn, principal.user_id, principal.role, "create", sub.job_type, job_id, **detail)
        return jobs.show(conn, job_id, settings, explain=False, reveal_to=principal.user_id)

    def visible_job(principal: Principal, job_type: str, job_id: str) -> dict:
        """The job, if it exists, is of this type and the caller may see it; else 404. `job_id`
        may be a unique prefix among the jobs the caller may see of this type (409 `ambiguous`
        names them); a trimmed job is answered from the history database."""
        view = jobs.show(conn, job_id, settings, reveal_to=principal.user_id,
                         visible=lambda c: c.job_type == job_type and principal.may_see(c.user_id, c.project_id))
        if view["jobType"] != job_type or not principal.may_see(view["userId"], view["projectId"]):
            raise NotFound(f"no such job {job_id!r}")
        return view

    def acting_for(principal: Principal, claimed: str | None, project: str | None, what: str) -> str:
        """The user a write is for. A user acts only as themselves and in their token's
        projects; an operator may act for anyone."""
        if not principal.is_operator:
            if claimed is not None and claimed != principal.user_id:
                raise Forbidden(f"userId: may only {what} as yourself", field="userId")
            if principal.projects is not None and project not in principal.projects:
                raise Forbidden("projectId: not one of your token's projects", field="projectId")
        return claimed or principal.user_id

    def tier_of(principal: Principal) -> str:
        """A user's tier comes from their token, else the server's config, never from a request body."""
        return principal.tier or settings.subscription_of(principal.user_id)

    def own_submission(principal: Principal, body: dict, job_type: str | None) -> Submission:
        """Build a submission for the caller (see `acting_for`), at their token's tier."""
        sub = Submission.from_mapping(body, job_type=job_type, privileged=principal.is_operator)
        data = sub.data if isinstance(sub.data, dict) else {}
        data_user = data.get("userId")
        claimed = sub.user_id or (str(data_user) if data_user is not None else None)
        sub.user_id = acting_for(principal, claimed, sub.project_id or data.get("projectId"), "submit jobs")
        if not principal.is_operator:
            sub.subscription = tier_of(principal)
            sub.allow_past = False
            whole = []
            for dependency in sub.depends_on:  # another user's job cannot feed yours its results
                try:  # a prefix names one of the caller's own jobs only
                    dependency = jobs.resolve(conn, dependency, settings,
                                              visible=lambda c: principal.may_see(c.user_id, c.project_id))
                except (NotFound, Ambiguous) as exc:
                    raise type(exc)(f"dependsOn: {exc.message}", field="dependsOn") from None
                found = jobs.owner(conn, dependency)
                if found is None or not principal.may_see(*found):
                    raise NotFound(f"dependsOn: no such job {dependency!r}", field="dependsOn")
                whole.append(dependency)
            sub.depends_on = whole
        return sub

    # --- liveness (no token) ---------------------------------------------------------
    @app.get("/livez", tags=["system"], summary="Liveness probe: the server answers")
    async def livez() -> dict:
        return {"status": "ok"}

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(_: Principal = Depends(caller)) -> dict:
        """The OpenAPI 3 document of this server (it needs a token, like every route)."""
        return app.openapi()

    # --- fixed routes first ----------------------------------------------------------
    @app.post("/api/jobs/delayed", status_code=201, tags=["jobs"], summary="Create a delayed job",
             response_model=schemas.Job, response_model_exclude_unset=True)
    async def create_delayed(body: dict[str, Any] = Body(..., examples=[{
            "jobType": "image-generation", "data": {"userId": "user-123", "prompt": "Generate an image of a sunset"},
            "delay": 300000}]), principal: Principal = Depends(caller)) -> dict:
        if "delay" not in body and "at" not in body:
            raise InvalidInput("delay: missing (milliseconds from now)", field="delay")
        return await call(create, principal, body, None, delayed=True)

    @app.post("/api/jobs/bulk", tags=["jobs"], summary="Create many jobs; an outcome per item",
             response_model=schemas.BulkOutcome, response_model_exclude_unset=True)
    async def create_bulk(body: dict[str, Any] = Body(..., examples=[{"jobs": [
            {"jobType": "content-analysis", "data": {"content": "one", "type": "text"}},
            {"jobType": "image-generation", "data": {"prompt": "a sunset"}, "delay": 60000}]}]),
            principal: Principal = Depends(caller)) -> dict:
        items = body.get("jobs")
        if not isinstance(items, list) or not items:
            raise InvalidInput("jobs: expected a non-empty list of submissions", field="jobs")
        if len(items) > MAX_BULK:
            raise InvalidInput(f"jobs: at most {MAX_BULK} per request", field="jobs")
        outcomes = await call(submit_each, conn, settings, items, lambda item: own_submission(principal, item, None))
        for outcome in outcomes:
            if outcome["ok"]:
                await audited(principal, "create", None, outcome["id"], bulk=True)
        return {"submitted": sum(1 for o in outcomes if o["ok"]), "rejected": sum(1 for o in outcomes if not o["ok"]),
                "results": outcomes}

    @app.get("/api/jobs/events", tags=["jobs"], summary="Live job events (Server-Sent Events)",
             response_class=StreamingResponse, responses=ERRORS_AS_JSON)
    async def job_events(request: Request, since: str | None = Query(None, pattern=r"^(\d+-\d+|\$)$",
                                                                     description="a stream id to resume after"),
                         principal: Principal = Depends(caller)):
        """The caller's job events as they happen (an operator's: everyone's). Resumes after
        `since` or the Last-Event-ID header; a comment line every 15 s keeps proxies open."""
        start = request.headers.get("last-event-id") or since or "$"
        if start != "$" and not events.is_stream_id(start):
            raise InvalidInput("Last-Event-ID: expected a stream id such as 1764403200000-0", field="since")
        if start == "$":  # pin "now" to an id, so no event between two reads is skipped
            newest = await call(conn.xrevrange, keys.EVENTS, count=1)
            start = newest[0][0].decode() if newest else "0-0"
        owners = EventAudience(conn, principal)

        async def stream():
            position = start
            while not await request.is_disconnected():
                batch = await events.read_async(stream_conn, position, 200, SSE_BLOCK_MS)
                if not batch:
                    yield ": keep-alive\n\n"
                    continue
                for event in batch:
                    position = event["id"]
                    if await call(owners.may_see, event):
                        yield f"id: {event['id']}\nevent: {event['event']}\ndata: {json.dumps(event)}\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})

    @app.post("/api/jobs/recurring", status_code=201, tags=["recurring"], summary="Create a recurring job",
             response_model=schemas.RecurringJob, response_model_exclude_unset=True)
    async def create_recurring(body: dict[str, Any] = Body(..., examples=[{
            "jobType": "content-analysis", "data": {"userId": "user-123", "content": "Analyze this content",
                                                    "type": "text"},
            "cronExpression": "0 0 * * *", "options": {"skipCache": True}}]),
            principal: Principal = Depends(caller)) -> dict:
        body = dict(body)
        data = body.get("data") if isinstance(body.get("data"), dict) else {}
        claimed = body.get("userId") or data.get("userId")
        user = acting_for(principal, claimed, body.get("projectId") or data.get("projectId"),
                          "create recurring jobs")
        if not principal.is_operator:
            body["userSubscription"] = tier_of(principal)
        if claimed is None:
            body["userId"] = user
        definition = await call(recurring.add_from_mapping, conn, settings, body, principal.is_operator)
        await audited(principal, "recurring-add", definition.jobType, definition.id, cron=definition.cronExpression)
        return await call(recurring.describe, conn, definition)

    @app.delete("/api/jobs/recurring/{recurringJobId}", tags=["recurring"], summary="Remove a recurring job")
    async def delete_recurring(recurringJobId: str = Path(..., max_length=128),  # noqa: N803 - the spec's name
                               principal: Principal = Depends(caller)) -> dict:
        definition = await call(recurring.get, conn, recurringJobId)
        if not principal.may_see(definition.userId, definition.projectId):
            raise NotFound(f"recurring job {recurringJobId!r} not found")
        removed = await call(recurring.remove, conn, definition.id)
        await audited(principal, "recurring-remove", removed.jobType, removed.id)
        return {"id": removed.id, "removed": True}

    @app.post("/api/jobs/recurring/{recurringJobId}/run", status_code=201, tags=["recurring"],
              summary="Run a recurring job now",
              response_model=schemas.Job, response_model_exclude_unset=True)
    async def run_recurring(recurringJobId: str = Path(..., max_length=128),  # noqa: N803 - the spec's name
                            principal: Principal = Depends(caller)) -> dict:
        """One job of the definition now, as a tick would submit it; its schedule is unchanged."""
        definition = await call(recurring.get, conn, recurringJobId)
        if not principal.may_see(definition.userId, definition.projectId):
            raise NotFound(f"recurring job {recurringJobId!r} not found")
        job_id = await call(recurring.run_now, conn, settings, definition.id)
        await audited(principal, "recurring-run", definition.jobType, definition.id, jobId=job_id)
        return await call(jobs.show, conn, job_id, settings, False)

    @app.get("/api/jobs/user/{userId}/history", tags=["history"], summary="A user's job history",
             response_model=schemas.UserHistory, response_model_exclude_unset=True)
    async def user_history(userId: str = Path(..., max_length=128),  # noqa: N803 - the spec's name
                           since: str | None = Query(None, description="7d, 12h or an ISO time"),
                           jobType: str | None = Query(None), status: str | None = Query(None),  # noqa: N803
                           limit: int = Query(50, ge=1, le=1000),
                           offset: int = Query(0, ge=0, le=history_service.MAX_OFFSET),
                           principal: Principal = Depends(caller)) -> dict:
        if userId != principal.user_id and not principal.is_operator:
            raise NotFound(f"no history for user {userId!r}")

        def read() -> list[dict]:
            db, _ = history_service.fresh(conn, settings, strict=True)
            rows = history_service.jobs(db, user=userId, since=since, job_type=jobType, status=status, limit=limit,
                                        offset=offset)
            if principal.projects is not None and not principal.is_operator:
                rows = [r for r in rows if r["project_id"] in principal.projects]
            return [history_service.camel_case(r) for r in rows]

        return {"userId": userId, "jobs": await run_in_threadpool(read)}

    @app.get("/api/jobs/stats", tags=["monitoring"], summary="Job statistics (operator)",
             response_model=schemas.JobStats, response_model_exclude_unset=True)
    async def job_stats(_: Principal = Depends(operator)) -> dict:
        return await call(stats.stats, conn, settings)

    @app.get("/api/jobs/queues/stats", tags=["monitoring"], summary="Queue statistics (operator)",
             response_model=list[schemas.QueueStats], response_model_exclude_unset=True)
    async def queue_stats(_: Principal = Depends(operator)) -> list:
        return await call(queues.counts, conn, settings)

    @app.get("/api/jobs/health", tags=["monitoring"], summary="Queue health",
             responses=schemas.HEALTH_RESPONSES)
    async def queue_health(_: Principal = Depends(caller)):
        report = await call(health_service.check, conn, settings)
        return JSONResponse(report, status_code=503 if report["status"] == "error" else 200)

    @app.get("/api/jobs/performance", tags=["monitoring"], summary="Performance metrics (operator)")
    async def performance(window: str = Query("1h", description="15m, 1h, 7d"),
                          _: Principal = Depends(operator)) -> dict:
        return await call(stats.perf, conn, settings, stats.perf_window_ms(window, "window"))

    @app.post("/api/jobs/queues/{jobType}/pause", tags=["queues"], summary="Pause a queue (operator)")
    async def pause(jobType: str = TYPE_NAME, principal: Principal = Depends(operator)) -> dict:  # noqa: N803
        result = await call(queues.pause, conn, settings, jobType)
        await audited(principal, "pause", jobType, "-")
        return result

    @app.post("/api/jobs/queues/{jobType}/resume", tags=["queues"], summary="Resume a queue (operator)")
    async def resume(jobType: str = TYPE_NAME, principal: Principal = Depends(operator)) -> dict:  # noqa: N803
        result = await call(queues.resume, conn, settings, jobType)
        await audited(principal, "resume", jobType, "-")
        return result

    @app.delete("/api/jobs/queues/{jobType}/clear", tags=["queues"], summary="Clear a queue's waiting jobs (operator)")
    async def clear(jobType: str = TYPE_NAME, principal: Principal = Depends(operator)) -> dict:  # noqa: N803
        result = await call(queues.clear, conn, settings, jobType)
        await audited(principal, "clear", jobType, "-")
        return result

    @app.get("/api/providers", tags=["monitoring"], summary="AI providers: breaker, limits in use, performance "
                                                           "(operator)")
    async def provider_overview(window: str = Query("15m", description="15m, 1h, 1d"),
                                _: Principal = Depends(operator)) -> list:
        from vq.durations import parse_duration_ms

        window_ms = parse_duration_ms(window, "window")
        if not 60_000 <= window_ms <= 2 * 86_400_000:
            raise InvalidInput("window: between 1m and 2d", field="window")
        return await call(provider_stats.overview, conn, settings, window_ms)

    @app.get("/api/workers", tags=["monitoring"], summary="Every worker process of every host (operator)")
    async def worker_listing(_: Principal = Depends(operator)) -> list:
        return await call(workers.listing, conn, settings.health.heartbeatAge)

    @app.get("/api/costs", tags=["monitoring"], summary="Provider costs per user, project or provider")
    async def cost_report(by: str = Query("user", description="user, project or provider"),
                          since: str = Query("30d", description="YYYY-MM-DD, today, or back from today: 7d"),
                          until: str = Query("today"), principal: Principal = Depends(caller)) -> dict:
        """An operator sees everything; anyone else only their own spend (by=user)."""
        if not principal.is_operator and by != "user":
            raise Forbidden("by: only by=user (your own spend) without the operator role")
        only = None if principal.is_operator else principal.user_id
        return await call(costs.query, conn, settings, by, since, until, only)

    @app.get("/api/jobs/types", tags=["system"], summary="The job types")
    async def types(_: Principal = Depends(caller)) -> list:
        return [{"name": jt.name, "description": jt.description, "timeoutMs": jt.timeout_ms, "attempts": jt.attempts}
                for jt in job_types(settings).values()]

    @app.get("/metrics", tags=["monitoring"], summary="Prometheus metrics (operator)",
             response_class=PlainTextResponse, responses=ERRORS_AS_JSON)
    async def metrics(_: Principal = Depends(operator)):
        text = await call(prometheus.exposition, conn, settings)
        return PlainTextResponse(text, media_type="text/plain; version=0.0.4")

    # --- job routes ------------------------------------------------------------------
    @app.post("/api/jobs/{jobType}", status_code=201, tags=["jobs"], summary="Create a job",
             response_model=schemas.Job, response_model_exclude_unset=True)
    async def create_job(jobType: str = TYPE_NAME, body: dict[str, Any] = Body(..., examples=[{  # noqa: N803
            "userId": "user-123", "projectId": "project-456", "prompt": "Create a video about AI technology",
            "options": {"quality": "high"}, "priority": "high"}]),
            principal: Principal = Depends(caller)) -> dict:
        get_job_type(settings, jobType)
        return await call(create, principal, body, jobType)

    @app.get("/api/jobs/{jobType}/{jobId}", tags=["jobs"], summary="Job details",
             response_model=schemas.Job, response_model_exclude_unset=True)
    async def job_details(jobType: str = TYPE_NAME, jobId: str = JOB_ID,  # noqa: N803
                          principal: Principal = Depends(caller)) -> dict:
        return await call(visible_job, principal, jobType, jobId)

    @app.get("/api/jobs/{jobType}/{jobId}/progress", tags=["jobs"], summary="Job progress",
             response_model=schemas.JobProgress, response_model_exclude_unset=True)
    async def job_progress(jobType: str = TYPE_NAME, jobId: str = JOB_ID,  # noqa: N803
                           principal: Principal = Depends(caller)) -> dict:
        view = await call(visible_job, principal, jobType, jobId)
        return {"id": view["id"], "status": view["status"], "progress": view["progress"], "trimmed": view["trimmed"]}

    @app.get("/api/jobs/{jobType}/{jobId}/result", tags=["jobs"], summary="Job result",
             response_model=schemas.JobResult, response_model_exclude_unset=True)
    async def job_result(jobType: str = TYPE_NAME, jobId: str = JOB_ID,  # noqa: N803
                         principal: Principal = Depends(caller)) -> dict:
        view = await call(visible_job, principal, jobType, jobId)
        return await call(jobs.result, conn, view["id"], settings)

    @app.get("/api/jobs/{jobType}/{jobId}/artifacts", tags=["jobs"], summary="The files a job produced")
    async def job_artifacts(jobType: str = TYPE_NAME, jobId: str = JOB_ID,  # noqa: N803
                            principal: Principal = Depends(caller)) -> dict:
        view = await call(visible_job, principal, jobType, jobId)
        files = await call(artifacts.listing, settings, view["id"])
        return {"id": view["id"], "artifacts": [{"name": f["name"], "bytes": f["bytes"]} for f in files]}

    @app.get("/api/jobs/{jobType}/{jobId}/artifacts/{name:path}", tags=["jobs"], summary="One artifact's bytes",
             response_class=FileResponse, responses=ERRORS_AS_JSON)
    async def job_artifact(jobType: str = TYPE_NAME, jobId: str = JOB_ID,  # noqa: N803
                           name: str = Path(..., max_length=512, description="a name from the artifacts list"),
                           principal: Principal = Depends(caller)):
        view = await call(visible_job, principal, jobType, jobId)
        return FileResponse(await call(artifacts.file, settings, view["id"], name))

    @app.delete("/api/jobs/{jobType}/{jobId}", tags=["jobs"], summary="Remove a job (cancel it first if running)")
    async def remove_job(jobType: str = TYPE_NAME, jobId: str = JOB_ID,  # noqa: N803
                         principal: Principal = Depends(caller)) -> dict:
        view = await call(visible_job, principal, jobType, jobId)
        removed = await call(jobs.remove, conn, view["id"], artifacts.root(settings), settings)
        await audited(principal, "remove", jobType, view["id"])
        return removed

    @app.post("/api/jobs/{jobType}/{jobId}/retry", tags=["jobs"], summary="Retry a failed job",
             response_model=schemas.Job, response_model_exclude_unset=True)
    async def retry_job(jobType: str = TYPE_NAME, jobId: str = JOB_ID,  # noqa: N803
                        principal: Principal = Depends(caller)) -> dict:
        view = await call(visible_job, principal, jobType, jobId)
        retried = await call(jobs.retry, conn, view["id"], settings)
        await audited(principal, "retry", jobType, view["id"])
        return retried

    return app
