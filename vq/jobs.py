"""Service functions on single jobs: show, result, wait, retry, cancel, remove (lists of
jobs: vq/job_lists.py).

The CLI, the HTTP API and the TUI call these; none of them touches RQ or Redis keys
for a job directly.
"""

from __future__ import annotations

import functools
import json
import shutil
import time
from datetime import UTC, datetime
from pathlib import Path

from redis import Redis, WatchError
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from rq.registry import CanceledJobRegistry, FailedJobRegistry
from rq.serializers import JSONSerializer
from rq.utils import utcformat

from vq import (
    admission,
    batch_counts,
    cancel_now,
    checkpoints,
    events,
    job_admission,
    job_ids,
    job_lists,
    keys,
    limits,
    trimmed,
    wait_reasons,
)
from vq.config import Settings
from vq.errors import Conflict, InvalidInput, NotFound
from vq.job_ids import Visible
from vq.model import TERMINAL, iso, job_data, job_type_of, job_view, result_of, status_of
from vq.protect import protector
from vq.replies import texts
from vq.rq_seam import private
from vq.rq_seam.job import ReadableJob
from vq.rq_seam.queue import rq_queue

CANCEL_REQUEST_TTL = 24 * 3600


def fetch_job(conn: Redis, job_id: str, settings: Settings | None = None, visible: Visible | None = None) -> Job:
    """The job `job_id` names: its whole id (one read), else a unique prefix of 8 or more
    characters (vq/job_ids.py; with `settings`, the history database is asked first)."""
    found = find(conn, job_id, settings, visible, history=False)
    assert isinstance(found, Job)
    return found


def find(
    conn: Redis, job_id: str, settings: Settings | None = None, visible: Visible | None = None, history: bool = True
) -> Job | dict:
    """The job in Redis, or (with `history`) the JSON of one Redis no longer has, from the
    history database (vq/trimmed.py, `"trimmed": true`). NotFound, Ambiguous otherwise."""
    if not job_id or not isinstance(job_id, str):
        raise InvalidInput("job id: missing")
    job = _exact(conn, job_ids.check(job_id))
    if job is not None:
        return job
    match = job_ids.resolve_prefix(conn, settings, job_id, visible)
    if match.id != job_id:
        job = _exact(conn, match.id)
        if job is not None:
            return job
    if history:
        gone = trimmed.view(conn, settings, match.id)
        if gone is not None:
            return gone
    raise NotFound(
        f"no such job {job_id!r}"
        + (
            " in Redis (it was trimmed: `vq show` and `vq history` answer from the history database)"
            if match.in_history and not history
            else ""
        )
    )


def _exact(conn: Redis, job_id: str) -> Job | None:
    try:
        return ReadableJob.fetch(job_id, connection=conn, serializer=JSONSerializer)
    except NoSuchJobError:
        return None


def resolve(conn: Redis, job_id: str, settings: Settings | None = None, visible: Visible | None = None) -> str:
    """The whole id of the job `job_id` names (in Redis, or only in the history database)."""
    found = find(conn, job_id, settings, visible)
    return found.id if isinstance(found, Job) else found["id"]


def owner(conn: Redis, job_id: str) -> tuple[str | None, str | None] | None:
    """(userId, projectId) of a job in one read, or None when there is no such job."""
    raw = conn.hget(Job.key_for(job_id), "meta")
    if raw is None:
        return None
    meta = json.loads(raw)
    return meta.get("userId"), meta.get("projectId")


def show(
    conn: Redis,
    job_id: str,
    settings: Settings | None = None,
    explain: bool = True,
    reveal_to: str | None = None,
    visible: Visible | None = None,
) -> dict:
    """The job's JSON, with a planned parent's progress computed from its children, and for
    a job waiting for a slot (unless `explain` is off: it costs a dozen reads), why it waits
    and where it stands; its limit groups and resources (vq/job_admission.py). Its encrypted
    data fields are shown decrypted only when `reveal_to` names the job's owner (the API's
    caller), else as "[redacted]". A job Redis no longer has is answered from the history
    database, marked `"trimmed": true`."""
    job = find(conn, job_id, settings, visible)
    if isinstance(job, dict):
        return {**job, **job_admission.none(), **checkpoints.none()}
    view = job_view(job, in_line=bool(admission.in_line(conn, [job])))
    if view["status"] == "scheduled":
        view["scheduledFor"] = _due_at(conn, job) or view["scheduledFor"]
    view.update(job_admission.fields(conn, job.id, view["status"]))
    view.update(checkpoints.view(conn, job.id, job.meta))  # vq/checkpoints.py
    if explain and (
        view["status"] == "limited" or view["status"] == "queued" and conn.sismember(keys.PAUSED, view["jobType"])
    ):
        in_force = limits.effective(conn, settings)
        view.update(
            wait_reasons.wait_info(
                conn,
                job,
                limits.user_limit(conn, settings, view["userId"] or "_", in_force),
                limits.type_limit(conn, settings, view["jobType"], in_force),
                in_force["group"],
                limits.group_rates(conn, settings),
            )
        )
    if explain and settings is not None and view["status"] == "queued" and not view.get("waitReason"):
        view["waitReason"] = _unserved(conn, settings, view["jobType"])
    return finish_view(conn, job, view, settings, reveal_to)


def _due_at(conn: Redis, job: Job) -> str | None:
    """When a scheduled job is due: its scheduled registry's score. Only a delayed
    submission's meta says when (`scheduledFor`); a retry's back-off, a provider's "retry
    after" and a debounce leave it stale or unset, and `vq show` said nothing of when the
    next attempt would start."""
    score = conn.zscore(keys.rq_scheduled(job.origin), job.id)
    return iso(datetime.fromtimestamp(score, UTC)) if score is not None else None


def finish_view(conn: Redis, job: Job, view: dict, settings: Settings | None, reveal_to: str | None) -> dict:
    """What every job's view ends with (`show`, and the HTTP create's read-back in
    vq/created_view.py): its data decrypted for its owner, and a planned parent's progress
    from its steps."""
    if reveal_to is not None and reveal_to == view["userId"] and settings is not None:
        view["data"] = protector(settings).unseal(job_data(job), strict=False)
    if view["status"] not in TERMINAL and view["status"] != "started":
        view["progress"] = steps_progress(conn, job) or view["progress"]
    return view


def _unserved(conn: Redis, settings: Settings, job_type: str) -> str | None:
    """Why a queued job, free to start, has not: no live worker serves its type (no daemon
    runs, or none with its queues). `vq show` said nothing, as if it would start any moment;
    `vq health` already named it. None when a worker serves it."""
    from vq.workers import listing

    alive = [w for w in listing(conn, settings.health.heartbeatAge) if w["alive"]]
    if any(q.rpartition(".")[0] == job_type for w in alive for q in w["queues"]):
        return None
    return f"no live worker serves {job_type} (is a vq daemon running? `vq doctor` checks)"


def steps_progress(conn: Redis, job: Job) -> dict | None:
    """A planned parent's progress while its steps run: theirs together (95% once all are
    done; its own last part is the rest). None for a job with no steps."""
    children = job.meta.get("children") or []
    kids = [k for k in Job.fetch_many(children, connection=conn, serializer=JSONSerializer) if k]
    if not kids:
        return None
    done = sum(
        100.0 if status_of(k) == "finished" else (k.meta.get("progress") or {}).get("percent", 0.0) for k in kids
    )
    finished = sum(1 for k in kids if status_of(k) == "finished")
    return {"percent": round(done / len(children) * 0.95, 2), "message": f"{finished}/{len(children)} steps done"}


def result(conn: Redis, job_id: str, settings: Settings | None = None, visible: Visible | None = None) -> dict:
    """A finished job's result; a trimmed job's from the history database."""
    job = find(conn, job_id, settings, visible)
    if isinstance(job, dict):
        if job["status"] != "finished":
            raise Conflict(f"job {job['id']} is {job['status']}: it has no result")
        if job["result"] is None:
            raise NotFound(
                f"job {job['id']} was trimmed and the history database has no result for it (longer "
                "than history.maxResultBytes, or archived by a vq that kept none)"
            )
        return {"id": job["id"], "jobType": job["jobType"], "result": job["result"], "trimmed": True}
    status = status_of(job)
    if status != "finished":
        raise Conflict(f"job {job.id} is {status}: it has no result" + (" yet" if status not in TERMINAL else ""))
    return {"id": job.id, "jobType": job_type_of(job), "result": result_of(job), "trimmed": False}


def wait(
    conn: Redis, job_id: str, timeout: float | None = None, poll: float = 0.1, settings: Settings | None = None
) -> dict:
    """Block until the job ends (finished, failed, canceled, stopped); return its JSON (with
    `settings`, from the history database if it is trimmed before a look sees it end)."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        view = show(conn, job_id, settings)
        if view["status"] in TERMINAL:
            return view
        if deadline is not None and time.monotonic() >= deadline:
            return view
        time.sleep(poll)


def retry(conn: Redis, job_id: str, settings: Settings | None = None) -> dict:
    """Run a failed, stopped or canceled job again, with its attempts counted afresh."""
    job = fetch_job(conn, job_id, settings)
    status = status_of(job)
    if status not in ("failed", "stopped", "canceled"):
        raise Conflict(f"job {job.id} is {status}: only failed, stopped or canceled jobs can be retried")
    if job.meta.get("foreign"):
        raise Conflict(
            f"job {job.id} is not a vq job (plain RQ enqueued it) and cannot be retried: submit its work "
            "through vq.submission.submit or the HTTP API"
        )
    max_attempts = int(job.meta.get("maxAttempts", 1))
    job.meta.update(attempts=0, progress={"percent": 0.0, "message": None})
    job.meta.pop("error", None)
    job.meta.pop("cancelReason", None)
    job.meta.pop("canceledBy", None)
    job.meta.pop("deadline", None)  # an expired job retried runs: its deadline has passed (vq/deadlines.py)
    job.meta.pop("onDeadline", None)
    job.retries_left = max_attempts - 1 if max_attempts > 1 else None
    queue = rq_queue(conn, job.origin)
    registry_class = FailedJobRegistry if status in ("failed", "stopped") else CanceledJobRegistry
    with conn.pipeline() as pipe:
        while True:
            try:
                waits_for = _unfinished_dependencies(job, pipe)  # WATCHed: one that ends now retries this
                pipe.multi()
                registry_class(job.origin, connection=conn, serializer=JSONSerializer).remove(job, pipeline=pipe)
                pipe.delete(keys.cancel_request(job.id))
                pipe.hdel(job.key, keys.CANCEL_NOW_FIELD, keys.CANCELED_BY_FIELD)
                pipe.zrem(keys.DEADLINES, job.id)
                pipe.persist(job.key)  # only ended jobs expire (admission persists only jobs with RQ's `ttl`)
                if waits_for:
                    # Back to waiting on them, as at submit: the one that finishes enqueues it.
                    job.set_status(JobStatus.DEFERRED, pipeline=pipe)
                    job.register_dependency(pipeline=pipe)
                    job.save(pipeline=pipe)
                else:
                    job.save(pipeline=pipe)
                    private.enqueue_job(queue, job, pipeline=pipe)
                    admission.wake_in(pipe)
                # In the same step: a worker's `started` for the requeued job cannot come first.
                said = events.append(
                    pipe,
                    "retried",
                    job.id,
                    job_type_of(job),
                    previous=status,
                    status="deferred" if waits_for else "queued",
                )
                pipe.execute()
                break
            except WatchError:
                pipe.reset()
    events.say("retried", job.id, job_type_of(job), said)
    return show(conn, job.id)


def _unfinished_dependencies(job: Job, pipe) -> list[str]:
    """The ids of the dependencies a retried job must wait for (WATCHed on `pipe`). A job
    still in a dependency's set of dependents is enqueued by that dependency's end, so it
    must not also be put in line now (it would run twice). One that failed or was canceled
    (and the job does not accept that) refuses the retry: it would wait for ever."""
    ids = private.dependency_ids(job)
    if not ids:
        return []
    met = (JobStatus.FINISHED, JobStatus.FAILED) if job.allow_dependency_failures else (JobStatus.FINISHED,)
    waits_for = []
    for dependency in job.fetch_dependencies(watch=True, pipeline=pipe):
        dependency_status = dependency.get_status(refresh=False)
        if dependency_status in met:
            continue
        if dependency_status in (JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED):
            pipe.reset()
            raise Conflict(
                f"job {job.id} depends on {dependency.id}, which is {status_of(dependency)}: "
                f"retry {dependency.id} first, then this job"
            )
        waits_for.append(dependency.id)
    return waits_for


def cancel(
    conn: Redis,
    job_id: str,
    reason: str = "canceled by operator",
    settings: Settings | None = None,
    now: bool = False,
    actor: str | None = None,
) -> dict:
    """Cancel a job that has not ended. A running job stops at its next progress report, or
    with `now` is interrupted on whatever host runs it (vq/cancel_now.py); the answer then
    waits a moment for its end. A waiting job is canceled at once either way."""
    job = fetch_job(conn, job_id, settings)
    status = status_of(job)
    if status in TERMINAL:
        raise Conflict(f"job {job.id} is already {status}")
    if status == "started":
        _ask_running(conn, job, reason, now, actor)
        if now:
            cancel_now.settled(lambda: _exact(conn, job.id))
        return show(conn, job.id)
    _cancel_waiting(conn, job, reason, actor)
    cancel_dependents(conn, job, f"dependency {job.id} was canceled")
    cancel_children(conn, job, f"its parent {job.id} was canceled", now, actor)
    return show(conn, job.id)


def cancel_children(conn: Redis, job: Job, reason: str, now: bool = False, actor: str | None = None) -> list[str]:
    """Cancel the steps of a planned parent (video-generation's script, images, audio, scenes,
    composition) that have not ended. They exist only for the parent, which waits on them, so
    without this a canceled video's composition renders on and holds its type's one slot. A
    waiting step is canceled at once; a running one is asked as the parent's cancel was: to
    stop at its next progress report, or (`now`) interrupted, and the answer waits a moment
    for it to end."""
    children = [
        child
        for child in Job.fetch_many(job.meta.get("children") or [], connection=conn, serializer=JSONSerializer)
        if child is not None
    ]
    canceled, running = [], []
    for child in children:
        status = status_of(child)
        if status in TERMINAL:
            continue
        if status == "started":
            _ask_running(conn, child, reason, now, actor)
            running.append(child.id)
        else:
            _cancel_waiting(conn, child, reason, actor)
        canceled.append(child.id)
    if now:
        deadline = time.monotonic() + cancel_now.SETTLE_WAIT_S
        for child_id in running:
            cancel_now.settled(functools.partial(_exact, conn, child_id), max(0.0, deadline - time.monotonic()))
    return canceled


def _ask_running(conn: Redis, job: Job, reason: str, now: bool, actor: str | None) -> None:
    """Ask a running job to stop: at its next progress report, or interrupted (`now`)."""
    with conn.pipeline(transaction=True) as pipe:
        pipe.set(keys.cancel_request(job.id), reason, ex=CANCEL_REQUEST_TTL)
        cancel_now.ask_in(pipe, job.id, now, actor)
        pipe.execute()
    events.emit(conn, "cancel-requested", job.id, job_type_of(job), reason=reason, now=now, actor=actor)


def _cancel_waiting(conn: Redis, job: Job, reason: str, actor: str | None = None) -> None:
    job.meta["cancelReason"] = reason
    _keep_steps_progress(conn, job)
    if actor:
        job.meta["canceledBy"] = actor
    with conn.pipeline() as pipe:  # its meta, end time and status in one transaction
        _ended_now_in(pipe, job)
        job.cancel(pipeline=pipe)
        pipe.execute()
    admission.forget(conn, job)
    if checkpoints.has_checkpoint(job):  # it ran before and saved one (vq/checkpoints.py)
        conn.delete(keys.checkpoint(job.id))
    events.emit(
        conn, "canceled", job.id, job_type_of(job), reason=reason, actor=actor, webhookUrl=job.meta.get("webhookUrl")
    )
    batch_counts.job_ended(conn, job)


def _keep_steps_progress(conn: Redis, job: Job) -> None:
    """A planned parent canceled while its steps ran keeps the progress they made (shown
    until then from its steps, not its own meta): 16 of 17 steps done is not 0%."""
    if job.meta.get("children"):
        job.meta["progress"] = steps_progress(conn, job) or job.meta.get("progress")


def _ended_now_in(pipe, job: Job) -> None:
    """Write the job's meta and its end time: RQ's Job.cancel sets no `ended_at`, and
    without it a canceled job shows no `finishedAt`."""
    job.ended_at = datetime.now(UTC)
    pipe.hset(job.key, mapping={"meta": private.serialize_meta(job), "ended_at": utcformat(job.ended_at)})


def expire_waiting(conn: Redis, job: Job, reason: str) -> bool:
    """Cancel a waiting job whose deadline passed, as category `expired` (vq/deadlines.py),
    and its dependents by the failure rules. Only if it is still waiting: the status is
    watched, so a job admission starts meanwhile is left to run (False)."""
    job.meta["cancelReason"] = reason
    job.meta["error"] = {"category": "expired", "type": "Expired", "message": reason}
    _keep_steps_progress(conn, job)
    with conn.pipeline() as pipe:
        try:
            pipe.watch(job.key)
            if pipe.hget(job.key, "status") not in (b"queued", b"deferred", b"scheduled"):
                return False
            pipe.multi()
            _ended_now_in(pipe, job)
            job.cancel(pipeline=pipe)
            checkpoints.forget_in(pipe, job.id)
            events.emit(
                pipe,
                "canceled",
                job.id,
                job_type_of(job),
                reason=reason,
                category="expired",
                error=reason,
                userId=job.meta.get("userId"),
                subscription=job.meta.get("subscription"),
                webhookUrl=job.meta.get("webhookUrl"),
            )
            pipe.execute()
        except WatchError:
            return False
    admission.forget(conn, job)
    batch_counts.job_ended(conn, job)
    cancel_dependents(conn, job, f"dependency {job.id} expired")
    return True


def cancel_dependents(conn: Redis, job: Job, reason: str) -> list[str]:
    """Cancel the jobs waiting on `job` (and theirs), unless they accept a failed dependency."""
    canceled: list[str] = []
    pending = [job]
    while pending:
        current = pending.pop()
        ids = texts(conn.smembers(current.dependents_key))
        for dependent in Job.fetch_many(ids, connection=conn, serializer=JSONSerializer):
            if dependent is None or dependent.get_status(refresh=False) != JobStatus.DEFERRED:
                continue
            if dependent.allow_dependency_failures:
                rq_queue(conn, dependent.origin).enqueue_dependents(current)
                admission.wake(conn)
                continue
            _cancel_waiting(conn, dependent, reason)
            canceled.append(dependent.id)
            pending.append(dependent)
    return canceled


def remove(conn: Redis, job_id: str, artifacts_root: Path | None = None, settings: Settings | None = None) -> dict:
    """Delete a job that is not running, with its result and artifacts."""
    job = fetch_job(conn, job_id, settings)
    status = status_of(job)
    if status == "started":
        raise Conflict(f"job {job.id} is running: cancel it first")
    view = job_view(job, with_result=False, in_line=bool(admission.in_line(conn, [job])))
    if status not in TERMINAL:
        cancel_dependents(conn, job, f"dependency {job.id} was removed")
        cancel_children(conn, job, f"its parent {job.id} was removed")
    admission.forget(conn, job)  # before the delete: the hash names the job's limit groups
    job.delete(remove_from_queue=True)
    job_lists.forget(conn, [job.id], keys.user_jobs(view["userId"] or ""), keys.type_jobs(view["jobType"]))
    conn.delete(
        keys.cancel_request(job.id),
        keys.dependents(job.id),
        keys.checkpoint(job.id),
        keys.job_log(job.id),  # its own log goes with it (the archiver forgets it: vq/job_log_store.py)
        keys.job_log_meta(job.id),
    )
    if artifacts_root is not None:
        shutil.rmtree(artifacts_root / job.id, ignore_errors=True)
    events.emit(conn, "removed", job.id, view["jobType"])
    batch_counts.job_ended(conn, job)  # a removed job counts as canceled, if it had not ended
    return view


def tree(conn: Redis, job_id: str, settings: Settings | None = None) -> dict:
    """The job and, nested, the jobs it depends on, each with its status; a job Redis no
    longer has comes from the history database (`"trimmed": true`), else is `missing`."""
    seen: set[str] = set()
    root = find(conn, job_id, settings)
    with trimmed.Lookup(conn, settings) as lookup:

        def node(found: Job | dict | None, jid: str) -> dict:
            if found is None:
                found = _exact(conn, jid) or lookup.view(jid)
            if found is None:
                return {
                    "id": jid,
                    "jobType": None,
                    "status": "missing",
                    "step": None,
                    "dependsOn": [],
                    "trimmed": False,
                }
            if isinstance(found, dict):
                item = {
                    "id": found["id"],
                    "jobType": found["jobType"],
                    "status": found["status"],
                    "step": found["step"],
                    "progress": found["progress"]["percent"],
                    "dependsOn": [],
                    "trimmed": True,
                }
                upstream = found["dependsOn"]
            else:
                item = {
                    "id": found.id,
                    "jobType": job_type_of(found),
                    "status": status_of(found, bool(admission.in_line(conn, [found]))),
                    "step": found.meta.get("step"),
                    "progress": (found.meta.get("progress") or {}).get("percent", 0.0),
                    "dependsOn": [],
                    "trimmed": False,
                }
                upstream = found.meta.get("dependsOn") or []
            if item["id"] in seen:
                item["repeated"] = True
                return item
            seen.add(item["id"])
            item["dependsOn"] = [node(None, d) for d in upstream]
            return item

        return node(root, job_id)
