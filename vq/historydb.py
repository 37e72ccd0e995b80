"""The history database: one SQLite file (sqlite-utils) under the data directory.

It holds what must outlive Redis's working set: recurring definitions and their statistics
now; the job archive and metrics tables join it as the archiver fills them.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from vq.config import Settings

if TYPE_CHECKING:  # sqlite_utils imports click (for its own CLI): loaded only when a database is opened
    import sqlite_utils

RECURRING_COLUMNS = {
    "id": str, "name": str, "job_type": str, "cron_expression": str, "timezone": str, "data": str,
    "user_id": str, "project_id": str, "priority": str, "user_subscription": str, "options": str,
    "catch_up": str, "paused": int, "privileged": int, "created_at": str, "updated_at": str,
    "next_run_at": str, "last_run_at": str, "last_job_id": str, "last_error": str,
    "run_count": int, "success_count": int, "failure_count": int, "cancel_count": int, "missed_count": int,
    "removed_at": str,
}


def path_for(settings: Settings) -> Path:
    return settings.data_path / "history.db"


def open_db(settings: Settings) -> "sqlite_utils.Database":
    """Open (creating when needed) with WAL so readers never block the writer."""
    import sqlite_utils

    target = path_for(settings)
    target.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite_utils.Database(target)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=5000")
    ensure_schema(db)
    return db


def ensure_schema(db: "sqlite_utils.Database") -> None:
    recurring = db["recurring_jobs"]
    if not recurring.exists():
        recurring.create(RECURRING_COLUMNS, pk="id", not_null={"job_type", "cron_expression", "timezone"})
        recurring.create_index(["user_id"], if_not_exists=True)
