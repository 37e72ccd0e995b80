"""The live job-event stream (Server-Sent Events), filtered to what the caller may see."""

from __future__ import annotations

import json

from fastapi import APIRouter, Depends, Query, Request
from redis import Redis
from starlette.responses import StreamingResponse

from vq import events, jobs, keys
from vq.api.context import Context
from vq.api.errors import ERRORS_AS_JSON
from vq.errors import InvalidInput
from vq.tokens import Principal

SSE_BLOCK_MS = 15_000  # a keep-alive comment at least this often


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


def router(ctx: Context) -> APIRouter:
    routes = APIRouter()
    conn, call = ctx.conn, ctx.call

    @routes.get(
        "/api/jobs/events",
        tags=["jobs"],
        summary="Live job events (Server-Sent Events)",
        response_class=StreamingResponse,
        responses=ERRORS_AS_JSON,
    )
    async def job_events(
        request: Request,
        since: str | None = Query(None, pattern=r"^(\d+-\d+|\$)$", description="a stream id to resume after"),
        principal: Principal = Depends(ctx.caller),
    ):
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
                batch = await events.read_async(ctx.stream_conn, position, 200, SSE_BLOCK_MS)
                if not batch:
                    yield ": keep-alive\n\n"
                    continue
                for event in batch:
                    position = event["id"]
                    if await call(owners.may_see, event):
                        yield f"id: {event['id']}\nevent: {event['event']}\ndata: {json.dumps(event)}\n\n"

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    return routes
