"""The daily aggregates the archiver writes every minute: job_performance_metrics (counts,
run and wait times with their percentiles) and the day's spend, for today and yesterday,
from the metric day buckets in Redis (vq/metrics.py) into the history database."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from redis import Redis

from vq import costs, metrics

if TYPE_CHECKING:
    from sqlite_utils import Database


def aggregate(conn: Redis, db: Database) -> None:
    """job_performance_metrics for today and yesterday, from the day buckets in Redis."""
    now = int(time.time() * 1000)
    rows = []
    for day_start in (now - 86_400_000, now):
        day = datetime.fromtimestamp(day_start / 1000, UTC).date().isoformat()
        for job_type, c in metrics.read_bucket(conn, "d", day_start).items():
            ran, started = c["ran"], c["started"]
            rows.append(
                {
                    "day": day,
                    "job_type": job_type,
                    "created": c["created"],
                    "started": started,
                    "finished": c["finished"],
                    "failed": c["failed"],
                    "retried": c["retried"],
                    "canceled": c["canceled"],
                    "stalled": c["stalled"],
                    "avg_run_ms": c["run_ms"] / ran if ran else None,
                    "p50_run_ms": metrics.percentile(c, "run", 0.50),
                    "p95_run_ms": metrics.percentile(c, "run", 0.95),
                    "p99_run_ms": metrics.percentile(c, "run", 0.99),
                    "avg_wait_ms": c["wait_ms"] / started if started else None,
                    "p50_wait_ms": metrics.percentile(c, "wait", 0.50),
                    "p95_wait_ms": metrics.percentile(c, "wait", 0.95),
                    "p99_wait_ms": metrics.percentile(c, "wait", 0.99),
                }
            )
    if rows:
        with db.conn:
            db.table("job_performance_metrics").upsert_all(rows, pk=("day", "job_type"))
    costs.copy_days(
        conn, db, [datetime.fromtimestamp(ms / 1000, UTC).date().isoformat() for ms in (now - 86_400_000, now)]
    )
