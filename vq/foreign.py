"""Jobs vq did not make: what plain RQ enqueues onto one of vq's queues.

The obvious migration path, `Queue("image-generation.normal", connection=r).enqueue(...)`,
makes a job vq cannot honour: pickled by RQ's default serializer (vq never unpickles), or
JSON calling some other function, and in either case without the user, tier and job type
vq's limits need. So when admission hands such a job to a worker it is refused, not run:
failed with category `not_vq` and a message saying how to submit to vq, its payload set
aside (kept in the hash's `vq_original_data`) so that every read path shows it like any
failed job. Until then, `ReadableJob` (vq/rq_seam/job.py) lets the read paths show it without unpickling.
The rule: a vq job's payload is JSON calling `vq.execution.run_job` and its meta names a
job type (vq/submission/ makes every job so).
"""

from __future__ import annotations

import json
import time
import zlib
from datetime import UTC, datetime

from redis import Redis

from vq import admission, events, keys

CATEGORY = "not_vq"
MESSAGE = "not a vq job: enqueued by plain RQ; submit through vq.submission.submit or the HTTP API"
ENTRY_POINT = "vq.execution.run_job"
REFUSED_PAYLOAD = zlib.compress(json.dumps(["vq.foreign.refused", None, [], {}]).encode())


def why_not_vq(data: dict) -> str | None:
    """Why this job hash (HGETALL's) is not a vq job, or None when it is one. Reads JSON only."""
    raw = data.get(b"data") or b""
    try:
        payload = json.loads(_inflate(raw))
    except ValueError:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        return "its payload is not JSON (RQ's default serializer pickles it)"
    if not (isinstance(payload, list) and payload and payload[0] == ENTRY_POINT):
        called = payload[0] if isinstance(payload, list) and payload else None
        return f"it calls {called!r}, not {ENTRY_POINT}"
    try:
        meta = json.loads(data.get(b"meta") or b"{}")
    except ValueError:
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("jobType"), str):
        return "it carries no vq fields (job type, user)"
    return None


def _inflate(raw: bytes) -> bytes:
    try:
        return zlib.decompress(raw)
    except zlib.error:
        return raw  # RQ stores it uncompressed when compressing did not help


def refuse(conn: Redis, settings, job_id: str, queue_name: str, user: str, data: dict, why: str) -> None:
    """Fail a job admission handed out that is not vq's, without running or unpickling it:
    its slots back, its payload set aside, in the dead-letter queue with the reason, and a
    `failed` event (history, webhooks)."""
    from vq.maintenance import ended_ttl

    job_type = keys.split_queue_name(queue_name)[0]
    message = f"{MESSAGE} ({why})"
    meta = {
        "jobType": job_type,
        "attempts": 0,
        "maxAttempts": 1,
        "foreign": True,
        "error": {"category": CATEGORY, "type": "NotAVqJob", "message": message},
    }
    ttl = ended_ttl(settings.queue.defaultJobOptions.removeOnFail)
    now = datetime.now(UTC)
    key = f"rq:job:{job_id}"
    with conn.pipeline() as pipe:
        pipe.hset(
            key,
            mapping={
                "status": "failed",
                "ended_at": now.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
                "meta": json.dumps(meta, separators=(",", ":")),
                "data": REFUSED_PAYLOAD,
                "vq_original_data": data.get(b"data") or b"",
            },
        )
        pipe.expire(key, ttl)
        pipe.zadd(f"rq:failed:{queue_name}", {job_id: time.time() + ttl})
        worker = data.get(b"worker_name")
        if worker:
            pipe.hset(f"rq:worker:{worker.decode()}", "state", "idle")
        admission.release_in(pipe, job_id, job_type, user)
        events.emit(pipe, "failed", job_id, job_type, attempt=0, category=CATEGORY, error=message)
        pipe.execute()
