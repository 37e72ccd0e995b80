"""Every worker process of every host, as RQ records it plus the memory vq's workers
report with their heartbeat: `vq workers`, GET /api/workers, health and the TUI."""

from __future__ import annotations

from datetime import datetime, timezone

from redis import Redis
from rq.utils import utcparse

WORKERS_SET = "rq:workers"  # RQ's registry of worker keys
MEMORY_FIELD = "vq_rss_mb"  # written by vq's worker with each heartbeat (vq/worker.py)


def listing(conn: Redis, heartbeat_ms: int) -> list[dict]:
    """One row per registered worker: host, pid, state, current job, heartbeat age, jobs
    done and failed, busy time, resident memory (MB), and whether it is alive (its
    heartbeat younger than `heartbeat_ms`)."""
    keys_ = sorted(k.decode() for k in conn.smembers(WORKERS_SET))
    with conn.pipeline(transaction=False) as pipe:
        for key in keys_:
            pipe.hgetall(key)
            pipe.smembers(f"{key}:executions")  # RQ 3 keeps the running job here: "<job id>:<execution id>"
        replies = pipe.execute()
    hashes, executions = replies[0::2], replies[1::2]
    now = datetime.now(timezone.utc)
    rows = []
    for key, raw, running in zip(keys_, hashes, executions):
        if not raw:
            continue  # expired: RQ drops it from the set on its next clean-up
        h = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
        beat = _parse(h.get("last_heartbeat"))
        born = _parse(h.get("birth"))
        age = int((now - beat).total_seconds() * 1000) if beat else None
        rows.append({
            "name": key.removeprefix("rq:worker:"), "host": h.get("hostname"),
            "pid": int(h["pid"]) if h.get("pid", "").isdigit() else None,
            "state": h.get("state", "?"), "currentJob": _current_job(running),
            "queues": [q for q in h.get("queues", "").split(",") if q],
            "heartbeatAgeMs": age, "alive": age is not None and age < heartbeat_ms,
            "jobsDone": int(h.get("successful_job_count") or 0), "jobsFailed": int(h.get("failed_job_count") or 0),
            "busySeconds": round(float(h.get("total_working_time") or 0), 1),
            "memoryMb": float(h[MEMORY_FIELD]) if h.get(MEMORY_FIELD) else None,
            "startedAt": born.isoformat().replace("+00:00", "Z") if born else None,
        })
    return rows


def _current_job(executions: set[bytes]) -> str | None:
    if not executions:
        return None
    return sorted(executions)[0].decode().rpartition(":")[0] or None


def _parse(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return utcparse(text)
    except ValueError:
        return None
