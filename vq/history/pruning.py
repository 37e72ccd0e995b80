"""What the archiver drops once an hour: history older than history.retentionDays (job rows,
transitions, audit entries, logs), the counters of users idle as long and old worker
series; the daily aggregates stay."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from redis import Redis

from vq import job_log_store, metrics, worker_series
from vq.config import Settings
from vq.history import rows as archive_rows
from vq.history import search

if TYPE_CHECKING:
    from sqlite_utils import Database


def prune(conn: Redis, db: Database, settings: Settings) -> int:
    """Drop job rows and transitions older than the retention, and the counters of users idle
    as long; aggregates stay. Returns how many transitions went."""
    cutoff = archive_rows.iso(int(time.time() * 1000) - settings.history.retentionDays * 86_400_000)
    with db.conn:
        removed = db.conn.execute("DELETE FROM job_history WHERE at < ?", (cutoff,)).rowcount
        db.conn.execute("DELETE FROM audit_log WHERE at < ?", (cutoff,))
        db.conn.execute("DELETE FROM render_jobs WHERE updated_at < ?", (cutoff,))
        db.conn.execute("DELETE FROM job_dependencies WHERE job_id NOT IN (SELECT id FROM render_jobs)")
        job_log_store.prune(db, time.time() - settings.history.retentionDays * 86_400)
        search.refresh_statistics(db)  # --where picks its index by these (vq/history/search.py)
    now_ms = int(time.time() * 1000)
    metrics.prune_users(conn, now_ms - settings.history.retentionDays * 86_400_000)
    worker_series.prune(conn, now_ms - settings.daemon.workerSeriesTtl)
    return removed
