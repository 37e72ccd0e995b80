"""The dashboard's actions (operator role): pause, resume and clear a queue; retry, cancel
and remove a job; retry and purge the dead-letter queue; run, pause, resume and remove a
recurring job; set and reset a limit. Each has a confirm page (GET) whose
form POSTs with the session's CSRF token; the POST calls the service function the CLI and
the HTTP API call, records an audit event naming the operator, and sends the browser back
with what happened."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import APIRouter, Depends, Path, Request
from fastapi.responses import RedirectResponse
from redis import Redis
from starlette.concurrency import run_in_threadpool

from vq import artifacts, audit, dlq, jobs, keys, queues
from vq import limits as limits_service
from vq.config import Settings
from vq.errors import InvalidInput, NotFound
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
    "remove": Action(
        "Remove recurring job",
        "Recurring job {target} is deleted with its run records; jobs it already spawned stay. This cannot be undone.",
        danger=True,
    ),
}
LIMIT_ACTIONS = {
    "set": Action("Change limit", "{target}. It wins over the config file on every host until reset."),
    "reset": Action("Reset limit", "{target}: the config file's value applies again, on every host."),
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
    elif action == "remove":
        recurring.remove(conn, definition.id)
        said = f"recurring job {definition.name or definition.id} removed"
    elif action == "pause":
        recurring.pause(conn, definition.id)
        said = f"recurring job {definition.name or definition.id} paused"
    else:
        recurring.resume(conn, definition.id)
        said = f"recurring job {definition.name or definition.id} resumed"
    audited = "rm" if action == "remove" else action  # as `vq recurring rm` records it
    audit.record(conn, p.user_id, p.role, f"recurring-{audited}", definition.jobType, definition.id, via="ui", **detail)
    return said


def _limit_change(fields: dict[str, str], reset: bool) -> tuple[str, str, str | None, int | str | None]:
    """(kind, name, key, value) from a limit form, refused as `vq limits set` refuses it."""
    kind, name = fields.get("kind", "").strip(), fields.get("name", "").strip()
    key = fields.get("key", "").strip() or None
    if kind not in keys.LIMIT_KINDS:
        raise InvalidInput(f"kind: {kind!r} is not one of {', '.join(keys.LIMIT_KINDS)}", field="kind")
    if not name:
        raise InvalidInput("name: missing (a job type, tier, user or group)", field="name")
    if reset:
        return kind, name, key, None
    raw = fields.get("value", "").strip()
    if kind in keys.RATE_KINDS:
        return kind, name, key, raw
    try:
        return kind, name, key, int(raw)
    except ValueError:
        raise InvalidInput(f"value: expected a whole number of at least 1, got {raw!r}", field="value") from None


def describe_limit(kind: str, name: str, key: str | None, value: int | str | None) -> str:
    noun = "weight" if kind in keys.WEIGHT_KINDS else "rate" if kind in keys.RATE_KINDS else "limit"
    what = f"{kind} {name}{f' {key}' if key else ''}"
    return f"{what}: {noun} {value}" if value is not None else what


def _limit(conn: Redis, settings: Settings, actor: Session, fields: dict[str, str], reset: bool) -> str:
    kind, name, key, value = _limit_change(fields, reset)
    result = limits_service.set_limit(conn, settings, kind, name, value, key)  # what `vq limits set|reset` calls
    p = actor.principal
    action = "limits-reset" if reset else "limits-set"
    detail = {"kind": kind, "value": value, **({"key": key} if key else {})}
    audit.record(conn, p.user_id, p.role, action, name, "-", via="ui", **detail)
    return describe_limit(kind, name, key, result.get("limit")) + (" (reset)" if reset else "")


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

    @routes.get("/ui/limits/{action}")
    async def limit_confirm(request: Request, action: str, session: Session = Depends(gate.operator)):
        chosen = known(LIMIT_ACTIONS, action)
        fields = {k: request.query_params.get(k, "")[:200] for k in ("kind", "name", "key", "value")}
        kind, name, key, value = _limit_change(fields, action == "reset")
        return confirm(request, session, chosen, describe_limit(kind, name, key, value), "/ui/limits", **fields)

    @routes.post("/ui/limits/{action}")
    async def limit_action(request: Request, action: str, session: Session = Depends(gate.operator)):
        known(LIMIT_ACTIONS, action)
        fields = await gate.checked(request, session)
        said = await run_in_threadpool(_limit, conn, settings, session, fields, action == "reset")
        return await run_in_threadpool(_back, conn, session, "/ui/limits", said)

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
