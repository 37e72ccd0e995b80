"""What the live dashboard (`vq tui`) shows, read in a bounded number of Redis round trips
whatever the number of jobs: counters, registry sizes, the worker list, a few recent
metric buckets and the first recurring definitions. The TUI is an adapter over this and
over the same service functions the CLI calls for its actions."""

from __future__ import annotations

import time
from collections import Counter

from redis import Redis

from vq import admission, health, limits, metrics, queues, workers
from vq.config import Settings
from vq.providers import stats as provider_stats
from vq.recurring import definitions as recurring

DASHBOARD_PROVIDER_WINDOW_MS = 15 * 60_000

SPARK_MINUTES = 30  # the sparklines' width, one point per minute
SERIES = ("finished", "failed", "created")  # the counters kept per minute that the overview charts
RATE_MINUTES = 5  # rates (jobs a minute) are over the last this many minutes, the current one so far
RECURRING_SHOWN = 20
WAITING_SHOWN = 20  # a user's waiting jobs shown, each with its reason (a dozen reads each)


def overview(conn: Redis, settings: Settings) -> dict:
    """Overall health, one row per job type, workers and their hosts (resources in use),
    breakers and recurring jobs."""
    counts = queues.counts(conn, settings)
    breakers = provider_stats.overview(conn, settings, DASHBOARD_PROVIDER_WINDOW_MS)  # breaker state and figures
    report = health.check(conn, settings, counts=counts, breakers=breakers)
    if report["status"] == "error":
        _raise_unreachable(report)
    health_of = {row["jobType"]: row for row in report["queues"]}
    spark = minute_series(conn, [row["jobType"] for row in counts])
    rows = []
    for row in counts:
        checked = health_of.get(row["jobType"], {})
        rows.append(
            {
                **row,
                "health": checked.get("status", "healthy"),
                "reasons": checked.get("reasons", []),
                **spark[row["jobType"]],
            }
        )
    return {
        "status": report["status"],
        "reasons": report["reasons"],
        "checkedAt": report["checkedAt"],
        "redis": report["redis"],
        "queues": rows,
        "workers": report["workers"]["list"],
        "hosts": workers.hosts(report["workers"]["list"]),
        "breakers": breakers,
        "recurring": upcoming_recurring(conn),
    }


def _raise_unreachable(report: dict) -> None:
    """health.check turns a lost Redis into a report; the dashboard wants it raised (its banner)."""
    import redis

    raise redis.ConnectionError(report["reasons"][0] if report["reasons"] else "Redis unreachable")


def minute_series(conn: Redis, job_types: list[str], minutes: int = SPARK_MINUTES) -> dict[str, dict]:
    """Per type, from the archiver's minute buckets (vq/metrics.py; one round trip whatever
    the number of jobs): jobs finished, failed and created in each of the last `minutes`,
    oldest first (the last is the current minute so far); `throughput`, those ended
    (finished or failed: the TUI's sparkline); and the rates per minute over the last
    RATE_MINUTES (`rates`: finished, failed, created). The buckets count events once the
    archiver has read them, a moment after they happen."""
    now = int(time.time() * 1000)
    buckets = metrics.read_buckets(conn, "m", now - (minutes - 1) * 60_000, now)
    span = (min(RATE_MINUTES, len(buckets)) - 1) + (now % 60_000) / 60_000  # the current minute counts as far as it got
    out: dict[str, dict] = {}
    for name in job_types:
        per = {field: [b.get(name, Counter())[field] for _start, b in buckets] for field in SERIES}
        out[name] = {
            "series": per,
            "throughput": [done + failed for done, failed in zip(per["finished"], per["failed"])],
            "rates": {
                field: round(sum(values[-RATE_MINUTES:]) / max(span, 1 / 60), 1) for field, values in per.items()
            },
        }
    return out


def upcoming_recurring(conn: Redis, most: int = RECURRING_SHOWN) -> list[dict]:
    """Recurring definitions, soonest first: id, name, type, cron, time zone, next run."""
    rows = []
    for definition in recurring.list_all(conn):
        due = recurring.next_run_ms(conn, definition)
        rows.append(
            {
                "id": definition.id,
                "name": definition.name,
                "jobType": definition.jobType,
                "cronExpression": definition.cronExpression,
                "tz": definition.tz,
                "paused": definition.paused,
                "nextRunMs": None if definition.paused else due,
            }
        )
    rows.sort(key=lambda r: (r["nextRunMs"] is None, r["nextRunMs"] or 0))
    return rows[:most]


def user_view(conn: Redis, settings: Settings, user_id: str) -> dict:
    """A user's running jobs against their concurrency limit, their weight (starts per turn),
    and the jobs waiting in their lines (the first WAITING_SHOWN, each with why it waits, as
    `vq show` says it; and how many wait in all)."""
    from vq import job_lists, jobs
    from vq.errors import NotFound
    from vq.jobtypes import job_types

    running = job_lists.list_jobs(conn, user=user_id, status="started", limit=100)
    ids, waiting_count = admission.user_lines(conn, list(job_types(settings)), user_id, WAITING_SHOWN)
    waiting = []
    for job_id in ids:
        try:
            waiting.append(jobs.show(conn, job_id, settings))
        except NotFound:
            continue  # admitted, canceled or removed since the lines were read
    return {
        "userId": user_id,
        "limit": limits.user_limit(conn, settings, user_id),
        "weight": limits.user_weights(conn, settings, [user_id])[0],
        "running": running,
        "waiting": waiting,
        "waitingCount": waiting_count,
    }
