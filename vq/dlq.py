"""The dead-letter queue: jobs that failed for good (no retries left, a permanent error,
too many stalls), with what went wrong. It is RQ's FailedJobRegistry of every type, kept
as `removeOnFail` says (vq/maintenance.py); these functions list, retry and purge it."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from redis import Redis
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from vq import artifacts, events, jobs, keys
from vq.config import Settings
from vq.jobtypes import get_job_type, job_types
from vq.model import as_utc, job_view
from vq.replies import scored
from vq.rq_seam.job import ReadableJob


def _entries(conn: Redis, settings: Settings, job_type: str | None) -> list[tuple[float, str]]:
    names = [get_job_type(settings, job_type).name] if job_type else list(job_types(settings))
    entries = []
    for name in names:
        for priority in keys.PRIORITY_ORDER:
            registry = FailedJobRegistry(keys.queue_name(name, priority), connection=conn, serializer=JSONSerializer)
            entries += [(score, member) for member, score in scored(conn.zrange(registry.key, 0, -1, withscores=True))]
    return sorted(entries, reverse=True)  # newest failure first


def list_dead(conn: Redis, settings: Settings, job_type: str | None = None, limit: int = 50) -> list[dict]:
    ids = [job_id for _score, job_id in _entries(conn, settings, job_type)][:limit]
    out = []
    for job in ReadableJob.fetch_many(ids, connection=conn, serializer=JSONSerializer):
        if job is None:
            continue
        view = job_view(job, with_result=False)
        result = job.latest_result()
        view["traceback"] = result.exc_string if result and result.exc_string else None
        out.append(view)
    return out


def retry_dead(
    conn: Redis, settings: Settings, job_ids: list[str] | None = None, job_type: str | None = None
) -> list[dict]:
    """Retry the given dead jobs, or (job_ids None) all of them, optionally of one type."""
    ids = job_ids if job_ids is not None else [i for _s, i in _entries(conn, settings, job_type)]
    return [jobs.retry(conn, job_id, settings) for job_id in ids]  # an id may be a unique prefix


def purge(conn: Redis, settings: Settings, older_than_ms: int | None = None, job_type: str | None = None) -> int:
    """Delete dead jobs (that ended more than `older_than_ms` ago, if given)."""
    cutoff = None if older_than_ms is None else time.time() - older_than_ms / 1000
    ids = [i for _s, i in _entries(conn, settings, job_type)]
    removed = 0
    for job in ReadableJob.fetch_many(ids, connection=conn, serializer=JSONSerializer):
        if job is None:
            continue
        ended = as_utc(job.ended_at) if job.ended_at else None
        if cutoff is not None and ended is not None and ended.timestamp() > cutoff:
            continue
        jobs.remove(conn, job.id, artifacts.root(settings))
        removed += 1
    events.emit(
        conn,
        "dlq-purged",
        "-",
        job_type,
        removed=removed,
        olderThan=datetime.fromtimestamp(cutoff, UTC).isoformat() if cutoff else None,
    )
    return removed
