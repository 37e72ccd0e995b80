"""Stalled jobs: a job RQ still calls `started` whose concurrency lease has lapsed, because
its worker was killed or its host vanished. BullMQ's rule: put it back in line, unless it
has stalled more than `maxStalledCount` times, then fail it."""

from __future__ import annotations

import time

from redis import Redis
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
    outcomes = []
    for job_type in job_types(settings):
        for priority in keys.PRIORITY_ORDER:
            queue_name = keys.queue_name(job_type, priority)
            registry = StartedJobRegistry(queue_name, connection=conn, serializer=JSONSerializer)
            ids = registry.get_job_ids(cleanup=False)
            if not ids:
                continue
            for job in Job.fetch_many(ids, connection=conn, serializer=JSONSerializer):
                if job is None or job.get_status(refresh=False) != JobStatus.STARTED:
                    continue
                lease = conn.zscore(keys.running_type(job_type), job.id)
                if lease is not None and lease > now:
                    continue
                outcomes.append((job.id, _handle(conn, registry, job, job_type, max_stalled)))
    return outcomes


def _handle(conn: Redis, registry: StartedJobRegistry, job: Job, job_type: str, max_stalled: int) -> str:
    stalled = int(job.meta.get("stalledCount", 0)) + 1
    job.meta["stalledCount"] = stalled
    user = job.meta.get("userId") or "_"
    if stalled <= max_stalled:
        job.meta["attempts"] = max(0, int(job.meta.get("attempts", 1)) - 1)  # the lost run is not charged
        with conn.pipeline() as pipe:
            registry.remove_executions(job, pipeline=pipe)
            pipe.hset(job.key, "meta", job._serialize_meta())
            rq_queue(conn, job.origin)._enqueue_job(job, pipeline=pipe, at_front=True)
            pipe.execute()
        admission.release(conn, job.id, job_type, user)
        events.emit(conn, "stalled", job.id, job_type, stalledCount=stalled, action="requeued")
        return "requeued"
    job.meta["error"] = {"category": "stalled", "type": "Stalled",
                         "message": f"job stalled more than {max_stalled} times (its worker died)"}
    with conn.pipeline() as pipe:
        registry.remove_executions(job, pipeline=pipe)
        pipe.hset(job.key, "meta", job._serialize_meta())
        job.set_status(JobStatus.FAILED, pipeline=pipe)
        FailedJobRegistry(job.origin, connection=conn, serializer=JSONSerializer).add(job, ttl=job.failure_ttl,
                                                                                       pipeline=pipe)
        pipe.execute()
    admission.release(conn, job.id, job_type, user)
    events.emit(conn, "failed", job.id, job_type, category="stalled", error=job.meta["error"]["message"])
    if not job.allow_dependency_failures:
        cancel_dependents(conn, job, f"dependency {job.id} failed")
    return "failed"
