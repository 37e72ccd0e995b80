"""Housekeeping the daemon does every few seconds: keep only the newest finished and failed
jobs of each type (the spec's removeOnComplete / removeOnFail)."""

from __future__ import annotations

from datetime import datetime, timezone

from redis import Redis
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.serializers import JSONSerializer

from vq.model import as_utc
from vq import keys
from vq.config import Settings
from vq.jobtypes import job_types

TRIM_BATCH = 1000  # at most this many per type and pass, so one pass stays short


def trim_ended(conn: Redis, settings: Settings) -> int:
    """Delete the oldest ended jobs beyond the configured counts; return how many went."""
    opts = settings.queue.defaultJobOptions
    removed = 0
    for name in job_types(settings):
        for registry_class, keep in ((FinishedJobRegistry, opts.removeOnComplete), (FailedJobRegistry, opts.removeOnFail)):
            if isinstance(keep, bool):
                continue
            removed += _trim(conn, name, registry_class, keep)
    return removed


def _trim(conn: Redis, job_type: str, registry_class, keep: int) -> int:
    registries = [registry_class(keys.queue_name(job_type, p), connection=conn, serializer=JSONSerializer)
                  for p in keys.PRIORITY_ORDER]
    with conn.pipeline(transaction=False) as pipe:
        for registry in registries:
            pipe.zcard(registry.key)
        excess = sum(pipe.execute()) - keep
    if excess <= 0:
        return 0
    excess = min(excess, TRIM_BATCH)
    # Scores are end time + TTL, so the lowest scores ended first; the oldest `excess` of
    # each registry are enough to find the oldest `excess` overall.
    scores = sorted(score for registry in registries
                    for _m, score in conn.zrange(registry.key, 0, excess - 1, withscores=True))
    cutoff = scores[excess - 1]
    # Scores are whole seconds: jobs that ended in the same second tie, so the cut is made
    # on the jobs' own end times among everything up to the cutoff second.
    entries = []
    for registry in registries:
        entries += [(score, member.decode(), registry) for member, score in
                    conn.zrangebyscore(registry.key, "-inf", cutoff, withscores=True)]
    jobs = Job.fetch_many([e[1] for e in entries], connection=conn, serializer=JSONSerializer)
    never = datetime.max.replace(tzinfo=timezone.utc)
    ranked = sorted(zip(entries, jobs), key=lambda pair: (
        pair[0][0], as_utc(pair[1].ended_at) if pair[1] is not None and pair[1].ended_at else never))
    doomed_pairs = ranked[:excess]
    doomed = [entry for entry, _job in doomed_pairs]
    ids = [job_id for _s, job_id, _r in doomed]
    with conn.pipeline() as pipe:
        for _entry, job in doomed_pairs:
            if job is not None:
                job.delete(pipeline=pipe, remove_from_queue=False)
        for _score, job_id, registry in doomed:
            pipe.zrem(registry.key, job_id)
        pipe.zrem(keys.type_jobs(job_type), *ids)
        pipe.execute()
    return len(ids)
