"""Result caching: a submission whose type and data match a job that already finished
reuses that result, within the type's TTL, instead of running again.

The scope is per user by default (`user:<id>`), so one user's results never reach
another; a type may declare `scope: global`. Jobs with dependencies are never cached,
since their result depends on more than their data. `options.skipCache` (or
`--skip-cache`) bypasses the cache for one submission.
"""

from __future__ import annotations

import hashlib
import json

from redis import Redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from vq import keys
from vq.jobtypes import JobType
from vq.replies import text

IGNORED_FIELDS = {"userId", "projectId"}  # who asks, not what is asked


def wants_cache(data: dict) -> bool:
    options = data.get("options")
    if not isinstance(options, dict):
        options = {}
    return not (options.get("skipCache") or data.get("skipCache"))


def cache_key(job_type: JobType, user_id: str, data: dict) -> str | None:
    """The cache key for this submission, or None when the type does not cache."""
    if job_type.cache.ttl <= 0:
        return None
    canonical = {k: v for k, v in data.items() if k not in IGNORED_FIELDS and k != "skipCache"}
    if isinstance(canonical.get("options"), dict):
        canonical["options"] = {k: v for k, v in canonical["options"].items() if k != "skipCache"}
    digest = hashlib.sha256(json.dumps(canonical, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    scope = "global" if job_type.cache.scope == "global" else f"user:{user_id}"
    return keys.result_cache(job_type.name, scope, digest)


def lookup(conn: Redis, job_type: str, key: str) -> Job | None:
    """The finished job cached under `key`, counting the hit or miss."""
    cached_id = conn.get(key)
    job = None
    if cached_id:
        job = Job.fetch_many([text(cached_id)], connection=conn, serializer=JSONSerializer)[0]
        if job is not None and job.get_status(refresh=False) != JobStatus.FINISHED:
            job = None
    conn.incr(keys.cache_counter(job_type, "hits" if job else "misses"))
    return job


def remember(pipe, key: str, job_id: str, ttl_ms: int) -> None:
    pipe.set(key, job_id, px=ttl_ms)
