"""Exemplars: for each job type and bucket of the run-time histogram, a recent attempt's trace
(docs/tracing.md), so a latency bucket in Prometheus links to a trace of a job that fell in it.

Written by workers with tracing on, at most once per type and bucket every `EVERY_S` per
process (a few commands a minute, whatever the rate of jobs); read by the OpenMetrics
exposition of /metrics (vq/prometheus.py), the only format that carries them.
"""

from __future__ import annotations

import time

from redis import Redis

from vq import keys, metrics
from vq.replies import text

EVERY_S = 5.0
KEEP_S = 86_400  # a type's exemplars go a day after its last one
_written: dict[tuple[str, int], float] = {}


def offer(conn: Redis, job_type: str, run_ms: float, trace_id: str, span_id: str) -> None:
    """Keep this attempt as its bucket's exemplar, unless this process kept one for that
    bucket in the last EVERY_S."""
    index = metrics.prom_bucket_of("run", run_ms)
    now = time.monotonic()
    if now - _written.get((job_type, index), float("-inf")) < EVERY_S:
        return
    _written[(job_type, index)] = now
    name = keys.exemplars(job_type)
    # Two plain commands, no pipeline: the worker's connection may be fencing its pipelines
    # (vq/fence.py) as a job ends; this is rare enough not to matter.
    conn.hset(name, str(index), f"{trace_id} {span_id} {run_ms / 1000!r} {time.time()!r}")
    conn.expire(name, KEEP_S)


def read(conn: Redis, job_types: list[str]) -> dict[str, dict[int, tuple[str, str, float, float]]]:
    """{job type: {bucket index: (trace id, span id, seconds, unix time)}}, one round trip."""
    with conn.pipeline(transaction=False) as pipe:
        for job_type in job_types:
            pipe.hgetall(keys.exemplars(job_type))
        replies = pipe.execute()
    out: dict[str, dict[int, tuple[str, str, float, float]]] = {}
    for job_type, reply in zip(job_types, replies):
        for field, value in reply.items():
            parts = text(value).split()
            if len(parts) == 4 and text(field).isdigit():
                try:
                    out.setdefault(job_type, {})[int(text(field))] = (
                        parts[0],
                        parts[1],
                        float(parts[2]),
                        float(parts[3]),
                    )
                except ValueError:
                    continue
    return out
