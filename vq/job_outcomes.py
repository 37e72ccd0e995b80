"""How a job's attempt ends, beyond RQ's own bookkeeping: vq's error categories (a
provider's "retry after", a cancel, a permanent error), a requeue at shutdown, the
`finished`/`failed`/`retrying` events, dependents of a failed job, slots given back, and
a success's end written in one round trip with the admission and start of the worker's
next job (vq/lua/admit_end.lua, the end's shape vq/job_end.py).

The seam's `VqWorker.handle_job_failure` and `handle_job_success` (vq/rq_seam/worker.py)
call these around RQ's own handlers.
"""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta

from rq.defaults import DEFAULT_WORKER_TTL
from rq.job import Job, JobStatus
from rq.rate_limit import release_slot
from rq.registry import CanceledJobRegistry
from rq.utils import utcformat
from rq.worker import WorkerStatus

from vq import batch_counts, cache, checkpoints, events, fence, keys
from vq.admission import Start, release_in
from vq.execution import runtime
from vq.job_end import JobEnd
from vq.jobs import cancel_dependents
from vq.model import ms_between
from vq.recurring.runs import record_outcome_in
from vq.replies import optional_text
from vq.rq_seam import private
from vq.rq_seam.host import WorkerHost
from vq.rq_seam.job import format_rq_date
from vq.rq_seam.queue import admission_for, admission_order
from vq.worker_starts import STARTED_BY_ADMISSION


class JobOutcomes(WorkerHost):
    """VqWorker's handling of a job's end (a mixin: RQ calls none of these)."""

    _requeue_current = False  # the job running now goes back in line (the grace period is over)

    def _ended_by_vq(self, job: Job, queue, execution) -> bool:
        """A failure vq ends its own way instead of RQ's: requeued at shutdown, delayed for
        a rate limit (not charged), canceled. Else False, and a permanent error or one over
        the job's resource limits is not retried."""
        if self._canceled_now(job):  # interrupted, or ended otherwise meanwhile (a timeout, a killed child)
            job.meta["error"] = {"category": "canceled", "type": "JobCanceled", "message": "canceled while running"}
            self._requeue_current = False
        if self._requeue_current:
            self._requeue(job, queue, execution)
            self._release(job)
            return True
        error = job.meta.get("error") or {}
        category = error.get("category", "temporary")
        if category in ("rate_limit", "breaker_open", "budget") and not private.stopped_job_id(self):
            self._delay_for_rate_limit(job, queue, execution, error)
            self._release(job)
            return True
        if category == "canceled":
            self._finish_canceled(job, execution)
            self._release(job)
            return True
        if category in ("permanent", "resource"):  # a job over its limits would only do it again
            job.retries_left = 0
        return False

    def _failed(self, job: Job, error: dict, will_retry: bool, exc_string: str) -> None:
        """After RQ wrote the failure (or the retry): the event, the dependents of a job
        that will not run again, and its slots back. `error` is the job's as it failed."""
        category = error.get("category", "temporary")
        job_type = job.meta.get("jobType")
        if will_retry:
            status = job.get_status(refresh=False)
            events.emit(
                self.connection,
                "retrying",
                job.id,
                job_type,
                attempt=job.meta.get("attempts"),
                category=category,
                error=error.get("message"),
                retriesLeft=job.retries_left,
                status=status.value if status else None,
                durationMs=_took_ms(job),
                worker=self.name,
                userId=job.meta.get("userId"),
            )
        else:
            with self.connection.pipeline(transaction=False) as pipe:
                events.emit(
                    pipe,
                    "failed",
                    job.id,
                    job_type,
                    attempt=job.meta.get("attempts"),
                    category=category,
                    error=error.get("message") or _last_line(exc_string),
                    durationMs=_took_ms(job),
                    worker=self.name,
                    userId=job.meta.get("userId"),
                    webhookUrl=job.meta.get("webhookUrl"),
                )
                record_outcome_in(pipe, job)
                checkpoints.forget_in(pipe, job.id)
                batch_counts.ended_in(pipe, job)
                pipe.execute()
            if not job.allow_dependency_failures:
                cancel_dependents(self.connection, job, f"dependency {job.id} failed")
        self._release(job)

    def _finish_in_one_trip(self, job: Job, queue, execution, result_ttl) -> None:
        """The job's end (vq/lua/admit_end.lua: its fields and result, registries, the
        `finished` event), its slots back and, unless this worker is stopping, the
        admission and start of its next job: one script, one round trip. RQ writes the
        end in a transaction of its own after WATCHing the job's dependents; here the
        script reads whether the job has any, and only then are they moved, after it. A
        dependent added meanwhile is either in that set or, added later, sees its
        dependency finished and is enqueued by RQ."""
        self.increment_successful_job_count()
        ended = _ended_at(job)
        self.increment_total_working_time(ended - (job.started_at or ended), None)
        admission = admission_for(self.connection)
        take_another = self._will_take_another()
        execution_id = uuid.uuid4().hex
        give_back = (job.id, job.meta.get("jobType", ""), job.meta.get("userId", "_"))
        finish, said = _finish_payload(job, result_ttl, self.name)
        asked_at = time.monotonic()  # the next job's lease is granted after this
        with self.connection.pipeline(transaction=False) as pipe:
            admission.admit_in(
                pipe,
                admission_order(private.ordered_queues(self)) if take_another else [],
                start=Start(self.name, execution_id, DEFAULT_WORKER_TTL, busy=self._written_state == WorkerStatus.BUSY)
                if take_another
                else None,
                give_back=give_back,
                finish=finish,
            )
            if not getattr(job, STARTED_BY_ADMISSION, False):  # RQ wrote its execution records
                self.cleanup_execution(job, pipeline=pipe, execution=execution)
            elif execution is not None:  # the script ends its records; RQ's in-memory one goes here
                self.executions.pop(execution.id, None)  # else `self.execution` names this job ever after
            _remember_success_in(pipe, job)
            batch_counts.ended_in(pipe, job)  # after the end: the script reads the status it wrote
            if not take_another:
                self.set_state(WorkerStatus.IDLE, pipeline=pipe)
            replies = pipe.execute(raise_on_error=False)
        has_dependents, admitted, stale = admission.parse_admitted(replies[0], give_back, finish)
        problems = [r for r in replies[1:] if isinstance(r, Exception)]
        if stale:
            fence.refused(job.id, "success: result discarded")
        else:
            events.say("finished", job.id, job.meta.get("jobType"), said)
            if checkpoints.has_checkpoint(job):  # ended for good: its checkpoint goes (vq/checkpoints.py)
                self.connection.delete(keys.checkpoint(job.id))
        if admitted is not None:
            self._take_started(admitted._replace(asked_at=asked_at), execution_id)
        if problems:
            raise problems[0]
        if has_dependents:  # their set already has the job's expiry (admit_end.lua)
            queue.enqueue_dependents(job)
        if job.has_rate_limit:
            release_slot(job)

    def _succeeded_in(self, pipe, job: Job) -> None:
        """vq's part of a success that RQ's own code ended: slots back, the `finished`
        event, the cache entry and a recurring job's outcome."""
        release_in(pipe, job.id, job.meta.get("jobType", ""), job.meta.get("userId", "_"))
        value = private.result(job)
        result = _result_for_history(job.serializer.dumps(value).decode() if value is not None else None)
        events.emit(
            pipe, "finished", job.id, job.meta.get("jobType"), result=result, **_finished_fields(job, self.name)
        )
        _remember_success_in(pipe, job)
        checkpoints.forget_in(pipe, job.id)
        batch_counts.ended_in(pipe, job)

    def _finish_canceled(self, job: Job, execution) -> None:
        """A running job stopped at a cancel request: canceled in one step (never seen as
        failed on the way), out of the started registry, into RQ's canceled registry."""
        reason, actor = (
            self.connection.get(keys.cancel_request(job.id)),
            self.connection.hget(job.key, keys.CANCELED_BY_FIELD),
        )
        reason, actor = optional_text(reason) or "canceled while running", optional_text(actor) or None
        job.meta["cancelReason"] = reason
        if actor:
            job.meta["canceledBy"] = actor
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            ended = utcformat(job.ended_at or datetime.now(UTC))  # RQ writes no end for it
            pipe.hset(job.key, mapping={"meta": private.serialize_meta(job), "ended_at": ended})
            job.set_status(JobStatus.CANCELED, pipeline=pipe)
            CanceledJobRegistry(job.origin, connection=self.connection, serializer=job.serializer).add(
                job, pipeline=pipe
            )
            pipe.delete(keys.cancel_request(job.id))
            checkpoints.forget_in(pipe, job.id)
            pipe.hdel(job.key, keys.CANCEL_NOW_FIELD, keys.CANCELED_BY_FIELD)
            record_outcome_in(pipe, job)
            batch_counts.ended_in(pipe, job)
            pipe.execute()
        events.emit(
            self.connection,
            "canceled",
            job.id,
            job.meta.get("jobType"),
            reason=reason,
            actor=actor,
            now=self._canceled_now(job) or None,
            userId=job.meta.get("userId"),
            durationMs=_took_ms(job),
            worker=self.name,
            webhookUrl=job.meta.get("webhookUrl"),
        )
        cancel_dependents(self.connection, job, f"dependency {job.id} was canceled")

    def _delay_for_rate_limit(self, job: Job, queue, execution, error: dict) -> None:
        """The provider said "retry after N s": wait exactly that (up to a cap), and do not
        count the attempt against the job's retries."""
        cap = runtime().settings.limits.maxRateLimitDelay / 1000
        delay = max(0.0, min(float(error.get("retryAfter", 1.0)), cap))
        job.meta["attempts"] = max(0, int(job.meta.get("attempts", 1)) - 1)
        job.meta["rateLimited"] = int(job.meta.get("rateLimited", 0)) + 1
        due = datetime.now(UTC) + timedelta(seconds=delay)
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            pipe.hset(job.key, "meta", private.serialize_meta(job))
            job.set_status(JobStatus.SCHEDULED, pipeline=pipe)
            queue.schedule_job(job, due, pipeline=pipe)
            said = events.append(
                pipe, "rate-limited", job.id, job.meta.get("jobType"), retryAfter=delay, error=error.get("message")
            )  # in the step that schedules it: before the `started` of its next run
            pipe.execute()
        events.say("rate-limited", job.id, job.meta.get("jobType"), said)

    def _requeue(self, job: Job, queue, execution, reason: str = "daemon shutdown") -> None:
        """Put an interrupted job back at the front of its queue; the attempt is not charged."""
        self._requeue_current = False
        job.meta["attempts"] = max(0, int(job.meta.get("attempts", 1)) - 1)
        job.meta.pop("error", None)
        job.meta["progress"] = {"percent": 0.0, "message": "requeued at shutdown"}
        with self.connection.pipeline() as pipe:
            self.cleanup_execution(job, pipeline=pipe, execution=execution)
            pipe.hset(job.key, "meta", private.serialize_meta(job))
            private.enqueue_job(queue, job, pipeline=pipe, at_front=True)
            said = events.append(
                pipe, "requeued", job.id, job.meta.get("jobType"), reason=reason
            )  # before any `started`
            pipe.execute()
        events.say("requeued", job.id, job.meta.get("jobType"), said)


def _remember_success_in(pipe, job: Job) -> None:
    """A finished job's cache entry (if its type caches) and its recurring outcome."""
    if job.meta.get("cacheKey"):
        cache.remember(pipe, job.meta["cacheKey"], job.id, int(job.meta.get("cacheTtl", 0)) or 1)
    record_outcome_in(pipe, job)


def _finished_fields(job: Job, worker: str) -> dict:
    """The `finished` event's fields; `worker` for its per-worker series (vq/worker_series.py)."""
    return {
        "durationMs": _took_ms(job),
        "worker": worker,
        "attempt": job.meta.get("attempts"),
        "userId": job.meta.get("userId"),
        "webhookUrl": job.meta.get("webhookUrl"),
        **_late_fields(job),
    }


def _late_fields(job: Job) -> dict:
    """A job that finished after its deadline (its type runs late: vq/deadlines.py): by how
    much, and its tier, for `vq perf`'s deadline misses (vq/metrics.py)."""
    deadline = job.meta.get("deadline")
    if not isinstance(deadline, int) or isinstance(deadline, bool):
        return {}
    late = int(time.time() * 1000) - deadline
    return {"lateMs": late, "subscription": job.meta.get("subscription")} if late > 0 else {}


def _result_for_history(result_json: str | None) -> str | None:
    """The result the `finished` event carries for the history database (history.maxResultBytes)."""
    return events.result_for_history(result_json, runtime().settings.history.maxResultBytes)


def _finish_payload(job: Job, result_ttl: int | None, worker: str) -> tuple[JobEnd, dict]:
    """What vq/lua/admit_end.lua writes for a job that succeeded, and the
    `finished` event's fields (for its log line). The result goes into the job's hash
    (RQ's own field for it, which RQ still reads back) instead of RQ's result stream: one
    key per job, which expires with it (vq.model.result_of reads either). RQ's formats for
    these fields are checked by tests/test_rq_contract.py."""
    private.set_status_locally(job, JobStatus.FINISHED)
    result = job.serializer.dumps(private.result(job)).decode()
    fields = [
        "status",
        JobStatus.FINISHED.value,
        "ended_at",
        format_rq_date(_ended_at(job)),
        "last_heartbeat",
        format_rq_date(job.last_heartbeat or _ended_at(job)),
        "result",
        result,
    ]
    item, webhook_url, said = events.entry(
        "finished", job.id, job.meta.get("jobType"), result=_result_for_history(result), **_finished_fields(job, worker)
    )
    end = JobEnd(
        id=job.id,
        key=job.key,
        fields=fields,
        ttl=-1 if result_ttl is None or result_ttl < 0 else result_ttl,
        expire=[job.dependencies_key] if private.dependency_ids(job) else [],
        registry=keys.rq_finished(job.origin),  # RQ's key (contract.KEY_PREFIXES), without building its registry
        event=[part for pair in item.items() for part in pair],
        webhook=webhook_url or "",
        dependents=job.dependents_key,
        token=getattr(job, "_vq_lease", None),  # fences the end and the give-back (vq/fence.py)
    )
    return end, said


def _ended_at(job: Job) -> datetime:
    """When the attempt ended: VqWorker.handle_execution_ended sets it before any end is written."""
    if job.ended_at is None:
        raise ValueError(f"job {job.id}: its attempt has no end time")
    return job.ended_at


def _took_ms(job: Job) -> int | None:
    """How long the attempt that just ended ran."""
    return ms_between(job.started_at, job.ended_at) if job.started_at else None


def _last_line(text: str) -> str:
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1] if lines else "failed"
