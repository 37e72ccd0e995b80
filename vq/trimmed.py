"""Jobs Redis no longer has (trimmed by their retention, or expired), answered from the
history database: `vq show`, `vq result`, `vq progress`, `--tree` and the HTTP job routes
give the job as it ended, marked `"trimmed": true`, instead of `no such job`.

Only this path reads SQLite, and only after Redis had no such job: it first lets the
archiver catch up (a job removed with `vq rm` a moment ago must not come back as trimmed),
then reads the job's row, its dependencies and a planned parent's children.
"""

from __future__ import annotations

import logging

from redis import Redis

from vq.config import Settings
from vq.errors import HistoryElsewhere, HistoryUnavailable
from vq.model import history_view

log = logging.getLogger("vq.trimmed")
CATCH_UP_S = 5.0


def view(conn: Redis, settings: Settings | None, job_id: str) -> dict | None:
    """The job's JSON from this host's history database, or None when it has no row for it
    (or the job was removed: `vq rm` means gone)."""
    with Lookup(conn, settings) as lookup:
        return lookup.view(job_id)


class Lookup:
    """Several jobs' views from one opening of the database after one catch-up (a tree)."""

    def __init__(self, conn: Redis, settings: Settings | None):
        self.conn, self.settings = conn, settings
        self._db = None
        self._opened = False

    def __enter__(self) -> Lookup:
        return self

    def __exit__(self, *_exc) -> None:
        if self._db is not None:
            self._db.conn.close()

    def _database(self):
        if not self._opened:
            self._opened = True
            self._db = _db(self.conn, self.settings)
        return self._db

    def view(self, job_id: str) -> dict | None:
        db = self._database()
        if db is None:
            return None
        rows = list(db.query("SELECT * FROM render_jobs WHERE id = ?", [job_id]))
        if not rows or rows[0]["status"] == "removed":
            return None
        row = rows[0]
        deps = [
            (r["depends_on"], bool(r["allow_failure"]))
            for r in db.query(
                "SELECT depends_on, allow_failure FROM job_dependencies WHERE job_id = ? ORDER BY rowid", [job_id]
            )
        ]
        children = [
            r["id"] for r in db.query("SELECT id FROM render_jobs WHERE parent_id = ? ORDER BY rowid", [job_id])
        ]
        reason = None
        if row["status"] == "canceled":
            last = list(
                db.query(
                    "SELECT reason FROM job_history WHERE job_id = ? AND event = 'canceled' ORDER BY at DESC LIMIT 1",
                    [job_id],
                )
            )
            reason = last[0]["reason"] if last else None
        return history_view(
            row,
            depends_on=deps,
            children=children,
            max_attempts=_attempts(self.settings, row["job_type"]),
            cancel_reason=reason,
        )


def _db(conn: Redis, settings: Settings | None):
    if settings is None or not catch_up(conn, settings):
        return None
    from vq.history import db as historydb

    try:
        return historydb.open_db(settings, create=False)
    except HistoryUnavailable:
        return None  # a fallback: answered as for a job Redis no longer holds


def catch_up(conn: Redis, settings: Settings | None) -> bool:
    """Let the archiver write what the event stream holds (up to CATCH_UP_S); False when this
    host has no history database to read."""
    if settings is None:
        return False
    from vq.history import archiver
    from vq.history import db as historydb

    if not historydb.path_for(settings).exists():
        return False
    if settings.history.enabled:
        try:
            note = archiver.catch_up(conn, settings, CATCH_UP_S)
            if note:
                log.info("%s", note)
        except HistoryElsewhere:
            pass  # this host's file still holds what it archived
        except HistoryUnavailable as exc:
            log.info("%s", exc.message)
            return False
    return True


def _attempts(settings: Settings | None, job_type: str | None) -> int | None:
    from vq.errors import NotFound
    from vq.jobtypes import get_job_type

    try:
        return get_job_type(settings, job_type).attempts if settings and job_type else None
    except NotFound:
        return None
