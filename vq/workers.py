"""Every worker process of every host, as RQ records it plus the memory vq's workers
report with their heartbeat: `vq workers`, GET /api/workers, health and the TUI."""

from __future__ import annotations

from datetime import UTC, datetime

from redis import Redis
from rq.job import Job
from rq.utils import utcparse

from vq import capacity, keys
from vq.replies import texts

WORKERS_SET = "rq:workers"  # RQ's registry of worker keys
MEMORY_FIELD = "vq_rss_mb"  # written by vq's worker with each heartbeat (vq/worker_memory.py)


def listing(conn: Redis, heartbeat_ms: int) -> list[dict]:
    """One row per registered worker: host, pid, state, current job, heartbeat age, jobs
    done and failed, busy time, resident memory (MB), whether it is alive (its heartbeat
    younger than `heartbeat_ms`), and its resources (vq/capacity.py: {capacity, devices,
    inUse}, or None: it has none; a worker process's threads show them on its main row)."""
    keys_ = sorted(texts(conn.smembers(WORKERS_SET)))
    with conn.pipeline(transaction=False) as pipe:
        for key in keys_:
            pipe.hgetall(key)
            pipe.smembers(f"{key}:executions")  # RQ 3 keeps the running job here: "<job id>:<execution id>"
        replies = pipe.execute()
    hashes, executions = replies[0::2], replies[1::2]
    now = datetime.now(UTC)
    running = _running_jobs_by_worker(conn, hashes)
    shares = capacity.live_workers(conn)  # the resources of those that have some: capacity, in use
    rows = []
    for key, raw, executing in zip(keys_, hashes, executions):
        if not raw:
            continue  # expired: RQ drops it from the set on its next clean-up
        h = {k.decode(): v.decode(errors="replace") for k, v in raw.items()}
        beat = _parse(h.get("last_heartbeat"))
        born = _parse(h.get("birth"))
        age = int((now - beat).total_seconds() * 1000) if beat else None
        rows.append(
            {
                "name": key.removeprefix("rq:worker:"),
                "host": h.get("hostname"),
                "pid": int(h["pid"]) if h.get("pid", "").isdigit() else None,
                "state": h.get("state", "?"),
                "currentJob": _current_job(executing) or running.get(key.removeprefix("rq:worker:")),
                "queues": [q for q in h.get("queues", "").split(",") if q],
                "heartbeatAgeMs": age,
                "alive": age is not None and age < heartbeat_ms,
                "jobsDone": int(h.get("successful_job_count") or 0),
                "jobsFailed": int(h.get("failed_job_count") or 0),
                "busySeconds": round(float(h.get("total_working_time") or 0), 1),
                "memoryMb": float(h[MEMORY_FIELD]) if h.get(MEMORY_FIELD) else None,
                "startedAt": born.isoformat().replace("+00:00", "Z") if born else None,
                "resources": shares.get(key.removeprefix("rq:worker:")),
            }
        )
    return rows


def hosts(rows: list[dict]) -> list[dict]:
    """Per host, from `listing`'s rows: its workers (alive / all) and its resources summed over
    its registered worker processes as `vq limits` sums them, {name: {"inUse", "capacity"}}
    (gpu in use counted in devices; {}: it has none). `vq workers` and the TUI show these."""
    out: dict[str, dict] = {}
    for row in rows:
        host = out.setdefault(
            row["host"] or "?", {"host": row["host"] or "?", "workers": 0, "alive": 0, "resources": {}}
        )
        host["workers"] += 1
        host["alive"] += 1 if row["alive"] else 0
        share = row.get("resources")
        if not share:
            continue
        for name, have in share["capacity"].items():
            used = share["inUse"].get(name, 0)
            total = host["resources"].setdefault(name, {"inUse": 0, "capacity": 0})
            total["inUse"] += len(used) if isinstance(used, list) else used
            total["capacity"] += have
    return [out[name] for name in sorted(out)]


def resources_text(resources: dict) -> str:
    """A host's resources from `hosts` as `gpu 1/2 vram 24/80` (in use / has)."""
    return capacity.usage_text(
        {name: r["capacity"] for name, r in resources.items()}, {name: r["inUse"] for name, r in resources.items()}
    )


def _running_jobs_by_worker(conn: Redis, hashes: list[dict]) -> dict[str, str]:
    """worker name -> the job it runs, for jobs vq's admission started: those have no RQ
    execution records (vq/lua/admit_start.lua); their live concurrency leases name them, and
    each job's hash names its worker."""
    types = {
        keys.split_queue_name(q)[0]
        for raw in hashes
        if raw and raw.get(b"state") == b"busy"
        for q in raw.get(b"queues", b"").decode().split(",")
        if q
    }
    if not types:
        return {}
    now_ms = int(datetime.now(UTC).timestamp() * 1000)
    with conn.pipeline(transaction=False) as pipe:
        for job_type in sorted(types):
            pipe.zrangebyscore(keys.running_type(job_type), now_ms, "+inf")
        ids = sorted({i.decode() for reply in pipe.execute() for i in reply})
    with conn.pipeline(transaction=False) as pipe:
        for job_id in ids:
            pipe.hmget(Job.key_for(job_id), "worker_name", "status")
        replies = pipe.execute()
    return {
        worker.decode(): job_id for job_id, (worker, status) in zip(ids, replies) if worker and status == b"started"
    }


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
