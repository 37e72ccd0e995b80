"""The one JSON shape of a job, shared by `--json`, the HTTP API and the TUI.

Names follow the spec (camelCase). Statuses are RQ's own plus `limited` (waiting for a
concurrency slot); times are ISO 8601 UTC with milliseconds.
"""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from enum import Enum
from typing import overload

from rq.job import Job, JobStatus

from vq.protect import redact
from vq.rq_seam import private

VQ_FUNC = "vq.execution.run_job"


class Status(str, Enum):
    QUEUED = "queued"
    LIMITED = "limited"
    STARTED = "started"
    FINISHED = "finished"
    FAILED = "failed"
    DEFERRED = "deferred"
    SCHEDULED = "scheduled"
    CANCELED = "canceled"
    STOPPED = "stopped"


TERMINAL = {Status.FINISHED.value, Status.FAILED.value, Status.CANCELED.value, Status.STOPPED.value}


def as_utc(moment: datetime) -> datetime:
    """RQ's timestamps may come back naive; they are UTC."""
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def ms_between(start: datetime, end: datetime | None = None) -> int:
    """Milliseconds from `start` to `end` (default now), never negative."""
    finish = as_utc(end) if end else datetime.now(UTC)
    return max(0, int((finish - as_utc(start)).total_seconds() * 1000))


@overload
def iso(moment: datetime) -> str: ...
@overload
def iso(moment: None) -> None: ...
@overload
def iso(moment: datetime | None) -> str | None: ...
def iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return as_utc(moment).astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def status_of(job: Job, in_line: bool = False) -> str:
    """The job's status as vq shows it. A job in its user's line at admission keeps RQ's
    `queued` in its hash (routing it costs no write); `in_line` (vq.admission.in_line)
    says it is there, which makes it `limited`. An older vq stored that as `rate_limited`."""
    status = job.get_status(refresh=False)
    value = status.value if isinstance(status, JobStatus) else str(status or "")
    if value == "rate_limited" or (value == "queued" and in_line):
        return Status.LIMITED.value
    if value in ("created", "ready_to_enqueue"):
        return Status.QUEUED.value
    return value


def job_data(job: Job) -> dict:
    args = job.args or ()
    return args[1] if len(args) > 1 and isinstance(args[1], dict) else {}


def job_type_of(job: Job) -> str:
    """vq's job type: its meta's, else its queue's (a job plain RQ put there: vq/foreign.py),
    never its first argument, which only vq's own jobs give the type."""
    if job.meta.get("jobType"):
        return job.meta["jobType"]
    if job.origin:
        return job.origin.rpartition(".")[0] or job.origin
    return ""


def priority_of(job: Job) -> str | None:
    """The priority a job was submitted with: its queue's (jobs made before vq 0.2 also
    carried it in meta)."""
    return job.meta.get("priority") or (job.origin.rpartition(".")[2] if job.origin else None)


def error_of(job: Job, status: str) -> dict | None:
    if status == Status.CANCELED.value:
        if (job.meta.get("error") or {}).get("category") == "expired":  # its deadline passed (vq/deadlines.py)
            return dict(job.meta["error"])
        reason, actor = job.meta.get("cancelReason"), job.meta.get("canceledBy")
        if not reason:
            return None
        error = {"category": "canceled", "type": "Canceled", "message": reason}
        return {**error, "canceledBy": actor} if actor else error  # who: vq cancel, the API, the dashboard
    if status not in (Status.FAILED.value, Status.STOPPED.value) and not job.meta.get("error"):
        return None
    error = dict(job.meta.get("error") or {})
    if not error:
        result = job.latest_result()
        text = (result.exc_string or "") if result else ""
        last = text.strip().splitlines()[-1] if text.strip() else "failed"
        error = {"category": "temporary", "type": last.split(":", 1)[0], "message": last}
    return error


def result_of(job: Job):
    """A finished job's result. vq's worker keeps it in the job's own hash, in the field RQ
    restores into `job._result` (one key per job, which expires with it); a job that RQ's
    own code ended (a forked child's, a repeat) has it in RQ's result stream."""
    kept = private.result(job)
    if kept is not None:
        return kept
    return job.return_value()


def unique_of(meta: dict) -> dict | None:
    """A job's uniqueKey, its mode and scope, and how many submissions it took (debounce)."""
    unique = meta.get("unique")
    if not isinstance(unique, dict):
        return None
    out = {
        "key": unique.get("key"),
        "mode": unique.get("mode"),
        "scope": unique.get("scope"),
        "submissions": int(unique.get("submissions", 1)),
    }
    for name in ("forMs", "debounceMs", "debounceMaxMs"):
        if unique.get(name) is not None:
            out[name] = unique[name]
    if unique.get("firstMs"):
        out["firstSubmittedAt"] = iso(datetime.fromtimestamp(unique["firstMs"] / 1000, UTC))
    return out


def job_view(job: Job, *, with_result: bool = True, in_line: bool = False) -> dict:
    """The job as JSON. `with_result=False` skips the extra Redis read of the result;
    `in_line` as for `status_of`."""
    meta = job.meta
    status = status_of(job, in_line)
    progress = meta.get("progress") or {"percent": 0.0, "message": None}
    if status == Status.FINISHED.value:
        progress = {"percent": 100.0, "message": progress.get("message") if progress.get("percent") == 100 else "done"}
    result = None
    if with_result and status == Status.FINISHED.value:
        result = result_of(job)
    return {
        "id": job.id,
        "jobType": job_type_of(job),
        "status": status,
        "priority": priority_of(job),
        "userId": meta.get("userId"),
        "projectId": meta.get("projectId"),
        "subscription": meta.get("subscription"),
        "queue": job.origin,
        "data": redact(job_data(job)),  # encrypted fields stay hidden (vq/protect.py)
        "progress": progress,
        "result": result,
        "error": error_of(job, status),
        "attempts": int(meta.get("attempts", 0)),
        "maxAttempts": int(meta.get("maxAttempts", 1)),
        "createdAt": iso(job.created_at),
        "enqueuedAt": iso(job.enqueued_at),
        "startedAt": iso(job.started_at),
        "finishedAt": iso(job.ended_at) if status in TERMINAL else None,
        "scheduledFor": meta.get("scheduledFor"),
        "dependsOn": list(meta.get("dependsOn") or []),
        "allowFailure": bool(meta.get("allowFailure", False)),
        "parentId": meta.get("parentId"),
        "step": meta.get("step"),
        "children": list(meta.get("children") or []),
        "waitReason": None,  # for a limited job: "user limit 1/1", "type limit 2/2", "queue paused"...
        "position": None,  # for a limited job: its place in its user's line (1 = next)
        "usersAhead": None,  # for a limited job: users whose turn comes first
        "agedTo": None,  # the priority a long-waiting job was moved up to
        "cached": bool(meta.get("cached", False)),  # born finished with an identical job's result
        "cachedFrom": meta.get("cachedFrom"),
        "recurringId": meta.get("recurringId"),  # spawned by this recurring job
        "batchId": meta.get("batchId"),  # one of this batch's jobs (vq/batches.py)
        "tickAt": meta.get("tickAt"),  # for the tick that was due at this time
        "webhookUrl": meta.get("webhookUrl"),  # POSTed this job's JSON when it ends
        "provider": meta.get("provider"),  # the AI provider that answered its latest call
        "costMicros": int(meta.get("costMicros", 0)),  # what its provider calls cost, in millionths (vq/costs.py)
        "units": meta.get("units") or {},  # what those calls consumed: characters, images, tokens ...
        "unique": unique_of(meta),  # its uniqueKey and mode (vq/submission/unique.py), or None
        "trimmed": False,  # true: Redis no longer has the job; this is its history (history_view)
        **deadline_fields(meta.get("deadline"), status),
    }


def deadline_fields(deadline_ms: object, status: str) -> dict:
    """`deadline` (ISO) and, while the job has not started, `timeToDeadlineMs` (negative:
    past it; vq/deadlines.py)."""
    if not isinstance(deadline_ms, int) or isinstance(deadline_ms, bool):
        return {"deadline": None, "timeToDeadlineMs": None}
    waiting = status in ("queued", "limited", "scheduled", "deferred")
    return {
        "deadline": iso(datetime.fromtimestamp(deadline_ms / 1000, UTC)),
        "timeToDeadlineMs": deadline_ms - int(time.time() * 1000) if waiting else None,
    }


def history_view(
    row: dict,
    *,
    depends_on: list[tuple[str, bool]],
    children: list[str],
    max_attempts: int | None,
    cancel_reason: str | None = None,
) -> dict:
    """A job Redis no longer has, from its history database row (vq/trimmed.py), in the same
    shape as `job_view` with `"trimmed": true`. What the history does not keep is null: the
    job's data, its enqueue time, the scheduled time, a limited job's place in line."""
    status = row["status"]
    finished = status == Status.FINISHED.value
    error = None
    if status in (Status.FAILED.value, Status.STOPPED.value):
        error = {
            "category": row.get("error_category") or "temporary",
            "type": None,
            "message": row.get("error_message") or status,
        }
    elif status == Status.CANCELED.value and row.get("error_category") == "expired":
        error = {"category": "expired", "type": "Expired", "message": row.get("error_message") or "expired"}
    elif status == Status.CANCELED.value:
        error = {"category": "canceled", "type": "Canceled", "message": cancel_reason or "canceled"}
    result = None
    if finished and row.get("result") is not None:
        result = json.loads(row["result"])
    return {
        "id": row["id"],
        "jobType": row["job_type"],
        "status": status,
        "priority": row.get("priority"),
        "userId": row.get("user_id"),
        "projectId": row.get("project_id"),
        "subscription": row.get("subscription"),
        "queue": row.get("queue"),
        "data": None,
        "progress": {"percent": 100.0, "message": "done"} if finished else {"percent": 0.0, "message": None},
        "result": result,
        "error": error,
        "attempts": int(row.get("attempts") or 0),
        "maxAttempts": max_attempts or int(row.get("attempts") or 0),
        "createdAt": row.get("created_at"),
        "enqueuedAt": None,
        "startedAt": row.get("started_at"),
        "finishedAt": row.get("finished_at") if status in TERMINAL else None,
        "scheduledFor": None,
        "dependsOn": [job_id for job_id, _allow in depends_on],
        "allowFailure": any(allow for _job_id, allow in depends_on),
        "parentId": row.get("parent_id"),
        "step": row.get("step"),
        "children": list(children),
        "waitReason": None,
        "position": None,
        "usersAhead": None,
        "agedTo": None,
        "cached": bool(row.get("cached")),
        "cachedFrom": None,
        "recurringId": row.get("recurring_id"),
        "batchId": None,  # the history database does not keep it
        "tickAt": None,
        "webhookUrl": None,
        "provider": row.get("provider"),
        "costMicros": int(row.get("cost_micros") or 0),
        "units": {},
        "unique": None,  # not kept in the history
        "trimmed": True,
        "deadline": None,
        "timeToDeadlineMs": None,
    }
