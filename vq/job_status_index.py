"""The jobs a status filter can match, without reading every job: RQ's registries (failed,
finished, canceled, scheduled, deferred) and vq's running and waiting-line sets hold the ids of the jobs in
those states, so a listing filtered by one of them reads those ids, put in creation order by
intersecting them with the type's (or user's) index, instead of walking an index that may
hold a million waiting jobs to find three failed ones. `vq jobs --status`, the API and the
dashboard's lists share it through vq/job_lists.py; each job read is still checked against
the filter, so an id a registry kept a moment too long is never shown.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from redis import Redis
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

from vq import keys
from vq.replies import texts

# status -> the registries that hold its jobs (RQ puts a stopped job in the failed one)
REGISTRIES = {
    "failed": (FailedJobRegistry,),
    "stopped": (FailedJobRegistry,),
    "finished": (FinishedJobRegistry,),
    "canceled": (CanceledJobRegistry,),
    "scheduled": (ScheduledJobRegistry,),
    "deferred": (DeferredJobRegistry,),
    "started": (StartedJobRegistry,),  # a plain RQ worker's; vq's own are in running_type
    "limited": (),  # in a user's line: keys.wait_since
}
SCRATCH_SECONDS = 60  # a scratch set outlives a listing that died before dropping it by this long


def _candidates(job_type: str, status: str) -> list[str]:
    """Keys whose members include every job of this type with this status."""
    names = [keys.queue_name(job_type, p) for p in keys.PRIORITY_ORDER] + [job_type]  # + a plain RQ queue
    found = [registry(name, connection=None).key for registry in REGISTRIES[status] for name in names]
    if status == "started":
        found.append(keys.running_type(job_type))
    if status == "limited":
        found.extend(keys.wait_since_all(job_type))
    return found


@contextmanager
def narrowed(
    conn: Redis, status: str | None, job_type: str | None, user: str | None, indexes: list[str]
) -> Iterator[list[str]]:
    """The indexes a listing should walk: `indexes` as they are, or, for a status RQ keeps a
    registry of, one scratch zset of just the jobs that may have it (scored by creation time,
    as the indexes are), deleted when the listing is done."""
    if status not in REGISTRIES:
        yield indexes
        return
    types = [job_type] if job_type else sorted(texts(conn.smembers(keys.JOB_TYPES_SEEN)))
    token = secrets.token_hex(8)
    pool, scratch = keys.listing_scratch(f"{token}:pool"), keys.listing_scratch(token)
    candidates = [key for t in types for key in _candidates(t, status)]
    # the pool's scores are dropped (weight 0): the index's creation times order the page
    ordering = [keys.user_jobs(user)] if user else [keys.type_jobs(t) for t in types]
    parts = [keys.listing_scratch(f"{token}:{n}") for n in range(len(ordering))]
    with conn.pipeline(transaction=False) as pipe:
        if candidates:
            pipe.zunionstore(pool, {key: 0 for key in candidates})
        for part, index in zip(parts, ordering):
            pipe.zinterstore(part, {pool: 0, index: 1})
        if parts:
            pipe.zunionstore(scratch, parts)
        pipe.expire(scratch, SCRATCH_SECONDS)
        pipe.delete(pool, *parts)
        pipe.execute()
    try:
        yield [scratch]
    finally:
        conn.delete(scratch)
