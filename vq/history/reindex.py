"""`vq history reindex`: the history's data copy (render_jobs.data, what `--where data.X`
reads: vq/history/search.py) brought up to the current `history.indexedFields` for every job
Redis still holds.

A job's `created` event carries the copy the list called for when it was submitted: none
while the list was empty, and one that may lack a field listed since. Its data is still in
Redis as long as the job is, so the copy can be made again from it (submission/spec.py
history_data, the same function the submit paths call). Jobs Redis no longer holds (ended
and expired) cannot be: their data is gone.

Bounded: Redis is walked with SCAN, BATCH jobs at a time, each batch one SQLite transaction
(the archiver keeps writing between them); a copy that is already right is not written.
The archiver catches up first, so that a job's `created` row exists and cannot overwrite
the new copy afterwards.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from redis import Redis
from rq.serializers import JSONSerializer

from vq import keys
from vq.config import Settings
from vq.model import VQ_FUNC
from vq.rq_seam.job import ReadableJob
from vq.submission.spec import history_data

BATCH = 500


def job_ids(conn: Redis, count: int = BATCH) -> Iterator[list[str]]:
    """The ids of the jobs Redis holds, in batches of about `count` (SCAN: no long command)."""
    batch: list[str] = []
    for raw in conn.scan_iter(match=keys.RQ_JOB_PREFIX + "*", count=count, _type="HASH"):
        name = raw.decode() if isinstance(raw, bytes) else str(raw)
        job_id = name[len(keys.RQ_JOB_PREFIX) :]
        if not job_id or ":" in job_id:  # rq:job:ID:dependents and the like are not jobs
            continue
        batch.append(job_id)
        if len(batch) >= count:
            yield batch
            batch = []
    if batch:
        yield batch


def copies(conn: Redis, settings: Settings, ids: list[str]) -> dict[str, str | None]:
    """The data copy each vq job of `ids` should have now (None: none); not vq jobs are left out."""
    out: dict[str, str | None] = {}
    for job in ReadableJob.fetch_many(ids, connection=conn, serializer=JSONSerializer):
        if job is None or job.func_name != VQ_FUNC or len(job.args) < 2:
            continue
        out[job.id] = history_data(settings, job.args[1])
    return out


def reindex(conn: Redis, settings: Settings, db, progress: Callable[[dict], object] | None = None) -> dict:
    """Rewrite the data copy of every job Redis holds whose copy differs from what
    history.indexedFields calls for now (a job whose copy would be none keeps its own); `progress` is told the counts after each batch.
    Returns {"looked": jobs looked at, "written": copies written, "unchanged": already
    right, "notInHistory": jobs the history has no row for, "indexedFields": [...]}."""
    counts = {"looked": 0, "written": 0, "unchanged": 0, "notInHistory": 0}
    for ids in job_ids(conn):
        wanted = copies(conn, settings, ids)
        marks = ",".join("?" * len(wanted))
        current = dict(db.execute(f"SELECT id, data FROM render_jobs WHERE id IN ({marks})", list(wanted)))
        changes = [
            (copy, job_id)
            for job_id, copy in wanted.items()
            if job_id in current and copy is not None and current[job_id] != copy  # a copy is never taken away
        ]
        if changes:
            with db.conn:
                db.conn.executemany("UPDATE render_jobs SET data = ? WHERE id = ?", changes)
        counts["looked"] += len(wanted)
        counts["written"] += len(changes)
        counts["notInHistory"] += sum(1 for job_id in wanted if job_id not in current)
        counts["unchanged"] = counts["looked"] - counts["written"] - counts["notInHistory"]
        if progress is not None:
            progress(dict(counts))
    return {**counts, "indexedFields": list(settings.history.indexedFields)}


def run(conn: Redis, settings: Settings, progress: Callable[[dict], object] | None = None) -> dict:
    """`vq history reindex`: once the archiver has caught up, `reindex` (plus `note`: why the
    history may miss the latest events, None when it does not). Refused without an indexed
    field: there is nothing to copy, and copies other hosts' lists call for are kept."""
    from vq.errors import InvalidInput
    from vq.history import queries

    if not settings.history.indexedFields:
        raise InvalidInput("history.indexedFields is empty: no data field to copy for --where", field="indexedFields")
    if settings.history.maxDataBytes <= 0:
        raise InvalidInput("history.maxDataBytes is 0: no data is copied to the history", field="maxDataBytes")
    db, note = queries.fresh(conn, settings)
    try:
        return {**reindex(conn, settings, db, progress), "note": note}
    finally:
        db.conn.close()
