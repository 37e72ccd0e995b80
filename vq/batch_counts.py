"""A batch's counting, in one Lua script (vq/lua/batch_sync.lua) every caller shares.

Where a job ends for good (a worker's success, failure or cancel, `vq cancel`, `vq rm`, a
deadline's expiry, stalled-job recovery) its end and this count go to Redis in the same
round trip when a pipeline is at hand, else right after it. The script reads the job's
status itself and counts each job once (an HSETNX per job), so a count sent twice, or by
two daemons at once, or by the sweep below, is counted once. The sweep is the safety net:
a process killed between a job's end and its count, or an end path that does not call
here, is counted within one sweep interval.
"""

from __future__ import annotations

import logging
import time

from redis import Redis
from redis.client import Pipeline

from vq import keys, lua
from vq.replies import texts

log = logging.getLogger("vq.batches")
KEEP_SECONDS = 7 * 24 * 3600  # a complete batch's keys are kept this long
SWEEP_CHUNK = 500  # job ids per call of the script


def _call_args(batch_id: str, mode: str, job_ids: list[str]) -> tuple[list[str], list]:
    call_keys = [
        keys.batch(batch_id),
        keys.batch_jobs(batch_id),
        keys.batch_ended(batch_id),
        keys.BATCHES_DUE,
        keys.BATCHES_ACTIVE,
        keys.BATCHES_DUE_WEBHOOKS,
        *(keys.rq_job(j) for j in job_ids),
    ]
    return call_keys, [mode, int(time.time() * 1000), KEEP_SECONDS, *job_ids]


def sync(conn: Redis, batch_id: str, mode: str, job_ids: list[str]) -> tuple[int, list[str]]:
    """Run the script: (its code, the callbacks it claimed). See vq/lua/batch_sync.lua."""
    call_keys, args = _call_args(batch_id, mode, job_ids)
    reply = lua.script(conn, "batch_sync.lua")(keys=call_keys, args=args)
    return int(reply[0]), texts(reply[1:])


def ended_in(pipe: Pipeline, job) -> None:
    """Count `job`'s end in the pipeline that writes it (after the write), if it is in a batch."""
    batch_id = job.meta.get("batchId")
    if batch_id:
        call_keys, args = _call_args(batch_id, "end", [job.id])
        pipe.eval(lua.source("batch_sync.lua"), len(call_keys), *call_keys, *args)


def job_ended(conn: Redis, job) -> None:
    """Count `job`'s end once it is written, if it is in a batch. A failure here is logged,
    never raised: the sweep counts the job later."""
    batch_id = job.meta.get("batchId")
    if not batch_id:
        return
    try:
        sync(conn, batch_id, "end", [job.id])
    except Exception:  # the end itself is written; never fail its writer for the count
        log.exception("batch %s: counting job %s's end failed (the sweep will)", batch_id, job.id)


def sweep(conn: Redis) -> int:
    """Count every active batch's jobs that ended but were not counted; returns how many
    batches were looked at."""
    batch_ids = sorted(texts(conn.smembers(keys.BATCHES_ACTIVE)))
    for batch_id in batch_ids:
        members = set(texts(conn.smembers(keys.batch_jobs(batch_id))))
        counted = set(texts(conn.hkeys(keys.batch_ended(batch_id))))
        pending = sorted(members - counted)
        if not pending:
            code, _ = sync(conn, batch_id, "end", [])
        for start in range(0, len(pending), SWEEP_CHUNK):
            code, _ = sync(conn, batch_id, "end", pending[start : start + SWEEP_CHUNK])
            if code == -1:
                break
        if not pending and code == -1:
            conn.srem(keys.BATCHES_ACTIVE, batch_id)  # its keys are gone
    return len(batch_ids)
