"""The job handler of the chaos run (scripts/chaos/run.py), loaded by `vq daemon` as
`chaos_handlers:work`.

Each execution is recorded *before* the work starts (RPUSH of the job id to the Redis list
`chaos:executions`, on the Redis named by $CHAOS_REDIS_URL), so a run that a SIGKILL cuts
short still counts: run.py compares executions with jobs to show at-least-once delivery.
Besides, the handler stamps its start, its progress and its end into the file named by
$CHAOS_STAMPS (stamps.py), which the run reads to tell how many jobs really ran at once:
those records go through no Redis, which a fault may pause.
"""

from __future__ import annotations

import os
import random
import time

import redis
from stamps import stamp

EXECUTIONS = "chaos:executions"
STEPS = 3
_conn: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _conn
    if _conn is None:  # one per worker process, made after the daemon forked it
        _conn = redis.Redis.from_url(os.environ["CHAOS_REDIS_URL"], socket_timeout=5)
    return _conn


def work(ctx, data):
    path = os.environ["CHAOS_STAMPS"]
    stamp(path, "start", ctx.job_id, ctx.job_type, ctx.user_id)
    try:
        _redis().rpush(EXECUTIONS, ctx.job_id)
        seconds = random.uniform(0.05, 0.3) * float(data.get("scale", 1.0))
        for step in range(1, STEPS + 1):
            end = time.time() + seconds / STEPS
            while time.time() < end:
                time.sleep(0.05)
                stamp(path, "tick", ctx.job_id, ctx.job_type, ctx.user_id)
            ctx.progress(step * 100 / STEPS, f"step {step}/{STEPS}")
    finally:
        stamp(path, "end", ctx.job_id, ctx.job_type, ctx.user_id)
    return {"n": data.get("n"), "slept": round(seconds, 3), "pid": os.getpid()}
