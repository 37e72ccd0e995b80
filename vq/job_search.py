"""`vq jobs --where`: which jobs match is answered by the history database, what they are now by Redis.

Every job's `created` event carries its data (history.maxDataBytes) and every status change
reaches the history, so after the archiver's catch-up (`queries.fresh`) the history knows
the live jobs as well as the ended ones, and its indexes (vq/history/search.py) find the
matches without reading every job in Redis. The page's jobs are then read from Redis and
shown as `vq jobs` shows them; a job Redis no longer holds is shown from its history row,
marked `"trimmed": true`, as `vq show` does.
"""

from __future__ import annotations

from datetime import UTC, datetime

from redis import Redis
from rq.serializers import JSONSerializer

from vq import admission
from vq.config import Settings
from vq.history import queries, search
from vq.job_lists import listed_view, page_offset, page_view
from vq.model import history_view, iso
from vq.rq_seam.job import ReadableJob


def page_matching(
    conn: Redis,
    settings: Settings,
    where: list[str],
    *,
    job_type: str | None = None,
    status: str | None = None,
    user: str | None = None,
    limit: int = 50,
    page: int = 1,
    since_ms: int | None = None,
) -> dict:
    """One page of the jobs matching `where` (and the other filters), newest first, in
    `job_lists.page_jobs`' shape, plus `note` (why the history may miss the latest events)."""
    offset = page_offset(page, limit)
    indexed = settings.history.indexedFields
    search.clauses(where, indexed)  # a bad term is refused before waiting for the archiver
    db, note = queries.fresh(conn, settings)
    where = [*where, "status!=removed"]  # `vq rm` means gone: the history keeps its row, a listing does not
    since = iso(datetime.fromtimestamp(since_ms / 1000, UTC)) if since_ms is not None else None
    match = queries.JobFilter(user=user, since=since, job_type=job_type, status=status, where=where, indexed=indexed)
    try:
        rows = queries.jobs(db, match, limit=limit, offset=offset)
        total = queries.count(db, match)
    finally:
        db.conn.close()
    fetched = ReadableJob.fetch_many([r["id"] for r in rows], connection=conn, serializer=JSONSerializer)
    lined = admission.in_line(conn, fetched)
    views = [
        listed_view(job, lined) if job is not None else history_view(row, depends_on=[], children=[], max_attempts=None)
        for row, job in zip(rows, fetched)
    ]
    return {**page_view(views, total, offset=offset, page=page, limit=limit), "note": note}
