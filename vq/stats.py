"""`vq stats` and `vq perf`: figures from counters, registries and metric buckets only, so
they answer in the same time with ten jobs or a million (no scan of jobs anywhere)."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime

from redis import Redis

from vq import keys, limits, metrics, queues
from vq.config import Settings
from vq.jobtypes import get_job_type, job_types
from vq.model import iso

TOTALS = (
    "created",
    "started",
    "finished",
    "failed",
    "retried",
    "canceled",
    "cached",
    "stalled",
    "rateLimited",
    "removed",
)
TOP_USERS = 50


def _now_ms() -> int:
    return int(time.time() * 1000)


def _buckets(conn: Redis, kind: str, count: int) -> list[tuple[int, dict[str, Counter]]]:
    """The latest `count` buckets of a kind, oldest first, each (start ms, per-type counters)."""
    now = _now_ms()
    return metrics.read_buckets(conn, kind, now - (count - 1) * metrics.RESOLUTIONS[kind], now)


def _trend(buckets: list[tuple[int, dict[str, Counter]]], job_type: str | None) -> list[dict]:
    rows = []
    for start, by_type in buckets:
        total: Counter[str] = Counter()
        for name, counter in by_type.items():
            if job_type is None or name == job_type:
                total.update(counter)
        rows.append(
            {
                "from": iso(datetime.fromtimestamp(start / 1000, UTC)),
                **{k: total[k] for k in ("created", "finished", "failed")},
            }
        )
    return rows


def stats(conn: Redis, settings: Settings, job_type: str | None = None) -> dict:
    """Totals by type and status (all time, and now), per-user figures, the priority
    distribution, and trends per hour (24 h) and per day (14 days). An unknown job_type is
    NotFound (exit 4, as `vq jobs --type`), not an empty table that looks like no traffic."""
    if job_type is not None:
        get_job_type(settings, job_type)
    all_totals = metrics.totals(conn)
    now_rows = {row["jobType"]: row for row in queues.counts(conn, settings)}
    types = [t for t in job_types(settings) if job_type is None or t == job_type]
    by_type = []
    for name in types:
        counter = all_totals.get(name, Counter())
        now = now_rows[name]
        by_type.append(
            {
                "jobType": name,
                "totals": {k: counter[k] for k in TOTALS},
                "now": {
                    k: now[k]
                    for k in ("queued", "limited", "running", "scheduled", "deferred", "failed", "finished", "canceled")
                },
            }
        )
    by_status: Counter[str] = Counter()
    for row in by_type:
        by_status.update(row["now"])
    priorities = {}
    with conn.pipeline(transaction=False) as pipe:
        for priority in keys.PRIORITY_ORDER:
            for name in types:
                pipe.llen(f"rq:queue:{keys.queue_name(name, priority)}")
                pipe.zcard(keys.wait_since(name, priority))
        replies = iter(pipe.execute())
    for priority in keys.PRIORITY_ORDER:
        waiting = sum(next(replies) + next(replies) for _ in types)
        created = sum(all_totals.get(name, Counter())[f"priority|{priority}"] for name in types)
        priorities[priority] = {"created": created, "waiting": waiting}
    return {
        "byType": by_type,
        "byStatus": dict(by_status),
        "users": _users(conn, settings),
        "priorities": priorities,
        "trends": {
            "hourly": _trend(_buckets(conn, "h", 24), job_type),
            "daily": _trend(_buckets(conn, "d", 14), job_type),
        },
    }


def _users(conn: Redis, settings: Settings) -> list[dict]:
    """The most active users (by jobs created), with what they run now against their limit."""
    top = metrics.top_users(conn, TOP_USERS)
    now = _now_ms()
    in_force = limits.effective(conn, settings)
    with conn.pipeline(transaction=False) as pipe:
        for user, _ in top:
            pipe.zcount(keys.running_user(user), now, "+inf")
        running = pipe.execute()
    caps = limits.user_limits(conn, settings, [user for user, _ in top], in_force)
    return [
        {
            "userId": user,
            **{k: counter[k] for k in ("created", "finished", "failed", "canceled")},
            "running": run,
            "limit": cap,
        }
        for (user, counter), run, cap in zip(top, running, caps)
    ]


def perf_window_ms(text: str, field: str) -> int:
    """The window of `vq perf` / GET /api/jobs/performance: from a minute to as long as day
    buckets are kept (a longer one would read a bucket per day that cannot be there)."""
    from vq.durations import parse_duration_ms
    from vq.errors import InvalidInput

    window_ms = parse_duration_ms(text, field)
    longest_days = metrics.TTL_SECONDS["d"] // 86_400
    if not 60_000 <= window_ms <= longest_days * 86_400_000:
        raise InvalidInput(f"{field}: between 1m and {longest_days}d (how long daily figures are kept)", field=field)
    return window_ms


def _misses(c) -> dict:
    """Deadline misses (vq/deadlines.py): jobs expired unstarted, jobs finished after their
    deadline, and both per subscription tier."""
    tiers: dict[str, dict[str, int]] = {}
    for counter, n in c.items():
        kind, _, tier = counter.partition("|")
        if kind in ("expired", "late") and tier:
            tiers.setdefault(tier, {"expired": 0, "late": 0})[kind] += n
    return {"expired": c["expired"], "late": c["late"], "byTier": dict(sorted(tiers.items()))}


def perf(conn: Redis, settings: Settings, window_ms: int = 3_600_000, job_type: str | None = None) -> dict:
    """Per type over the window: processing and wait time (average, p50/p95/p99), queue
    utilization (busy time / (limit x window)), error rate and throughput per minute. An
    unknown job_type is NotFound, as for stats()."""
    if job_type is not None:
        get_job_type(settings, job_type)
    window = metrics.read_window(conn, window_ms)
    span_ms = max(1, min(window.end_ms, _now_ms()) - window.start_ms)  # the buckets' time so far
    minutes = span_ms / 60_000
    in_force = limits.effective(conn, settings)
    rows = []
    for name in job_types(settings):
        if job_type is not None and name != job_type:
            continue
        c = window.type(name)
        ended = c["finished"] + c["failed"]
        limit = limits.type_limit(conn, settings, name, in_force)
        rows.append(
            {
                "jobType": name,
                "started": c["started"],
                "finished": c["finished"],
                "failed": c["failed"],
                "retried": c["retried"],
                "throughputPerMin": round(c["finished"] / minutes, 3),
                "errorRate": round((c["failed"] + c["retried"]) / (ended + c["retried"]), 4)
                if ended + c["retried"]
                else 0.0,
                "avgRunMs": round(c["run_ms"] / c["ran"], 1) if c["ran"] else None,
                "p50RunMs": metrics.percentile(c, "run", 0.50),
                "p95RunMs": metrics.percentile(c, "run", 0.95),
                "p99RunMs": metrics.percentile(c, "run", 0.99),
                "avgWaitMs": round(c["wait_ms"] / c["started"], 1) if c["started"] else None,
                "p50WaitMs": metrics.percentile(c, "wait", 0.50),
                "p95WaitMs": metrics.percentile(c, "wait", 0.95),
                "p99WaitMs": metrics.percentile(c, "wait", 0.99),
                "utilization": round(min(1.0, c["run_ms"] / (limit * span_ms)), 4),
                "limit": limit,
                "deadlineMisses": _misses(c),
            }
        )
    return {
        "windowMs": window_ms,
        "from": iso(datetime.fromtimestamp(window.start_ms / 1000, UTC)),
        "to": iso(datetime.fromtimestamp(window.end_ms / 1000, UTC)),
        "types": rows,
    }
