"""Stalled jobs: a job RQ still calls `started` whose concurrency lease has lapsed, because
its worker was killed or its host vanished. BullMQ's rule: put it back in line, unless it
has stalled more than `maxStalledCount` times, then fail it.

Leases are fenced (vq/fence.py): a lease lapses on Redis's clock only after its worker has
stopped the job (or its daemon has killed the worker), and recovery takes the token away in
the same transaction that settles the job, so the old holder's late writes are refused."""

from __future__ import annotations

from redis import Redis
from redis.exceptions import WatchError
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from vq import admission, batch_counts, capacity, checkpoints, events, groups, keys
from vq.config import Settings
from vq.jobs import cancel_dependents
from vq.jobtypes import job_types
from vq.replies import members
from vq.rq_seam import private
from vq.rq_seam.queue import rq_queue


def recover(conn: Redis, settings: Settings) -> list[tuple[str, str]]:
    """Requeue or fail every stalled job; returns (job id, what happened)."""
    now = redis_now_ms(conn)  # leases' deadlines are on Redis's clock (vq/lua/admit_common.lua)
    max_stalled = settings.queue.settings.maxStalledCount
    outcomes = recover_admitted(conn, settings, now)
    freed = 0  # lapsed leases dropped: their slots let waiting jobs start, which idle workers hear of by a token
    for job_type in job_types(settings):
        # The lease is read before the status: a finishing worker writes `finished` before
        # it releases the lease, so "lapsed lease" and then "started" means stalled. A
        # job vq's admission started is known by its lease alone; one RQ's own code
        # started (a forked child's) also by its entry in RQ's started registry.
        lapsed = set(members(conn.zrangebyscore(keys.running_type(job_type), "-inf", now)))
        lapsed.update(_lapsed_in_started_registries(conn, job_type, now))
        for job in Job.fetch_many(sorted(lapsed), connection=conn, serializer=JSONSerializer):
            if job is None or job.get_status(refresh=False) != JobStatus.STARTED:
                continue
            outcome = _handle(conn, job, job_type, max_stalled)
            if outcome:
                outcomes.append((job.id, outcome))
        # Admission counts live leases only; lapsed ones whose job was handled above (or
        # is gone) are dropped here, so the set does not grow.
        freed += conn.zremrangebyscore(keys.running_type(job_type), "-inf", now)
    freed += groups.drop_lapsed(conn, settings, now)
    freed += capacity.drop_lapsed(conn, now)
    if freed or outcomes:
        admission.wake(conn, freed + len(outcomes))
    return outcomes


def redis_now_ms(conn: Redis) -> int:
    seconds, micros = conn.time()
    return seconds * 1000 + micros // 1000


def _lapsed_in_started_registries(conn: Redis, job_type: str, now: int) -> list[str]:
    """Jobs in RQ's started registries of the type whose lease lapsed or is gone."""
    per_priority = [
        StartedJobRegistry(keys.queue_name(job_type, priority), connection=conn).get_job_ids(cleanup=False)
        for priority in keys.PRIORITY_ORDER
    ]
    ids = [i for some in per_priority for i in some]
    if not ids:
        return []
    leases = conn.zmscore(keys.running_type(job_type), ids)
    return [i for i, lease in zip(ids, leases) if lease is None or lease <= now]


def recover_admitted(conn: Redis, settings: Settings, now: int) -> list[tuple[str, str]]:
    """Jobs admitted to a worker that died before starting them: back in line."""
    lease_ms = settings.queue.settings.lockDuration
    ids = members(conn.zrangebyscore(keys.ADMITTED, "-inf", now - lease_ms))
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
                pipe.hdel(job.key, keys.LEASE_FIELD)
                admission.release_in(pipe, job.id, job.meta.get("jobType", ""), job.meta.get("userId") or "_")
                private.enqueue_job(rq_queue(conn, job.origin), job, pipeline=pipe, at_front=True)
                said = events.append(  # in the step that requeues it: before any later `started` (events.append)
                    pipe,
                    "stalled",
                    job.id,
                    job.meta.get("jobType"),
                    action="requeued",
                    reason="admitted, never started",
                )
                pipe.execute()
            except WatchError:
                continue  # a worker started it meanwhile
        events.say("stalled", job.id, job.meta.get("jobType"), said)
        outcomes.append((job.id, "requeued"))
    return outcomes


def _settle_if_still_started(conn: Redis, job: Job, settle, event: tuple[str, str], **fields) -> bool:
    """Take the job out of RQ's started registry (if there), save its meta, apply `settle(pipe)`
    and append the job's `event` (its name, the job's type), all only if it is still `started`:
    WATCH makes the transaction fail when a worker finishes it in between, so a finished job is
    never run again. The event is in the same step: a requeued job may be started by an idle
    worker at once, and its `started` must come after this `stalled` in the stream (`vq
    history`). True if applied."""
    with conn.pipeline() as pipe:
        try:
            pipe.watch(job.key)
            if pipe.hget(job.key, "status") != b"started":
                return False
            registry = StartedJobRegistry(job.origin, connection=conn)
            entries = _started_entries(pipe, registry, job.id)
            pipe.multi()
            if entries:
                pipe.zrem(registry.key, *entries)
            pipe.hset(job.key, "meta", private.serialize_meta(job))
            pipe.hdel(job.key, keys.LEASE_FIELD)  # the old holder's writes are refused from now on
            # Its slots back in the same step: once requeued, the job may be admitted again
            # at once, and a later give-back would take the new holder's lease.
            admission.release_in(pipe, job.id, job.meta.get("jobType", ""), job.meta.get("userId") or "_")
            settle(pipe)
            said = events.append(pipe, event[0], job.id, event[1], **fields)
            pipe.execute()
        except WatchError:
            return False
    events.say(event[0], job.id, event[1], said)
    return True


def _started_entries(conn, registry: StartedJobRegistry, job_id: str) -> list[bytes]:
    """The job's entries in RQ's started registry ("<job id>:<execution id>"), found in the
    registry itself: RQ's `remove_executions` reads a per-job execution index that vq's
    worker does not write, and the registry holds only jobs RQ's own code started."""
    prefix = f"{job_id}:".encode()
    return [m for m in conn.zrange(registry.key, 0, -1) if m.startswith(prefix)]


def _handle(conn: Redis, job: Job, job_type: str, max_stalled: int) -> str | None:
    stalled = int(job.meta.get("stalledCount", 0)) + 1
    job.meta["stalledCount"] = stalled
    if stalled <= max_stalled:
        job.meta["attempts"] = max(0, int(job.meta.get("attempts", 1)) - 1)  # the lost run is not charged

        def requeue(pipe) -> None:
            private.enqueue_job(rq_queue(conn, job.origin), job, pipeline=pipe, at_front=True)

        if not _settle_if_still_started(
            conn, job, requeue, ("stalled", job_type), stalledCount=stalled, action="requeued"
        ):
            return None
        return "requeued"
    job.meta["error"] = {
        "category": "stalled",
        "type": "Stalled",
        "message": f"job stalled more than {max_stalled} times (its worker died)",
    }

    def fail(pipe) -> None:
        job.set_status(JobStatus.FAILED, pipeline=pipe)
        FailedJobRegistry(job.origin, connection=conn, serializer=JSONSerializer).add(
            job, ttl=job.failure_ttl, pipeline=pipe
        )
        checkpoints.forget_in(pipe, job.id)

    if not _settle_if_still_started(
        conn,
        job,
        fail,
        ("failed", job_type),
        category="stalled",
        error=job.meta["error"]["message"],
        webhookUrl=job.meta.get("webhookUrl"),
    ):
        return None
    batch_counts.job_ended(conn, job)
    if not job.allow_dependency_failures:
        cancel_dependents(conn, job, f"dependency {job.id} failed")
    return "failed"
