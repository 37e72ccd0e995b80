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
The command lets the archiver catch up first, so that a job's `created` row exists and
cannot overwrite the new copy afterwards. The archiver runs the same walk by itself, a
batch per pass, when the list names a field no whole walk has run for yet (archiver_state
`reindexed_fields`): a field added to the list and a daemon restarted is enough.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from redis import Redis
from rq.serializers import JSONSerializer

from vq import keys
from vq.config import Settings
from vq.model import VQ_FUNC
from vq.rq_seam.job import ReadableJob
from vq.submission.spec import history_data

BATCH = 500


def job_ids(conn: Redis, cursor: int = 0, count: int = BATCH) -> tuple[int, list[str]]:
    """(the next cursor, 0 when the walk is done; the ids of about `count` keys' worth of
    the jobs Redis holds): one SCAN step, no long command."""
    cursor, names = conn.scan(cursor, match=keys.RQ_JOB_PREFIX + "*", count=count, _type="HASH")
    ids = []
    for raw in names:
        job_id = (raw.decode() if isinstance(raw, bytes) else str(raw))[len(keys.RQ_JOB_PREFIX) :]
        if job_id and ":" not in job_id:  # rq:job:ID:dependents and the like are not jobs
            ids.append(job_id)
    return int(cursor), ids


def copies(conn: Redis, settings: Settings, ids: list[str]) -> dict[str, str | None]:
    """The data copy each vq job of `ids` should have now (None: none); not vq jobs are left out."""
    out: dict[str, str | None] = {}
    for job in ReadableJob.fetch_many(ids, connection=conn, serializer=JSONSerializer):
        if job is None or job.func_name != VQ_FUNC or len(job.args) < 2:
            continue
        out[job.id] = history_data(settings, job.args[1])
    return out


def step(conn: Redis, settings: Settings, db, cursor: int = 0) -> tuple[int, dict]:
    """One batch: (the next cursor, 0 when done; its counts). A copy is written only when
    it differs from the row's, and never taken away (a job whose copy would be none keeps
    its own: another host's list may call for it)."""
    cursor, ids = job_ids(conn, cursor)
    wanted = copies(conn, settings, ids) if ids else {}
    current: dict[str, str | None] = {}
    if wanted:
        marks = ",".join("?" * len(wanted))
        current = dict(db.execute(f"SELECT id, data FROM render_jobs WHERE id IN ({marks})", list(wanted)))
    changes = [
        (copy, job_id)
        for job_id, copy in wanted.items()
        if job_id in current and copy is not None and current[job_id] != copy
    ]
    if changes:
        with db.conn:
            db.conn.executemany("UPDATE render_jobs SET data = ? WHERE id = ?", changes)
    missing = sum(1 for job_id in wanted if job_id not in current)
    counts = {
        "looked": len(wanted),
        "written": len(changes),
        "unchanged": len(wanted) - len(changes) - missing,
        "notInHistory": missing,
    }
    return cursor, counts


def add(total: dict, counts: dict) -> dict:
    return {name: total.get(name, 0) + value for name, value in counts.items()}


def done_fields(db) -> set[str]:
    """The data fields a whole reindex has run for (archiver_state `reindexed_fields`)."""
    row = db.execute("SELECT value FROM archiver_state WHERE name = 'reindexed_fields'").fetchone()
    return set(json.loads(row[0])) if row else set()


def mark_done(db, fields: list[str]) -> None:
    """Remember that a whole reindex has run for `fields` (with those before)."""
    value = json.dumps(sorted(done_fields(db) | set(fields)))
    with db.conn:
        db.conn.execute(
            "INSERT INTO archiver_state (name, value) VALUES ('reindexed_fields', ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (value,),
        )


def reindex(conn: Redis, settings: Settings, db, progress: Callable[[dict], object] | None = None) -> dict:
    """Rewrite the data copy of every job Redis holds whose copy differs from what
    history.indexedFields calls for now; `progress` is told the counts after each batch.
    Returns {"looked": jobs looked at, "written": copies written, "unchanged": already
    right, "notInHistory": jobs the history has no row for, "indexedFields": [...]}."""
    total = {"looked": 0, "written": 0, "unchanged": 0, "notInHistory": 0}
    cursor = 0
    while True:
        cursor, counts = step(conn, settings, db, cursor)
        total = add(total, counts)
        if progress is not None and counts["looked"]:
            progress(dict(total))
        if not cursor:
            break
    mark_done(db, settings.history.indexedFields)
    return {**total, "indexedFields": list(settings.history.indexedFields)}


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
