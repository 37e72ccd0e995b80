"""The job handler of the chaos run (scripts/chaos/run.py), loaded by `vq daemon` as
`chaos_handlers:work`.

Each execution is recorded *before* the work starts (RPUSH of the job id to the Redis list
`chaos:executions`, on the Redis named by $CHAOS_REDIS_URL), so a run that a SIGKILL cuts
short still counts: run.py compares executions with jobs to show at-least-once delivery.
"""

from __future__ import annotations

import os
import random
import time

import redis

EXECUTIONS = "chaos:executions"
STEPS = 3
_conn: redis.Redis | None = None


def _redis() -> redis.Redis:
    global _conn
    if _conn is None:  # one per worker process, made after the daemon forked it
        _conn = redis.Redis.from_url(os.environ["CHAOS_REDIS_URL"], socket_timeout=5)
    return _conn


def work(ctx, data):
    _redis().rpush(EXECUTIONS, ctx.job_id)
    seconds = random.uniform(0.05, 0.3)
    for step in range(1, STEPS + 1):
        time.sleep(seconds / STEPS)
        ctx.progress(step * 100 / STEPS, f"step {step}/{STEPS}")
    return {"n": data.get("n"), "slept": round(seconds, 3), "pid": os.getpid()}
