"""Housekeeping the daemon does every few seconds: keep only the newest finished and failed
jobs of each type (the spec's removeOnComplete / removeOnFail)."""

from __future__ import annotations

from redis import Redis
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.serializers import JSONSerializer

from vq import keys
from vq.config import Settings
from vq.jobtypes import job_types


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
    sizes = [conn.zcard(r.key) for r in registries]
    if sum(sizes) <= keep:
        return 0
    # Scores are end time + TTL, so the lowest scores ended first.
    entries = []
    for registry in registries:
        entries += [(score, member.decode(), registry) for member, score in
                    conn.zrange(registry.key, 0, -1, withscores=True)]
    entries.sort(key=lambda e: e[0])
    doomed = entries[: len(entries) - keep]
    ids = [job_id for _s, job_id, _r in doomed]
    with conn.pipeline() as pipe:
        for job in Job.fetch_many(ids, connection=conn, serializer=JSONSerializer):
            if job is not None:
                job.delete(pipeline=pipe, remove_from_queue=False)
        for _score, job_id, registry in doomed:
            pipe.zrem(registry.key, job_id)
        pipe.zrem(keys.ALL_JOBS, *ids)
        pipe.zrem(keys.type_jobs(job_type), *ids)
        pipe.execute()
    return len(ids)
