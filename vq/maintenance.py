"""Housekeeping the daemon does every few seconds: remove ended jobs past their retention
(the spec's removeOnComplete / removeOnFail, also in BullMQ's `{age, count}` form), but never
one that a job still waiting or running depends on (vq/dependents.py): it is kept and looked
at again at the next pass."""

from __future__ import annotations

import math
import time
from datetime import UTC, datetime

from redis import Redis, WatchError
from rq.job import Job
from rq.registry import BaseRegistry, FailedJobRegistry, FinishedJobRegistry
from rq.results import Result
from rq.serializers import JSONSerializer

from vq import dependents, keys
from vq.config import KeepJobs, Retention, Settings, retention_of
from vq.jobtypes import job_types
from vq.model import as_utc
from vq.replies import scored

EXAMINE = 2000  # the oldest ended jobs looked at per type, state and pass, so one pass stays short
KEEP_ENDED_SECONDS = 7 * 24 * 3600  # the least Redis expiry of an ended job (a backstop: the trim decides)
KEEP_FOREVER_SECONDS = 10 * 365 * 24 * 3600


def ended_ttl(option: bool | int | KeepJobs) -> int:
    """The Redis expiry of an ended job under this removeOnComplete / removeOnFail: only a
    backstop for when no daemon trims, since the trim enforces the rule and keeps what is
    still needed: a week, or a day more than `age` when that is longer; `false`: ten years.
    One TTL per state keeps RQ's registries (scored end time + TTL) ordered by end time."""
    rule = retention_of(option)
    if rule.forever:
        return KEEP_FOREVER_SECONDS
    return max(KEEP_ENDED_SECONDS, math.ceil((rule.age_ms or 0) / 1000) + 24 * 3600)


def trim_ended(conn: Redis, settings: Settings, now: float | None = None) -> int:
    """Delete the ended jobs beyond their retention that nothing needs; return how many went."""
    opts = settings.queue.defaultJobOptions
    now = time.time() if now is None else now
    removed = 0
    for name in job_types(settings):
        for registry_class, option in (
            (FinishedJobRegistry, opts.removeOnComplete),
            (FailedJobRegistry, opts.removeOnFail),
        ):
            rule = retention_of(option)
            if not rule.forever:
                removed += _trim(conn, name, registry_class, rule, ended_ttl(option), now)
    return removed


def _trim(conn: Redis, job_type: str, registry_class: type[BaseRegistry], rule: Retention, ttl: int, now: float) -> int:
    registries = [
        registry_class(keys.queue_name(job_type, p), connection=conn, serializer=JSONSerializer)
        for p in keys.PRIORITY_ORDER
    ]
    age_cutoff = None if rule.age_ms is None else now - rule.age_ms / 1000
    with conn.pipeline(transaction=False) as pipe:
        for registry in registries:
            pipe.zcard(registry.key)
        if age_cutoff is not None:  # a job that ended in second E has the score E + ttl
            for registry in registries:
                pipe.zcount(registry.key, "-inf", math.floor(age_cutoff) + ttl)
        replies = pipe.execute()
    over = max(0, sum(replies[:3]) - rule.count) if rule.count is not None else 0
    window = min(max(over, sum(replies[3:])), EXAMINE)
    if window <= 0:
        return 0
    candidates = _oldest(conn, registries, window)
    doomed = [
        (job_id, registry, job)
        for rank, (job_id, registry, job) in enumerate(candidates)
        if rank < over
        or job is None
        or (age_cutoff is not None and job.ended_at is not None and as_utc(job.ended_at).timestamp() <= age_cutoff)
    ]
    if not doomed:
        return 0
    with conn.pipeline() as pipe:
        # A dependent registered after this WATCH makes the transaction fail: nothing is
        # deleted this pass, and the next one sees it.
        pipe.watch(*dependents.edge_keys([job_id for job_id, _r, _j in doomed]))
        needed = dependents.still_needed(conn, [job for _i, _r, job in doomed if job is not None], now)
        going = [(job_id, registry, job) for job_id, registry, job in doomed if job_id not in needed]
        if not going:
            return 0
        pipe.multi()
        for job_id, registry, job in going:
            pipe.delete(
                Job.key_for(job_id),
                f"{Job.redis_job_namespace_prefix}{job_id}:dependents",
                f"{Job.redis_job_namespace_prefix}{job_id}:dependencies",
                Result.get_key(job_id),
            )
            pipe.zrem(registry.key, job_id)
            if job is not None and job.meta.get("userId"):
                pipe.zrem(keys.user_jobs(job.meta["userId"]), job_id)
        ids = [job_id for job_id, _r, _j in going]
        dependents.forget_in(pipe, ids)
        pipe.zrem(keys.type_jobs(job_type), *ids)
        try:
            pipe.execute()
        except WatchError:
            return 0
    return len(ids)


def _oldest(conn: Redis, registries: list[BaseRegistry], count: int) -> list[tuple[str, BaseRegistry, Job | None]]:
    """The `count` jobs of these registries that ended first: (id, registry, job or None when
    its hash is gone), oldest first."""
    # Scores are end time + TTL, so the lowest scores ended first; the oldest `count` of each
    # registry are enough to find the oldest `count` overall.
    scores = sorted(
        score
        for registry in registries
        for _m, score in scored(conn.zrange(registry.key, 0, count - 1, withscores=True))
    )
    if not scores:
        return []
    cutoff = scores[min(count, len(scores)) - 1]
    # Scores are whole seconds: jobs that ended in the same second tie, so the cut is made on
    # the jobs' own end times among everything up to the cutoff second.
    entries = [
        (score, member, registry)
        for registry in registries
        for member, score in scored(conn.zrangebyscore(registry.key, "-inf", cutoff, withscores=True))
    ]
    jobs = Job.fetch_many([e[1] for e in entries], connection=conn, serializer=JSONSerializer)
    never = datetime.max.replace(tzinfo=UTC)
    ranked = sorted(
        zip(entries, jobs),
        key=lambda pair: (pair[0][0], as_utc(pair[1].ended_at) if pair[1] is not None and pair[1].ended_at else never),
    )
    return [(job_id, registry, job) for (_score, job_id, registry), job in ranked[:count]]
