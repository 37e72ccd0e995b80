"""The dashboard's actions (operator role): pause, resume and clear a queue; retry, cancel
and remove a job; retry and purge the dead-letter queue. Each has a confirm page (GET) whose
form POSTs with the session's CSRF token; the POST calls the service function the CLI and
the HTTP API call, records an audit event naming the operator, and sends the browser back
with what happened."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse
from redis import Redis
from starlette.concurrency import run_in_threadpool

from vq import artifacts, audit, dlq, jobs, queues
from vq.config import Settings
from vq.errors import NotFound
from vq.jobtypes import get_job_type
from vq.recurring import definitions as recurring
from vq.recurring import firing
from vq.webui import reports, sessions, views
from vq.webui.auth import Gate
from vq.webui.pages import JOB_ID, TYPE_NAME
from vq.webui.render import page
from vq.webui.sessions import Session


@dataclass(frozen=True)
class Action:
    title: str  # the button: "Pause queue"
    explains: str  # what it does, on the confirm page ({target} is the queue or job)
    danger: bool = False


QUEUE_ACTIONS = {
    "pause": Action("Pause queue", "Jobs of {target} stop starting, on every host. Running jobs finish."),
    "resume": Action("Resume queue", "Jobs of {target} start again as workers and limits allow."),
    "clear": Action(
        "Clear queue",
        "Every waiting job of {target} (queued, limited, scheduled, deferred) is deleted. "
        "Running and ended jobs stay. This cannot be undone.",
        danger=True,
    ),
}
JOB_ACTIONS = {
    "retry": Action("Retry job", "Job {target} is queued again, with its attempts counted afresh."),
    "cancel": Action(
        "Cancel job", "Job {target} is canceled: at once if it waits, at its next progress report if it runs."
    ),
    "cancel-now": Action(
        "Cancel job now",
        "Job {target} is interrupted within a second on whatever host runs it (a waiting job is canceled at once).",
        danger=True,
    ),
    "remove": Action(
        "Remove job",
        "Job {target} is deleted, with its result and artifacts (a running job: cancel it first). "
        "This cannot be undone.",
        danger=True,
    ),
}
RECURRING_ACTIONS = {
    "run": Action("Run now", "Recurring job {target} submits one job now, as a tick would; its schedule is unchanged."),
    "pause": Action("Pause recurring job", "Recurring job {target} stops spawning jobs; running ones are not touched."),
    "resume": Action(
        "Resume recurring job",
        "Recurring job {target} spawns again from its next tick (paused ticks are not caught up).",
    ),
}
DLQ_ACTIONS = {
    "retry": Action("Retry dead letters", "Every dead job{target} is queued again."),
    "purge": Action("Purge dead letters", "Every dead job{target} is deleted. This cannot be undone.", danger=True),
}


def _queue(conn: Redis, settings: Settings, actor: Session, action: str, job_type: str) -> str:
    detail: dict[str, object]
    if action == "pause":
        queues.pause(conn, settings, job_type)
        said, detail = f"{job_type} paused", {}
    elif action == "resume":
        queues.resume(conn, settings, job_type)
        said, detail = f"{job_type} resumed", {}
    else:
        removed = queues.clear(conn, settings, job_type)["removed"]
        said, detail = f"{job_type}: {removed} waiting job(s) removed", {"removed": removed}
    audit.record(conn, actor.principal.user_id, actor.principal.role, action, job_type, "-", via="ui", **detail)
    return said


def _job(conn: Redis, settings: Settings, actor: Session, action: str, job_id: str) -> str:
    who = actor.principal.user_id
    detail: dict[str, object]
    if action == "retry":
        view = jobs.retry(conn, job_id, settings)
        said, detail = f"job {job_id} requeued ({view['status']})", {}
    elif action in ("cancel", "cancel-now"):
        why, now = f"canceled by {who}", action == "cancel-now"
        view = jobs.cancel(conn, job_id, why, settings, now=now, actor=who)
        said = f"job {job_id} canceled" if view["status"] == "canceled" else f"job {job_id}: cancellation requested"
        detail = {"reason": why, "now": now}
    else:
        view = jobs.remove(conn, job_id, artifacts.root(settings), settings)
        said, detail = f"job {job_id} removed", {}
    audited = "cancel" if action == "cancel-now" else action  # as the API records it: cancel, now=true
    audit.record(conn, who, actor.principal.role, audited, view["jobType"], job_id, via="ui", **detail)
    return said


def _dead(conn: Redis, settings: Settings, actor: Session, action: str, job_type: str | None) -> str:
    if job_type:
        get_job_type(settings, job_type)
    if action == "retry":
        count = len(dlq.retry_dead(conn, settings, None, job_type))
        said = f"{count} dead letter(s) requeued"
    else:
        count = dlq.purge(conn, settings, None, job_type)
        said = f"{count} dead letter(s) deleted"
    p = actor.principal
    audit.record(conn, p.user_id, p.role, f"dlq-{action}", job_type, "-", count=count, via="ui")
    return said


def _recurring(conn: Redis, settings: Settings, actor: Session, action: str, ref: str) -> str:
    definition = reports.visible_recurring(conn, actor.principal, ref)
    p, detail = actor.principal, {}
    if action == "run":
        job_id = firing.run_now(conn, settings, definition.id)
        said, detail = f"recurring job {definition.name or definition.id} ran: job {job_id}", {"jobId": job_id}
    elif action == "pause":
        recurring.pause(conn, definition.id)
        said = f"recurring job {definition.name or definition.id} paused"
    else:
        recurring.resume(conn, definition.id)
        said = f"recurring job {definition.name or definition.id} resumed"
    audit.record(conn, p.user_id, p.role, f"recurring-{action}", definition.jobType, definition.id, via="ui", **detail)
    return said


def _back(conn: Redis, session: Session, target: str, said: str) -> RedirectResponse:
    sessions.tell(conn, session, said)
    return RedirectResponse(target, status_code=303)


def router(gate: Gate, conn: Redis, settings: Settings) -> APIRouter:
    routes = APIRouter(include_in_schema=False)

    def confirm(request: Request, session: Session, action: Action, target: str, cancel_to: str, **hidden):
        return page(
            request,
            "confirm.html",
            session=session,
            action=action,
            explains=action.explains.format(target=target),
            cancel_to=cancel_to,
            hidden=hidden,
        )

    def known(table: dict[str, Action], name: str) -> Action:
        if name not in table:
            raise NotFound(f"no such action {name!r}")
        return table[name]

    @routes.get("/ui/queues/{jobType}/{action}")
    async def queue_confirm(
        request: Request, action: str, jobType: str = TYPE_NAME, session: Session = Depends(gate.operator)
    ):
        chosen = known(QUEUE_ACTIONS, action)
        await run_in_threadpool(get_job_type, settings, jobType)
        return confirm(request, session, chosen, f"queue {jobType}", f"/ui/queues/{jobType}")

    @routes.post("/ui/queues/{jobType}/{action}")
    async def queue_action(
        request: Request, action: str, jobType: str = TYPE_NAME, session: Session = Depends(gate.operator)
    ):
        known(QUEUE_ACTIONS, action)
        await gate.checked(request, session)
        said = await run_in_threadpool(_queue, conn, settings, session, action, jobType)
        return await run_in_threadpool(_back, conn, session, f"/ui/queues/{jobType}", said)

    @routes.get("/ui/jobs/{jobId}/{action}")
    async def job_confirm(
        request: Request, action: str, jobId: str = JOB_ID, session: Session = Depends(gate.operator)
    ):
        chosen = known(JOB_ACTIONS, action)
        view = await run_in_threadpool(views.visible_job, conn, settings, session.principal, jobId)
        return confirm(
            request, session, chosen, f"{view['id']} ({view['jobType']}, {view['status']})", f"/ui/jobs/{view['id']}"
        )

    @routes.post("/ui/jobs/{jobId}/{action}")
    async def job_action(request: Request, action: str, jobId: str = JOB_ID, session: Session = Depends(gate.operator)):
        known(JOB_ACTIONS, action)
        await gate.checked(request, session)
        view = await run_in_threadpool(views.visible_job, conn, settings, session.principal, jobId)
        said = await run_in_threadpool(_job, conn, settings, session, action, view["id"])
        return await run_in_threadpool(
            _back, conn, session, "/ui/jobs" if action == "remove" else f"/ui/jobs/{view['id']}", said
        )

    @routes.get("/ui/recurring/{ref}/{action}")
    async def recurring_confirm(
        request: Request, action: str, ref: str = Path(..., max_length=128), session: Session = Depends(gate.operator)
    ):
        chosen = known(RECURRING_ACTIONS, action)
        definition = await run_in_threadpool(reports.visible_recurring, conn, session.principal, ref)
        target = f"{definition.name or definition.id} ({definition.jobType}, {definition.cronExpression})"
        return confirm(request, session, chosen, target, "/ui/recurring")

    @routes.post("/ui/recurring/{ref}/{action}")
    async def recurring_action(
        request: Request, action: str, ref: str = Path(..., max_length=128), session: Session = Depends(gate.operator)
    ):
        known(RECURRING_ACTIONS, action)
        await gate.checked(request, session)
        said = await run_in_threadpool(_recurring, conn, settings, session, action, ref)
        return await run_in_threadpool(_back, conn, session, "/ui/recurring", said)

    @routes.get("/ui/dlq/{action}")
    async def dlq_confirm(request: Request, action: str, type: str = "", session: Session = Depends(gate.operator)):
        chosen = known(DLQ_ACTIONS, action)
        return confirm(request, session, chosen, f" of type {type}" if type else "", "/ui/dlq", type=type)

    @routes.post("/ui/dlq/{action}")
    async def dlq_action(request: Request, action: str, session: Session = Depends(gate.operator)):
        known(DLQ_ACTIONS, action)
        fields = await gate.checked(request, session)
        said = await run_in_threadpool(_dead, conn, settings, session, action, fields.get("type") or None)
        return await run_in_threadpool(_back, conn, session, "/ui/dlq", said)

    return routes
