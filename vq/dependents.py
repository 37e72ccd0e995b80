"""Which ended jobs are still needed: a job that has not ended yet reads their results.

A dependent reads its upstream jobs' results from their hashes when it runs (vq/execution.py
`upstream_of`), so trimming (vq/maintenance.py) must keep a finished or failed job while any
job that depends on it can still run. RQ's own record of that, the upstream's
`rq:job:<id>:dependents` set, is deleted as soon as the dependents are enqueued: a dependent
that is queued, in its user's line, behind a paused queue, running or waiting for a retry is
no longer in it. So vq keeps its own reverse edges, `vq:dependents:<id>` (a sorted set of the
jobs created depending on <id>, scored by when), written before the dependent is created and
deleted with the upstream. A job is still needed while one of those dependents (or one in RQ's
set, for jobs made before these edges existed) has not ended, or while its planned parent (a
`video-generation` job, which runs last and reports its children's progress) has not ended.
"""

from __future__ import annotations

import time

from redis import Redis
from redis.client import Pipeline
from rq.job import Job

from vq import keys
from vq.errors import NotFound

ENDED = {b"finished", b"failed", b"canceled", b"stopped"}
EDGE_TTL = 35 * 24 * 3600  # a backstop: the set goes with its job (trim, rm) long before this
BEING_CREATED_S = 60.0  # a dependent named in an edge but not yet in Redis counts as waiting this long


def register(conn: Redis, edges: dict[str, list[str]], existing: list[str]) -> None:
    """Record that each dependent in `edges` is about to be created depending on its list of
    upstream jobs, and check that the `existing` ones (those not created in the same
    submission) are still there, in one transaction. From then on a trim keeps them (it
    watches the edges, and counts a dependent it cannot see yet as waiting), so a dependency
    is never trimmed between this check and its dependent's creation; a plan registers its
    whole graph before its first child can run."""
    now = time.time()
    upstreams = sorted({u for ups in edges.values() for u in ups})
    if not upstreams:
        return
    with conn.pipeline() as pipe:  # MULTI: the edges and the check see the same moment
        for dependent, ups in edges.items():
            for upstream in ups:
                pipe.zadd(keys.dependents(upstream), {dependent: now})
        for upstream in upstreams:
            pipe.expire(keys.dependents(upstream), EDGE_TTL)
        for upstream in existing:
            pipe.exists(Job.key_for(upstream))
        found = pipe.execute()[-len(existing) :] if existing else []
    for upstream, exists in zip(existing, found):
        if not exists:
            raise NotFound(f"dependsOn: no such job {upstream!r}", field="dependsOn")


def forget_in(pipe: Pipeline, job_ids: list[str]) -> None:
    """A deleted job's edges go with it."""
    if job_ids:
        pipe.delete(*(keys.dependents(job_id) for job_id in job_ids))


def edge_keys(job_ids: list[str]) -> list[str]:
    """The keys a trim WATCHes: a dependent registered meanwhile makes it try again later."""
    return [keys.dependents(job_id) for job_id in job_ids]


def still_needed(conn: Redis, jobs: list[Job], now: float | None = None) -> set[str]:
    """The ids of these ended jobs that a job which has not ended depends on, or whose planned
    parent has not ended: two pipelined round trips however many jobs are asked about."""
    if not jobs:
        return set()
    now = time.time() if now is None else now
    with conn.pipeline(transaction=False) as pipe:
        for job in jobs:
            pipe.zrange(keys.dependents(job.id), 0, -1, withscores=True)
            pipe.smembers(job.dependents_key)
        replies = pipe.execute()
    waiting_on: dict[str, set[str]] = {}
    young: set[str] = set()  # dependents registered moments ago: maybe not in Redis yet
    for index, job in enumerate(jobs):
        ours, rqs = replies[2 * index], replies[2 * index + 1]
        named = {member.decode() for member, _score in ours} | {member.decode() for member in rqs}
        young.update(member.decode() for member, score in ours if now - score < BEING_CREATED_S)
        parent = job.meta.get("parentId")
        if parent:
            named.add(parent)
        waiting_on[job.id] = named
    asked = sorted(set().union(*waiting_on.values()))
    if not asked:
        return set()
    with conn.pipeline(transaction=False) as pipe:
        for job_id in asked:
            pipe.hget(Job.key_for(job_id), "status")
        statuses = pipe.execute()
    live = {
        job_id
        for job_id, status in zip(asked, statuses)
        if (status is not None and status not in ENDED) or (status is None and job_id in young)
    }
    return {job_id for job_id, named in waiting_on.items() if named & live}
