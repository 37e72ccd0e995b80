"""What keeps the dashboard's pages live: a Server-Sent Events stream over vq's event stream
(the one GET /api/jobs/events serves), authenticated by the session cookie, since a
browser's EventSource cannot send a bearer token. It sends a `change` event when something
a page shows may have changed; static/vq.js then has htmx fetch that page's live fragment
again (at most a few times a second). A page also polls its fragment slowly, so it stays
right if the stream drops.

`/ui/events` (operators): every event, for the queues overview. `/ui/events?job=ID`: the
events of that job, which the viewer must be allowed to see, for its page. However busy the
queues, a stream sends at most four changes a second (the latest one stands for those it
coalesced). The session is checked again every 15 s; once it has ended, the stream closes.

The overview's sparklines and rates come from the metric buckets, which the archiver fills a
moment after the events (vq/history/archiver.py, after its SQLite write). So the overview's
stream, once it has sent a change, watches the archiver's counted position and sends one
change more when it has passed that event (`counted`), waiting at most FOLLOW_S: the counts
move at once and the sparklines follow as soon as they can, not at the next 10 s poll.
"""

from __future__ import annotations

import json
import time

from fastapi import APIRouter, Depends, Query, Request
from redis import Redis
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse

from vq import events, keys
from vq.config import Settings
from vq.errors import VqError
from vq.history import metric_counts
from vq.replies import text
from vq.tokens import Forbidden
from vq.webui import sessions, views
from vq.webui.auth import Gate
from vq.webui.pages import JOB_ID_PATTERN
from vq.webui.sessions import Session

BLOCK_MS = 15_000  # a keep-alive comment at least this often
CHECK_EVERY_S = 15.0  # the session checked again this often
MIN_GAP_S = 0.25  # changes sent at most this often: a busy queue's events are coalesced
FOLLOW_S = 10.0  # the overview waits this long at most for the archiver to count the events it sent
FOLLOW_MS = 200  # and checks its position this often meanwhile (one GET)


def _id(stream_id: str) -> tuple[int, int]:
    ms, _, seq = stream_id.partition("-")
    return int(ms), int(seq or 0)


def _newest_id(conn: Redis) -> str:
    """The events stream's last id: the stream starts after it, so no event between the page
    and its stream is missed, and none before is sent."""
    newest = conn.xrevrange(keys.EVENTS, count=1)
    return text(newest[0][0] or "0-0") if newest else "0-0"


def router(gate: Gate, conn: Redis, settings: Settings, stream_conn) -> APIRouter:
    routes = APIRouter(include_in_schema=False)

    @routes.get("/ui/events")
    async def live(
        request: Request,
        job: str | None = Query(None, pattern=JOB_ID_PATTERN),
        session: Session = Depends(gate.viewer),
    ):
        if job is None and not session.principal.is_operator:
            raise Forbidden("this needs the operator role")
        if job is not None:
            job = (await run_in_threadpool(views.visible_job, conn, settings, session.principal, job))["id"]
        start = await run_in_threadpool(_newest_id, conn)  # pinned: no event between two reads is skipped

        async def stream():
            position, pending, sent, checked = start, None, 0.0, time.monotonic()
            follow: tuple[tuple[int, int], float] | None = None  # (an event sent, until when) for the overview
            yield "retry: 2000\n\n"
            while not await request.is_disconnected():
                due = sent + MIN_GAP_S - time.monotonic()  # a change held back: read until it is due
                wait_ms = BLOCK_MS if pending is None else max(1, int(due * 1000))
                if follow is not None:
                    wait_ms = min(wait_ms, FOLLOW_MS)
                batch = await events.read_async(stream_conn, position, 500, wait_ms)
                if time.monotonic() - checked >= CHECK_EVERY_S:
                    try:
                        await run_in_threadpool(sessions.current, conn, request, False)
                    except VqError:
                        yield "event: ended\ndata: {}\n\n"
                        return
                    checked = time.monotonic()
                if batch:
                    position = batch[-1]["id"]
                    pending = next((e for e in reversed(batch) if job is None or e["jobId"] == job), pending)
                if follow is not None and pending is None:
                    counted = await run_in_threadpool(metric_counts.counted_id, conn)
                    if _id(counted) >= follow[0]:
                        pending, follow = {"event": "counted", "jobId": "", "id": counted}, None
                    elif time.monotonic() > follow[1]:
                        follow = None  # no archiver running, or far behind: the 10 s poll shows it later
                if pending is not None and time.monotonic() - sent >= MIN_GAP_S:
                    said = {"event": pending["event"], "jobId": pending["jobId"]}
                    yield f"event: change\ndata: {json.dumps(said)}\n\n"
                    if job is None and pending["event"] != "counted":
                        follow = (_id(pending["id"]), time.monotonic() + FOLLOW_S)
                    pending, sent = None, time.monotonic()
                elif not batch and pending is None and follow is None:
                    yield ": keep-alive\n\n"

        return StreamingResponse(
            stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        )

    return routes
