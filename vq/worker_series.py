"""Per-worker series for Prometheus: each worker's busy time and its jobs by outcome, as
all-time counters in Redis (`vq:metrics:workers`). The archiver folds them from the end
events, which name their worker, with the rest of the metrics: workers pay nothing more.

A worker is labelled by its host and its place in its daemon (`3`, or `3.video.1` for a
helper thread of a type with `concurrencyPerWorker`), never by its pid: a replaced process
carries on its predecessor's counters, and the series are bounded by config (the daemon's
worker count or `autoscale.max` per host, times each type's threads). Workers with no job
ended for `daemon.workerSeriesTtl` are dropped by the archiver's hourly prune, so a host
that went away, or a worker autoscaling retired, leaves no series behind for ever.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable

from redis import Redis

from vq import keys
from vq.replies import members, text_hash

# vq.<host>.<slot>.<pid>, and .<type>.<n> for a helper thread (vq/daemon_children.py, vq/worker_threads.py)
NAME = re.compile(r"vq\.(?P<host>[^|]+)\.(?P<slot>\d+)\.\d+(?:\.(?P<thread>[a-z][a-z0-9-]*\.\d+))?")
# The counted event (vq/metrics.py COUNTED) -> the outcome label
OUTCOMES = {"finished": "finished", "failed": "failed", "retried": "retried", "canceled": "canceled"}


def labels_of(name: object) -> tuple[str, str] | None:
    """(host, worker) of a worker's RQ name; None for a name vq's daemon does not give."""
    found = NAME.fullmatch(name) if isinstance(name, str) else None
    if found is None:
        return None
    return found["host"], found["slot"] + (f".{found['thread']}" if found["thread"] else "")


def fold_into(counter: Callable[[str], Counter], name: str, fields: dict, ts_ms: int) -> None:
    """Add one counted event's share: an attempt a worker ended (an operator's retry or a
    cancel of a waiting job names no worker and adds nothing)."""
    outcome = OUTCOMES.get(name)
    labels = labels_of(fields.get("worker")) if outcome else None
    if labels is None:
        return
    series = "|".join(labels)
    target = counter(keys.METRICS_WORKERS)
    target[f"{series}|{outcome}"] += 1
    if fields.get("durationMs") is not None:
        target[f"{series}|busy_ms"] += int(fields["durationMs"])
    seen = counter(keys.METRICS_WORKERS_SEEN)
    seen[series] = max(seen[series], ts_ms)


def read(conn: Redis) -> dict[tuple[str, str], Counter]:
    """{(host, worker): Counter(busy_ms, finished, failed, retried, canceled)}."""
    out: dict[tuple[str, str], Counter] = {}
    for raw, n in text_hash(conn.hgetall(keys.METRICS_WORKERS)).items():
        host, _, rest = raw.partition("|")
        worker, _, name = rest.rpartition("|")
        out.setdefault((host, worker), Counter())[name] += int(n)
    return out


def prune(conn: Redis, idle_before_ms: int) -> int:
    """Drop the series of workers with no job ended since `idle_before_ms`. Returns how many."""
    idle = members(conn.zrangebyscore(keys.METRICS_WORKERS_SEEN, "-inf", idle_before_ms))
    if not idle:
        return 0
    with conn.pipeline() as pipe:
        pipe.hdel(keys.METRICS_WORKERS, *[f"{s}|{n}" for s in idle for n in ("busy_ms", *OUTCOMES.values())])
        pipe.zrem(keys.METRICS_WORKERS_SEEN, *idle)
        pipe.execute()
    return len(idle)
