"""Reading the history database: a job's timeline, a user's jobs, exports.

Before answering, `fresh()` lets the archiver catch up with the event stream (a second at
most when a daemon's archiver runs), so what was just done is already there. The answers
come from SQLite alone: with Redis down they are given as the file holds them.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from redis import ConnectionError as RedisConnectionError
from redis import Redis
from redis import TimeoutError as RedisTimeoutError

from vq import job_ids
from vq.config import Settings
from vq.durations import looks_like_duration, parse_duration_ms, parse_instant
from vq.errors import HistoryElsewhere, HistoryUnavailable, InvalidInput, NotFound
from vq.history import archiver, search
from vq.history import db as historydb
from vq.jobdata import LIST_RESULT_BYTES
from vq.model import iso

EXPORT_FORMATS = ("csv", "json")
JOB_COLUMNS = [c for c in historydb.RENDER_JOBS_COLUMNS if c != "data"]  # the data copy is for search only
SHOWN = ", ".join(JOB_COLUMNS)


def fresh(
    conn: Redis | None, settings: Settings, timeout: float = 5.0, strict: bool = False, unreachable: str | None = None
):
    """(database, note): the database once every event emitted so far is archived; the note
    (None when all is there) says why the latest events may be missing. When history goes to
    another host's file, `strict` raises HistoryElsewhere (the API: an answer from here
    would be wrong); otherwise the note says where it is and this host's file is read.

    The history is SQLite: without Redis (`conn` None, `unreachable` saying why, or Redis
    lost during the catch-up) the file is read as it is, with a note."""
    note: str | None
    if not settings.history.enabled:
        note = "history.enabled is false here: the history may miss the latest events"
    elif conn is None:
        note = f"{unreachable or 'Redis is unreachable'}: the history may miss the latest events"
    else:
        try:
            note = archiver.catch_up(conn, settings, timeout)
        except HistoryElsewhere as exc:
            if strict:
                raise
            note = exc.message
        except HistoryUnavailable as exc:  # still readable (a full disk)? then the file as it is, with a note
            note = f"{exc.message}: the history may miss the latest events"
        except (RedisConnectionError, RedisTimeoutError) as exc:
            note = f"lost Redis while the archiver caught up ({exc}): the history may miss the latest events"
    return historydb.open_db(settings, create=False), note


def since_to_iso(text: str | None) -> str | None:
    """'7d' (ago) or an ISO time -> the ISO text the tables store."""
    if not text:
        return None
    try:
        ms = parse_duration_ms(text, "--since")
    except InvalidInput as exc:
        if looks_like_duration(text):
            raise InvalidInput(exc.message, field="since") from None
        try:
            return iso(parse_instant(text, "--since"))
        except InvalidInput:
            raise InvalidInput(
                f"--since: {text!r} is neither a duration (7d, 12h) nor an ISO 8601 time", field="since"
            ) from None
    return iso(datetime.now(UTC) - timedelta(milliseconds=ms))


def timeline(db, job_id: str) -> dict:
    """A job's row and every status change it went through, oldest first; `job_id` may be a
    unique prefix of 8 or more characters (vq/job_ids.py)."""
    rows = list(db.query(f"SELECT {SHOWN} FROM render_jobs WHERE id = ?", [job_id]))
    if not rows and len(job_id) >= job_ids.MIN_PREFIX:
        matches = job_ids.prefix_rows(db, job_id, removed=True)
        if len(matches) > 1:
            raise job_ids.ambiguous(job_id, [m.id for m in matches])
        if matches:
            job_id = matches[0].id
            rows = list(db.query(f"SELECT {SHOWN} FROM render_jobs WHERE id = ?", [job_id]))
    if not rows:
        raise NotFound(
            f"no history for job {job_id!r}"
            + (
                f" (an id prefix needs at least {job_ids.MIN_PREFIX} characters)"
                if len(job_id) < job_ids.MIN_PREFIX
                else ""
            )
        )
    steps = list(
        db.query(
            "SELECT event_id, at, event, from_status, to_status, worker, attempt, reason "
            "FROM job_history WHERE job_id = ? ORDER BY event_id",
            [job_id],
        )
    )
    steps.sort(key=lambda r: tuple(int(p) for p in r["event_id"].split("-")))
    return {
        "job": rows[0],
        "transitions": [{k: v for k, v in r.items() if k != "event_id"} for r in steps],
        "dependsOn": [
            r["depends_on"] for r in db.query("SELECT depends_on FROM job_dependencies WHERE job_id = ?", [job_id])
        ],
    }


def _where(equal: dict[str, str | None], since: str | None, since_column: str) -> tuple[str, list]:
    """A parameterized WHERE clause: columns equal to the values given, and `since`."""
    clauses, params = [], []
    for column, value in equal.items():
        if value:
            clauses.append(f"{column} = ?")
            params.append(value)
    since_iso = since_to_iso(since)
    if since_iso:
        clauses.append(f"{since_column} >= ?")
        params.append(since_iso)
    return (" WHERE " + " AND ".join(clauses)) if clauses else "", params


@dataclass(frozen=True)
class JobFilter:
    """Which jobs of the history a listing, a count or an export takes: named once, so `jobs`,
    `count` and `export` build the same WHERE clause from it. `where`: FIELD OP VALUE terms, data
    fields among `indexed` (history.indexedFields; vq/history/search.py)."""

    user: str | None = None
    since: str | None = None
    job_type: str | None = None
    status: str | None = None
    where: list[str] | None = None
    indexed: list[str] | None = None

    def sql(self) -> tuple[str, list]:
        """The WHERE clause of the named filters and the `--where` terms, and its parameters."""
        sql, params = _where(
            {"user_id": self.user, "job_type": self.job_type, "status": self.status}, self.since, "created_at"
        )
        if self.where:
            conditions, values = search.clauses(self.where, self.indexed or [])
            sql = (sql + " AND " if sql else " WHERE ") + " AND ".join(conditions)
            params += values
        return sql, params


def _filter_of(match: JobFilter | None, fields: dict[str, Any]) -> JobFilter:
    """`match`, or one made of the filter's fields given as keywords (callers written before
    JobFilter, as scripts/bench/history_search.py: `jobs(db, where=..., indexed=...)`)."""
    if match is not None and fields:
        raise TypeError("give a JobFilter or its fields as keywords, not both")
    return match if match is not None else JobFilter(**fields)


MAX_OFFSET = 1_000_000_000  # rows to skip: past any history, and within SQLite's integers


def jobs(db, match: JobFilter | None = None, *, limit: int = 50, offset: int = 0, **fields: Any) -> list[dict]:
    """Jobs newest first (spec: user job history), those `match` takes (or the JobFilter of
    `fields`). The data copy is not shown."""
    match = _filter_of(match, fields)
    sql, params = match.sql()
    page = f"SELECT {SHOWN} FROM render_jobs{sql} ORDER BY created_at DESC, id LIMIT ? OFFSET ?"
    if match.where:  # the page's rows picked from the index alone, then read: not every match read to be sorted
        page = (
            f"SELECT {SHOWN} FROM render_jobs WHERE rowid IN (SELECT rowid FROM render_jobs{sql} "
            "ORDER BY created_at DESC, rowid LIMIT ? OFFSET ?) ORDER BY created_at DESC, rowid"
        )
    rows = list(db.query(page, [*params, limit, offset]))
    for row in rows:  # as in every list of jobs (vq/job_lists.py list_view); `vq show`, `vq result` have it whole
        size = len((row.get("result") or "").encode())
        if size > LIST_RESULT_BYTES:
            row.update(result=None, result_omitted=True, result_bytes=size)
    return rows


def count(db, match: JobFilter | None = None, **fields: Any) -> int:
    """How many jobs `jobs` would list without a limit."""
    sql, params = _filter_of(match, fields).sql()
    return db.execute(f"SELECT COUNT(*) FROM render_jobs{sql}", params).fetchone()[0]


def camel_case(row: dict, *, legacy: bool = True) -> dict:
    """A history row with the API's camelCase names (`job_type` -> `jobType`, `cached` as a
    boolean). With `legacy`, the snake_case names stay beside them for scripts written
    against vq 0.1 (deprecated: they go in the next release)."""
    out = {
        _camel(name): (bool(value) if name == "cached" and value is not None else value) for name, value in row.items()
    }
    return {**row, **out} if legacy else out


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def export(db, fmt: str, match: JobFilter | None = None, **fields: Any) -> Iterator[str]:
    """Every job `match` takes, oldest first, as CSV (a header line first) or JSON lines."""
    if fmt not in EXPORT_FORMATS:
        raise InvalidInput(f"--format: {fmt!r} is not one of csv, json", field="format")
    sql, params = _filter_of(match, fields).sql()
    rows = db.query(f"SELECT {SHOWN} FROM render_jobs{sql} ORDER BY created_at, id", params)
    if fmt == "json":
        for row in rows:
            yield json.dumps(row, separators=(",", ":")) + "\n"
        return
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=JOB_COLUMNS, extrasaction="ignore")
    writer.writeheader()
    yield buffer.getvalue()
    for row in rows:
        buffer.seek(0)
        buffer.truncate()
        writer.writerow(row)
        yield buffer.getvalue()


def audit_actions(db) -> list[str]:
    """Every action the audit trail holds, by name: what `vq audit --action` can match
    (the actions are named where each write happens, so the trail is the list)."""
    return [r["action"] for r in db.query("SELECT DISTINCT action FROM audit_log ORDER BY action")]


def audit_rows(
    db, *, actor: str | None = None, since: str | None = None, action: str | None = None, limit: int = 100
) -> list[dict]:
    """The audit trail, newest first: who created, removed, retried, paused... what."""
    where, params = _where({"actor": actor, "action": action}, since, "at")
    rows = list(db.query(f"SELECT * FROM audit_log{where} ORDER BY at DESC, event_id DESC LIMIT ?", [*params, limit]))
    for row in rows:
        row["detail"] = json.loads(row["detail"]) if row["detail"] else {}
        row.pop("event_id", None)
    return rows
