"""Lists of jobs, newest first: `list_jobs` and `page_jobs` (with the total) for `vq jobs`,
the TUI, the dashboard and bulk actions. They read the per-user or per-type index so a filter
stays cheap, and drop from it the ids of jobs that have expired.
"""

from __future__ import annotations

import json

from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from vq import admission, keys
from vq.errors import InvalidInput
from vq.job_status_index import narrowed
from vq.jobdata import LIST_RESULT_BYTES
from vq.model import job_type_of, job_view, status_of
from vq.replies import members, texts
from vq.rq_seam.job import ReadableJob


def list_jobs(
    conn: Redis,
    *,
    job_type: str | None = None,
    status: str | None = None,
    user: str | None = None,
    limit: int = 50,
    offset: int = 0,
    since_ms: int | None = None,
) -> list[dict]:
    """Newest first, filtered; reads the per-user or per-type index so a filter stays cheap
    (unfiltered: every type's index, merged). `since_ms`: only jobs created at or after it."""
    return _scan(conn, job_type, status, user, limit, offset, since_ms, count=False)[0]


def page_jobs(
    conn: Redis,
    *,
    job_type: str | None = None,
    status: str | None = None,
    user: str | None = None,
    limit: int = 50,
    page: int = 1,
    since_ms: int | None = None,
) -> dict:
    """One page of `list_jobs` with the total that matches, for `vq jobs` and the API:
    `{"jobs", "total", "offset", "page", "limit"}`. Without a status filter the total is the
    indexes' count (cheap); with one, every matching job is read to count it."""
    offset = page_offset(page, limit)
    views, total = _scan(conn, job_type, status, user, limit, offset, since_ms, count=bool(status))
    if not status:
        indexes = _indexes(conn, job_type, user)
        with conn.pipeline(transaction=False) as pipe:
            for index in indexes:
                pipe.zcount(index, since_ms if since_ms is not None else "-inf", "+inf")
            total = sum(pipe.execute())
        if job_type and user:  # the user's index holds other types: count what matches
            views, total = _scan(conn, job_type, status, user, limit, offset, since_ms, count=True)
    return page_view(views, total, offset=offset, page=page, limit=limit)


def page_offset(page: int, limit: int) -> int:
    """How many jobs come before page `page` of `limit` each; a page or limit below 1 is refused
    (one check for every paged listing: `vq jobs`, with or without --where)."""
    if page < 1 or limit < 1:
        raise InvalidInput("page and limit must be at least 1")
    return (page - 1) * limit


def page_view(views: list[dict], total: int, *, offset: int, page: int, limit: int) -> dict:
    """A page of jobs as every paged listing answers it: `{"jobs", "total", "offset", "page",
    "limit"}`. The total is never below what the pages so far have shown (a count taken a moment
    before the page was read may lag it); a page past the end shows nothing, so says nothing of
    the total (its offset is no count: page 99 of 50 is not "0 of 4,900")."""
    if views:
        total = max(total, offset + len(views))
    return {"jobs": views, "total": total, "offset": offset, "page": page, "limit": limit}


def listed_view(job: Job, lined: set[str]) -> dict:
    """A job Redis holds, as a listing shows it (`lined`: the ids admission.in_line found waiting
    in a user's line)."""
    return list_view(job_view(job, in_line=job.id in lined))


def _indexes(conn: Redis, job_type: str | None, user: str | None) -> list[str]:
    if user:
        return [keys.user_jobs(user)]
    if job_type:
        return [keys.type_jobs(job_type)]
    return sorted(keys.type_jobs(t) for t in texts(conn.smembers(keys.JOB_TYPES_SEEN)))


def _scan(
    conn: Redis,
    job_type: str | None,
    status: str | None,
    user: str | None,
    limit: int,
    offset: int,
    since_ms: int | None,
    count: bool,
) -> tuple[list[dict], int]:
    """The page's views and (with `count`: reading on past the page) how many match in all."""
    if limit < 1 or offset < 0:
        raise InvalidInput("limit must be at least 1 and offset not negative")
    with narrowed(conn, status, job_type, user, _indexes(conn, job_type, user)) as indexes:
        return _scan_indexes(conn, indexes, job_type, status, limit, offset, since_ms, count)


def _scan_indexes(
    conn: Redis,
    indexes: list[str],
    job_type: str | None,
    status: str | None,
    limit: int,
    offset: int,
    since_ms: int | None,
    count: bool,
) -> tuple[list[dict], int]:
    out: list[dict] = []
    matched, start, chunk = 0, 0, 200
    while count or len(out) < limit:
        ids = _newest(conn, indexes, start, chunk, since_ms)
        if not ids:
            break
        start += chunk
        stale = []
        fetched = ReadableJob.fetch_many(ids, connection=conn, serializer=JSONSerializer)
        lined = admission.in_line(conn, fetched)
        for job_id, job in zip(ids, fetched):
            if job is None:
                stale.append(job_id)
                continue
            if job_type and job_type_of(job) != job_type:
                continue
            if status and status_of(job, job.id in lined) != status:
                continue
            matched += 1
            if matched <= offset or len(out) >= limit:
                continue
            out.append(listed_view(job, lined))  # the result is in the hash: no extra read
            if len(out) >= limit and not count:
                break
        if stale:
            forget(conn, stale, *indexes)
    return out, matched


def list_view(view: dict) -> dict:
    """A job as lists show it (`vq jobs`, the dashboard, the TUI): a result larger than
    jobdata.LIST_RESULT_BYTES is left out, marked `"resultOmitted": true` with its size in
    `"resultBytes"`, so a page of jobs stays small; `vq show` and `vq result` give it whole."""
    result = view.get("result")
    if result is not None:
        size = len(json.dumps(result, separators=(",", ":"), default=str).encode())
        if size > LIST_RESULT_BYTES:
            view.update(result=None, resultOmitted=True, resultBytes=size)
    return view


def _newest(conn: Redis, indexes: list[str], start: int, count: int, since_ms: int | None = None) -> list[str]:
    """Job ids `start` .. `start + count` of these indexes merged, newest first (created at or
    after `since_ms`, when given)."""
    low = since_ms if since_ms is not None else "-inf"
    if len(indexes) == 1:
        return members(conn.zrevrangebyscore(indexes[0], "+inf", low, start=start, num=count))
    with conn.pipeline(transaction=False) as pipe:
        for index in indexes:
            pipe.zrevrangebyscore(index, "+inf", low, start=0, num=start + count, withscores=True)
        merged = sorted((pair for reply in pipe.execute() for pair in reply), key=lambda pair: -pair[1])
    return [job_id.decode() for job_id, _score in merged[start : start + count]]


def forget(conn: Redis, ids: list[str], *indexes: str) -> None:
    """Drop job ids from these indexes: ids a listing found expired, or a removed job's."""
    with conn.pipeline() as pipe:
        for index in set(indexes):
            pipe.zrem(index, *ids)
        pipe.execute()
