"""Service functions on job-type queues: counts per state, pause, resume, clear.

A job type owns three RQ queues, one per priority ('image-generation.high' ...); these
functions speak of the type and cover all three.
"""

from __future__ import annotations

import time
from typing import Any

from redis import Redis
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
)
from rq.serializers import JSONSerializer

from vq import admission, events, keys, limits
from vq.config import Settings
from vq.jobtypes import get_job_type, job_types
from vq.replies import members, texts
from vq.rq_seam.job import ReadableJob
from vq.rq_seam.queue import VqQueue, rq_queue

# RQ's registries counted per queue. Running jobs are counted by their leases instead:
# vq's admission starts jobs without an entry in RQ's started registry (vq/lua/admit_start.lua).
REGISTRIES = {
    "deferred": DeferredJobRegistry,
    "scheduled": ScheduledJobRegistry,
    "failed": FailedJobRegistry,
    "finished": FinishedJobRegistry,
    "canceled": CanceledJobRegistry,
}
STATES = ("queued", "limited", "started", *REGISTRIES)
WAITING_STATUSES = ("queued", "rate_limited", "scheduled", "deferred")


def rq_queues(conn: Redis, job_type: str) -> list[VqQueue]:
    return [rq_queue(conn, keys.queue_name(job_type, p)) for p in keys.PRIORITY_ORDER]


def worker_queue_names(settings: Settings, only: list[str] | None = None) -> list[str]:
    """The queues a worker serves, high priority of every type first, then normal, then low."""
    names = [n for n in job_types(settings) if not only or n in only]
    return [keys.queue_name(t, p) for p in keys.PRIORITY_ORDER for t in names]


def counts(conn: Redis, settings: Settings) -> list[dict]:
    """One row per job type: how many jobs are in each state, and whether it is paused."""
    types = job_types(settings)
    paused = set(texts(conn.smembers(keys.PAUSED)))
    now = int(time.time() * 1000)
    with conn.pipeline(transaction=False) as pipe:
        for name in types:
            pipe.mget(keys.cache_counter(name, "hits"), keys.cache_counter(name, "misses"))
            for key in keys.wait_since_all(name):
                pipe.zcard(key)
            pipe.zcount(keys.running_type(name), now, "+inf")
            for queue in rq_queues(conn, name):
                pipe.llen(queue.key)
                for registry in REGISTRIES.values():
                    pipe.zcard(registry(queue.name, connection=conn, serializer=JSONSerializer).key)
        replies = iter(pipe.execute())
    in_force = limits.effective(conn, settings)
    rows = []
    for name in types:
        row: dict[str, Any] = {
            "jobType": name,
            "paused": name in paused,
            "limit": limits.type_limit(conn, settings, name, in_force),
            **{s: 0 for s in STATES},
        }
        hits, misses = next(replies)
        row["cacheHits"], row["cacheMisses"] = int(hits or 0), int(misses or 0)
        row["limited"] = sum(next(replies) for _ in keys.PRIORITY_ORDER)
        row["running"] = row["started"] = next(replies)
        for _priority in keys.PRIORITY_ORDER:
            for state in ("queued", *REGISTRIES):
                row[state] += next(replies)
        if row["paused"]:  # they wait for the resume, not for a slot
            row["queued"], row["limited"] = row["queued"] + row["limited"], 0
        rows.append(row)
    return rows


def pause(conn: Redis, settings: Settings, job_type: str) -> dict:
    """Stop starting new jobs of this type on every host; running ones finish."""
    get_job_type(settings, job_type)
    conn.sadd(keys.PAUSED, job_type)
    limits.rebuild_effective(conn)  # admission reads the pause there
    events.emit(conn, "paused", "-", job_type)
    return {"jobType": job_type, "paused": True}


def resume(conn: Redis, settings: Settings, job_type: str) -> dict:
    get_job_type(settings, job_type)
    conn.srem(keys.PAUSED, job_type)
    limits.rebuild_effective(conn)
    admission.wake(conn, admission.WAKE_TOKENS)  # its queued jobs may all start now: every idle worker looks
    events.emit(conn, "resumed", "-", job_type)
    return {"jobType": job_type, "paused": False}


def clear(conn: Redis, settings: Settings, job_type: str) -> dict:
    """Delete the type's waiting jobs (queued, scheduled, deferred); running and ended ones stay."""
    get_job_type(settings, job_type)
    ids = [i for key in keys.wait_since_all(job_type) for i in members(conn.zrange(key, 0, -1))]
    for queue in rq_queues(conn, job_type):
        ids += queue.get_job_ids()
        for registry_class in (ScheduledJobRegistry, DeferredJobRegistry):
            ids += registry_class(queue.name, connection=conn, serializer=JSONSerializer).get_job_ids()
    removed = 0
    for job in ReadableJob.fetch_many(list(dict.fromkeys(ids)), connection=conn, serializer=JSONSerializer):
        if job is not None and job.get_status(refresh=False).value in WAITING_STATUSES:
            admission.forget(conn, job)
            job.delete(remove_from_queue=True)
            removed += 1
    events.emit(conn, "cleared", "-", job_type, removed=removed)
    return {"jobType": job_type, "removed": removed}
