"""The history database: one SQLite file (sqlite-utils) under the data directory.

The spec's tables: render_jobs (one row per job), job_history (every status change),
job_dependencies, recurring_jobs, job_performance_metrics (daily aggregates per type).
Only the archiver writes the job tables; recurring_jobs is a copy of Redis's definitions.
"""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING

from vq import job_log_store
from vq.config import Settings
from vq.history import search
from vq.private import private_file

if TYPE_CHECKING:  # sqlite_utils imports click (for its own CLI): loaded only when a database is opened
    import sqlite_utils

RECURRING_COLUMNS = {
    "id": str,
    "name": str,
    "job_type": str,
    "cron_expression": str,
    "timezone": str,
    "data": str,
    "user_id": str,
    "project_id": str,
    "priority": str,
    "user_subscription": str,
    "options": str,
    "catch_up": str,
    "paused": int,
    "privileged": int,
    "created_at": str,
    "updated_at": str,
    "next_run_at": str,
    "last_run_at": str,
    "last_job_id": str,
    "last_error": str,
    "run_count": int,
    "success_count": int,
    "failure_count": int,
    "cancel_count": int,
    "missed_count": int,
    "removed_at": str,
}


def path_for(settings: Settings) -> Path:
    return Path(settings.history.path).expanduser() if settings.history.path else settings.data_path / "history.db"


def setting_for(settings: Settings) -> str:
    """The setting that names the history file, for a line telling an operator where to look."""
    if settings.history.path:
        return "history.path"
    return "data_dir (or VQ_DATA_DIR): the file is <data_dir>/history.db unless history.path names another"


def problem(settings: Settings, exc: BaseException) -> str:
    """One line: which file cannot be used, why, and the setting that names it."""
    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    if isinstance(exc, OSError) and exc.strerror:
        reason = exc.strerror
    return f"history database {path_for(settings)} cannot be used: {reason} (set by {setting_for(settings)})"


def unusable(exc: BaseException) -> bool:
    """An error of the file itself (open, read or write), as against a bug (a misused
    connection, a broken constraint): SQLite's operational errors ("unable to open", "disk
    is full", "disk I/O error"), "file is not a database", and the OS's (a folder where the
    file should be, a path under a file)."""
    import sqlite3

    return isinstance(exc, (sqlite3.OperationalError, OSError)) or type(exc) is sqlite3.DatabaseError


def open_db(settings: Settings, create: bool = True) -> sqlite_utils.Database:
    """Open (creating when needed) with WAL so readers never block the writer. A file that
    cannot be opened raises HistoryUnavailable with one line naming it and its setting."""
    import sqlite_utils

    from vq.errors import HistoryUnavailable, NotFound

    target = path_for(settings)
    try:
        target.stat()
    except FileNotFoundError:
        pass
    except OSError as exc:  # a path under a file (ENOTDIR): not "no database yet"
        raise HistoryUnavailable(problem(settings, exc)) from None
    if not create and not target.exists():
        raise NotFound(f"no history database at {target} (a `vq daemon` on this host writes it; see history.enabled)")
    db = None
    try:
        private_file(target)  # 0600 before SQLite opens it: its -wal and -shm take its mode
        db = sqlite_utils.Database(target)
        db.execute("PRAGMA busy_timeout=5000")  # first: two daemons may open a new file at once
        _with_retry(lambda: db.execute("PRAGMA journal_mode=WAL"))
        if db.execute("PRAGMA user_version").fetchone()[0] < SCHEMA_VERSION:  # new, or made by an older vq
            _with_retry(lambda: _in_write_transaction(db, ensure_schema))
        if search.missing_indexes(db, settings.history.indexedFields):  # history.indexedFields changed
            _with_retry(
                lambda: _in_write_transaction(db, lambda d: search.ensure_indexes(d, settings.history.indexedFields))
            )
    except Exception as exc:
        if db is not None:
            db.conn.close()
        if unusable(exc):
            raise HistoryUnavailable(problem(settings, exc)) from None
        raise
    return db


def _in_write_transaction(db, change) -> None:
    """`change(db)` holding the write lock from the start (BEGIN IMMEDIATE waits for it), so
    two processes creating the schema at once take turns instead of failing mid-way."""
    db.conn.execute("BEGIN IMMEDIATE")
    try:
        change(db)
    except BaseException:
        db.conn.execute("ROLLBACK")
        raise
    db.conn.execute("COMMIT")


def _with_retry(step, attempts: int = 40) -> None:
    """SQLite answers "locked" at once (not after busy_timeout) in a few races, such as two
    connections switching a new file to WAL together: try again shortly."""
    for attempt in range(attempts):
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 + random.random() * 0.1)


RENDER_JOBS_COLUMNS = {
    "id": str,
    "job_type": str,
    "user_id": str,
    "project_id": str,
    "priority": str,
    "subscription": str,
    "queue": str,
    "status": str,
    "created_at": str,
    "started_at": str,
    "finished_at": str,
    "updated_at": str,
    "attempts": int,
    "wait_ms": int,
    "run_ms": int,
    "error_category": str,
    "error_message": str,
    "parent_id": str,
    "step": str,
    "recurring_id": str,
    "cached": int,
    "worker": str,
    "provider": str,
    "cost_micros": int,  # the provider that served it, its cost in millionths (vq/costs.py)
    "result": str,  # a finished job's result as JSON (history.maxResultBytes): answers once Redis no longer has it
    "data": str,  # the job's data as JSON, sealed (history.maxDataBytes): what `--where data.X` reads (search.py)
}
SCHEMA_VERSION = 3  # PRAGMA user_version of a complete schema; 2: render_jobs.result, the parent_id index; 3: data
DAILY_COST_COLUMNS = {"day": str, "kind": str, "name": str, "amount_micros": int}  # kind: user|project|provider|calls
JOB_HISTORY_COLUMNS = {
    "event_id": str,
    "job_id": str,
    "job_type": str,
    "from_status": str,
    "to_status": str,
    "event": str,
    "at": str,
    "worker": str,
    "attempt": int,
    "reason": str,
}
AUDIT_COLUMNS = {
    "event_id": str,
    "at": str,
    "actor": str,
    "role": str,
    "action": str,
    "job_type": str,
    "target": str,
    "detail": str,
}
DEPENDENCY_COLUMNS = {"job_id": str, "depends_on": str, "allow_failure": int}
PERFORMANCE_COLUMNS = {
    "day": str,
    "job_type": str,
    "created": int,
    "started": int,
    "finished": int,
    "failed": int,
    "retried": int,
    "canceled": int,
    "stalled": int,
    "avg_run_ms": float,
    "p50_run_ms": float,
    "p95_run_ms": float,
    "p99_run_ms": float,
    "avg_wait_ms": float,
    "p50_wait_ms": float,
    "p95_wait_ms": float,
    "p99_wait_ms": float,
}


def ensure_schema(db: sqlite_utils.Database) -> None:
    """Create what is missing (tables, columns, indexes; an older file gains the columns it
    lacks, sqlite-utils' add-column); existing data is never touched."""
    recurring = db.table("recurring_jobs")
    recurring.create(
        RECURRING_COLUMNS, pk="id", not_null={"job_type", "cron_expression", "timezone"}, if_not_exists=True
    )
    recurring.create_index(["user_id"], if_not_exists=True)
    jobs = db.table("render_jobs")
    jobs.create(RENDER_JOBS_COLUMNS, pk="id", if_not_exists=True)
    for column, kind in RENDER_JOBS_COLUMNS.items():  # a database made by an older vq
        if column not in jobs.columns_dict:
            jobs.add_column(column, kind)
    for columns in (
        ["user_id", "created_at"],
        ["job_type", "created_at"],
        ["status", "updated_at"],
        ["created_at"],
        ["recurring_id"],
        ["project_id", "created_at"],  # --where projectId=..., status=... newest first (vq/history/search.py)
        ["status", "created_at"],
    ):
        jobs.create_index(columns, if_not_exists=True)
    # A planned parent's children (a trimmed job's view): only child rows carry a parent_id.
    db.execute(
        "CREATE INDEX IF NOT EXISTS idx_render_jobs_parent_id ON render_jobs (parent_id) WHERE parent_id IS NOT NULL"
    )
    history = db.table("job_history")
    history.create(JOB_HISTORY_COLUMNS, pk="event_id", if_not_exists=True)
    history.create_index(["job_id", "event_id"], if_not_exists=True)
    history.create_index(["at"], if_not_exists=True)
    dependencies = db.table("job_dependencies")
    dependencies.create(DEPENDENCY_COLUMNS, pk=("job_id", "depends_on"), if_not_exists=True)
    dependencies.create_index(["depends_on"], if_not_exists=True)
    performance = db.table("job_performance_metrics")
    performance.create(PERFORMANCE_COLUMNS, pk=("day", "job_type"), if_not_exists=True)
    audit = db.table("audit_log")
    audit.create(AUDIT_COLUMNS, pk="event_id", if_not_exists=True)
    audit.create_index(["actor", "at"], if_not_exists=True)
    audit.create_index(["at"], if_not_exists=True)
    state = db.table("archiver_state")
    state.create({"name": str, "value": str}, pk="name", if_not_exists=True)
    db.table("daily_costs").create(DAILY_COST_COLUMNS, pk=("day", "kind", "name"), if_not_exists=True)
    job_log_store.ensure_table(db)  # the lines jobs logged (vq/job_log_store.py)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
