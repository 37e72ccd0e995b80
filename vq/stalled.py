"""Stalled jobs: a job RQ still calls `started` whose concurrency lease has lapsed, because
its worker was killed or its host vanished. BullMQ's rule: put it back in line, unless it
has stalled more than `maxStalledCount` times, then fail it."""

from __future__ import annotations

import time

from redis import Redis
from redis.exceptions import WatchError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from vq import admission, events, keys
from vq.config import Settings
from vq.jobs import cancel_dependents
from vq.jobtypes import job_types
from vq.rq_queue import rq_queue


def recover(conn: Redis, settings: Settings) -> list[tuple[str, str]]:
    """Requeue or fail every stalled job; returns (job id, what happened)."""
    now = int(time.time() * 1000)
    max_stalled = settings.queue.settings.maxStalledCount
    outcomes = recover_admitted(conn, settings, now)
    for job_type in job_types(settings):
        for priority in keys.PRIORITY_ORDER:
            queue_name = keys.queue_name(job_type, priority)
            registry = StartedJobRegistry(queue_name, connection=conn, serializer=JSONSerializer)
            ids = registry.get_job_ids(cleanup=False)
            if not ids:
                continue
            # The lease is read before the status: a finishing worker writes `finished`
            # before it releases the lease, so "no lease" and then "started" means stalled.
            leases = conn.zmscore(keys.running_type(job_type), ids)
            lapsed = [i for i, lease in zip(ids, leases) if lease is None or lease <= now]
            for job in Job.fetch_many(lapsed, connection=conn, serializer=JSONSerializer):
                if job is None or job.get_status(refresh=False) != JobStatus.STARTED:
                    continue
                outcome = _handle(conn, registry, job, job_type, max_stalled)
                if outcome:
                    outcomes.append((job.id, outcome))
        # Admission counts live leases only; lapsed ones whose job was handled above (or
        # is gone) are dropped here, so the set does not grow.
        conn.zremrangebyscore(keys.running_type(job_type), "-inf", now)
    return outcomes


def recover_admitted(conn: Redis, settings: Settings, now: int) -> list[tuple[str, str]]:
    """Jobs admitted to a worker that died before starting them: back in line."""
    lease_ms = settings.queue.settings.lockDuration
    ids = [i.decode() for i in conn.zrangebyscore(keys.ADMITTED, "-inf", now - lease_ms)]
    outcomes = []
    for job_id, job in zip(ids, Job.fetch_many(ids, connection=conn, serializer=JSONSerializer)):
        if job is None or job.get_status(refresh=False) != JobStatus.QUEUED:
            conn.zrem(keys.ADMITTED, job_id)  # it started (or went) after all
            continue
        with conn.pipeline() as pipe:
            try:
                pipe.watch(job.key, keys.ADMITTED)
                if pipe.zscore(keys.ADMITTED, job_id) is None or pipe.hget(job.key, "status") != b"queued":
                    continue
                pipe.multi()
                pipe.zrem(keys.ADMITTED, job_id)
                rq_queue(conn, job.origin)._enqueue_job(job, pipeline=pipe, at_front=True)
                pipe.execute()
            except WatchError:
                continue  # a worker started it meanwhile
        admission.release(conn, job.id, job.meta.get("jobType", ""), job.meta.get("userId") or "_")
        events.emit(conn, "stalled", job.id, job.meta.get("jobType"), action="requeued", reason="admitted, never started")
        outcomes.append((job.id, "requeued"))
    return outcomes


def _settle_if_still_started(conn: Redis, registry: StartedJobRegistry, job: Job, settle) -> bool:
    """Take the job out of the started registry, save its meta and apply `settle(pipe)`,
    all only if it is still `started`: WATCH makes the transaction fail when a worker
    finishes it in between, so a finished job is never run again. True if applied."""
    with conn.pipeline() as pipe:
        try:
            pipe.watch(job.key)
            if pipe.hget(job.key, "status") != b"started":
                return False
            pipe.multi()
            registry.remove_executions(job, pipeline=pipe)
            pipe.hset(job.key, "meta", job._serialize_meta())
            settle(pipe)
            pipe.execute()
        except WatchError:
            return False
    return True


def _handle(conn: Redis, registry: StartedJobRegistry, job: Job, job_type: str, max_stalled: int) -> str | None:
    stalled = int(job.meta.get("stalledCount", 0)) + 1
    job.meta["stalledCount"] = stalled
    user = job.meta.get("userId") or "_"
    if stalled <= max_stalled:
        job.meta["attempts"] = max(0, int(job.meta.get("attempts", 1)) - 1)  # the lost run is not charged
        def requeue(pipe) -> None:
            rq_queue(conn, job.origin)._enqueue_job(job, pipeline=pipe, at_front=True)

        if not _settle_if_still_started(conn, registry, job, requeue):
            return None
        admission.release(conn, job.id, job_type, user)
        events.emit(conn, "stalled", job.id, job_type, stalledCount=stalled, action="requeued")
        return "requeued"
    job.meta["error"] = {"category": "stalled", "type": "Stalled",
                         "message": f"job stalled more than {max_stalled} times (its worker died)"}

    def fail(pipe) -> None:
        job.set_status(JobStatus.FAILED, pipeline=pipe)
        FailedJobRegistry(job.origin, connection=conn, serializer=JSONSerializer).add(job, ttl=job.failure_ttl,
                                                                                       pipeline=pipe)

    if not _settle_if_still_started(conn, registry, job, fail):
        return None
    admission.release(conn, job.id, job_type, user)
    events.emit(conn, "failed", job.id, job_type, category="stalled", error=job.meta["error"]["message"],
                webhookUrl=job.meta.get("webhookUrl"))
    if not job.allow_dependency_failures:
        cancel_dependents(conn, job, f"dependency {job.id} failed")
    return "failed"
