"""The HTTP API's response shapes as named OpenAPI schemas, and its operationIds.

Documentation and typed clients only: every model allows extra fields and the routes
serialize with `exclude_unset`, so the JSON an endpoint returns is exactly the dict its
service function built (nothing dropped, no null added). Field names are the API's
camelCase; a field that may be missing or null is optional.
"""

from __future__ import annotations

from typing import Any

from fastapi.routing import APIRoute
from pydantic import BaseModel, ConfigDict, Field


class Open(BaseModel):
    """A response model that keeps whatever else the service put in the dict."""

    model_config = ConfigDict(extra="allow")


class ErrorDetail(BaseModel):
    code: str = Field(
        description="malformed, invalid, unauthorized, forbidden, not_found, conflict, ambiguous "
        "(a job id prefix several jobs start with: the message names them), too_large, "
        "rate_limited, redis_unavailable"
    )
    message: str = Field(description="one line naming what is wrong")
    field: str | None = Field(None, description="the request field at fault, when there is one")


class ErrorBody(BaseModel):
    error: ErrorDetail


class Progress(Open):
    percent: float = Field(description="0-100")
    message: str | None = None


class JobError(Open):
    category: str | None = Field(None, description="temporary, permanent, timeout, canceled ...")
    type: str | None = None
    message: str | None = None
    canceledBy: str | None = Field(
        None, description="a canceled job: who canceled it (a user id, cli:LOGIN, tui:LOGIN)"
    )


class JobUnique(Open):
    """A job's uniqueKey (README: Unique jobs)."""

    key: str | None = None
    mode: str | None = Field(None, description="simple, throttle or debounce")
    scope: str | None = Field(None, description="user (the key is the user's own) or global")
    submissions: int | None = Field(None, description="how many submissions it took (debounce: each replaced the data)")
    forMs: int | None = Field(None, description="throttle: the window")
    debounceMs: int | None = None
    debounceMaxMs: int | None = None
    firstSubmittedAt: str | None = None


class Job(Open):
    """A job as `vq show --json` prints it."""

    id: str
    jobType: str
    status: str = Field(
        description="queued, limited, scheduled, deferred, started, finished, failed, stopped, canceled ..."
    )
    priority: str | None = None
    userId: str | None = None
    projectId: str | None = None
    subscription: str | None = None
    queue: str | None = None
    data: Any = Field(None, description="the submitted data; encrypted fields as \"[redacted]\" to others")
    progress: Progress | None = None
    result: Any = None
    error: JobError | None = None
    attempts: int | None = None
    maxAttempts: int | None = None
    createdAt: str | None = None
    enqueuedAt: str | None = None
    startedAt: str | None = None
    finishedAt: str | None = None
    scheduledFor: str | None = None
    dependsOn: list[str] | None = None
    allowFailure: bool | None = None
    parentId: str | None = None
    step: Any = None
    children: list[str] | None = None
    waitReason: str | None = None
    position: int | None = None
    usersAhead: int | None = None
    agedTo: str | None = None
    cached: bool | None = None
    cachedFrom: str | None = None
    recurringId: str | None = None
    batchId: str | None = None
    tickAt: str | None = None
    webhookUrl: str | None = None
    provider: str | None = None
    costMicros: int | None = None
    units: dict[str, Any] | None = None
    unique: JobUnique | None = Field(None, description="its uniqueKey and the mode that applied, or null")
    deduplicated: bool | None = Field(
        None,
        description="in a create's answer with a uniqueKey: true when an existing job was returned (HTTP 200), "
        "false when this one was created (201)",
    )
    uniqueOutcome: str | None = Field(
        None, description="in a create's answer with a uniqueKey: created, existing or debounced"
    )
    trimmed: bool = Field(False, description="true: Redis no longer has the job; this is its history")
    deadline: str | None = Field(None, description="not started by then: expired (category expired), not run")
    timeToDeadlineMs: int | None = Field(None, description="while it waits: ms left until its deadline")
    groups: dict[str, str] | None = Field(None, description="its limit groups' keys, {group: key}")
    resources: dict[str, float] | None = Field(None, description="what it needs of a worker, e.g. {gpu: 1}")
    resourcesHeld: dict[str, Any] | None = Field(
        None, description="while it runs: what it holds, gpu as device indices, e.g. {gpu: [1], vram: 24}"
    )
    checkpoint: JobCheckpoint | None = Field(None, description="the checkpoint kept for its next attempt, if any")
    resumed: JobResumed | None = Field(None, description="the attempt that started from a checkpoint, if one did")


class JobCheckpoint(Open):
    bytes: int = Field(description="its size (compact JSON)")
    at: str | None = Field(None, description="when it was saved")
    attempt: int | None = Field(None, description="the attempt that saved it")


class JobResumed(Open):
    attempt: int | None = Field(None, description="the attempt that resumed")
    checkpointAt: str | None = Field(None, description="when the checkpoint it resumed from was saved")


class JobProgress(Open):
    id: str
    status: str
    progress: Progress | None = None
    trimmed: bool = False


class JobLogLine(Open):
    """A line the job's handler logged, or (only `dropped`) how many lines were dropped
    there (limits.maxLogLines, limits.maxLogBytes: the first and the last are kept)."""

    seq: int | None = Field(None, description="its number in the job's log, from 1")
    time: float | None = Field(None, description="when it was logged, epoch seconds")
    level: str | None = Field(None, description="DEBUG, INFO, WARNING, ERROR or CRITICAL")
    message: str | None = Field(None, description="the message as logged (at most 4096 characters, then cut)")
    attempt: int | None = Field(None, description="the attempt that logged it")
    dropped: int | None = Field(None, description="lines dropped here (only this field is set)")


class JobLog(Open):
    id: str
    status: str
    ended: bool = Field(description="the job has ended: no more lines will come")
    lines: list[JobLogLine]


class JobResult(Open):
    id: str
    jobType: str
    result: Any = None
    trimmed: bool = False


class QueueStats(Open):
    """One job type's queue: how many jobs are in each state, and whether it is paused."""

    jobType: str
    paused: bool
    limit: int | None = Field(None, description="concurrency limit in force, null: none")
    queued: int = 0
    limited: int = 0
    started: int = 0
    running: int = 0
    deferred: int = 0
    scheduled: int = 0
    failed: int = 0
    finished: int = 0
    canceled: int = 0
    cacheHits: int = 0
    cacheMisses: int = 0


class HistoryRow(Open):
    """A job as the history database keeps it (the snake_case twins are deprecated)."""

    id: str
    jobType: str | None = None
    userId: str | None = None
    projectId: str | None = None
    priority: str | None = None
    subscription: str | None = None
    queue: str | None = None
    status: str | None = None
    createdAt: str | None = None
    startedAt: str | None = None
    finishedAt: str | None = None
    updatedAt: str | None = None
    attempts: int | None = None
    waitMs: int | None = None
    runMs: int | None = None
    errorCategory: str | None = None
    errorMessage: str | None = None
    parentId: str | None = None
    step: Any = None
    recurringId: str | None = None
    cached: bool | None = None
    worker: str | None = None
    provider: str | None = None
    costMicros: int | None = None
    result: Any = None


class UserHistory(Open):
    userId: str
    jobs: list[HistoryRow]


class HistorySearch(Open):
    jobs: list[HistoryRow]


class Health(Open):
    status: str = Field(description="ok, warning or error (503)")


class JobStats(Open):
    """Totals by type and status, per-user figures, priorities, hourly and daily trends."""


class BulkOutcome(Open):
    """How many were submitted and rejected, and one outcome per item, in order."""

    submitted: int
    rejected: int
    results: list[dict[str, Any]]


class BatchCounts(BaseModel):
    """A batch's jobs by how they ended; pending: not ended yet."""

    total: int
    done: int
    failed: int
    canceled: int
    pending: int


class BatchSummary(Open):
    """A batch as `vq batch list --json` lists it: its state, counts and callbacks."""

    id: str
    userId: str
    description: str | None = None
    meta: dict[str, Any] = Field(default_factory=dict)
    state: str = Field(description="open (takes jobs), closed (jobs still pending) or complete")
    createdAt: int = Field(description="epoch ms")
    closedAt: int | None = Field(None, description="epoch ms; null while open")
    completedAt: int | None = Field(None, description="epoch ms; null until complete")
    open: bool = Field(description="jobs may be added; on success and on complete wait until it is closed")
    complete: bool = Field(description="closed and every job ended")
    counts: BatchCounts
    callbacks: dict[str, dict[str, Any]] = Field(default_factory=dict)


class Batch(BatchSummary):
    """A batch as `vq batch show --json` prints it: its state, counts, callbacks and jobs."""

    jobs: list[dict[str, Any]] = Field(
        default_factory=list, description='each {"id", "jobType", "outcome", "status"}; status only while pending'
    )


class BatchList(BaseModel):
    """A page of batches, newest first: `offset` + 1 to `offset` + len(batches) of `total`."""

    batches: list[BatchSummary]
    total: int
    offset: int
    page: int
    limit: int


class RecurringJob(Open):
    """A recurring job's definition and its next run."""

    id: str
    jobType: str | None = None
    cronExpression: str | None = None


HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {"model": Health},
    503: {"model": Health, "description": "A check failed"},
}


OPERATION_IDS = {
    "livez": "livez",
    "create_delayed": "createDelayedJob",
    "create_bulk": "createJobsBulk",
    "job_events": "streamJobEvents",
    "create_recurring": "createRecurringJob",
    "delete_recurring": "deleteRecurringJob",
    "user_history": "listUserHistory",
    "job_stats": "getJobStats",
    "queue_stats": "listQueueStats",
    "queue_health": "getHealth",
    "performance": "getPerformance",
    "pause": "pauseQueue",
    "resume": "resumeQueue",
    "clear": "clearQueue",
    "provider_overview": "listProviders",
    "worker_listing": "listWorkers",
    "cost_report": "getCosts",
    "types": "listJobTypes",
    "metrics": "getMetrics",
    "create_job": "createJob",
    "job_details": "getJob",
    "job_progress": "getJobProgress",
    "job_result": "getJobResult",
    "job_artifacts": "listJobArtifacts",
    "job_artifact": "getJobArtifact",
    "remove_job": "removeJob",
    "retry_job": "retryJob",
    "cancel_job": "cancelJob",
}


def operation_id(route: APIRoute) -> str:
    """A stable camelCase operationId: the table's, else the handler's name in camelCase."""
    if route.name in OPERATION_IDS:
        return OPERATION_IDS[route.name]
    head, *rest = route.name.split("_")
    return head + "".join(part.title() for part in rest)
