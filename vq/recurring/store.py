"""Recurring definitions mirrored into the history database, and restored from it.

Redis is where the timers read definitions; the `recurring_jobs` table is their durable
copy with run statistics. Every daemon refreshes its copy every few seconds. When a
daemon finds a Redis that never held definitions (`vq:recurring:seen` missing: a new or
wiped, non-persistent Redis) while its table has live ones, it puts them back, with their
next tick, so catch-up rules apply to what was missed.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from redis import Redis
from redis.typing import EncodableT, FieldT

from vq import keys
from vq.history.db import RECURRING_COLUMNS
from vq.model import iso
from vq.recurring.definitions import Recurring, list_all
from vq.timer import notify_in

if TYPE_CHECKING:
    import sqlite_utils


def _ms_to_iso(ms: float | None) -> str | None:
    return None if ms is None else iso(datetime.fromtimestamp(ms / 1000, UTC))


def _row(definition: Recurring, due_ms: float | None, stats: dict[str, str]) -> dict:
    return {
        "id": definition.id,
        "name": definition.name,
        "job_type": definition.jobType,
        "cron_expression": definition.cronExpression,
        "timezone": definition.tz,
        "data": json.dumps(definition.data, sort_keys=True),
        "user_id": definition.userId,
        "project_id": definition.projectId,
        "priority": definition.priority,
        "user_subscription": definition.userSubscription,
        "options": json.dumps(definition.options, sort_keys=True),
        "catch_up": definition.catchUp,
        "paused": int(definition.paused),
        "privileged": int(definition.privileged),
        "created_at": definition.createdAt,
        "updated_at": definition.updatedAt,
        "next_run_at": _ms_to_iso(due_ms),
        "last_run_at": stats.get("lastRunAt"),
        "last_job_id": stats.get("lastJobId"),
        "last_error": stats.get("lastError"),
        "run_count": int(stats.get("runs", 0)),
        "success_count": int(stats.get("succeeded", 0)),
        "failure_count": int(stats.get("failed", 0)),
        "cancel_count": int(stats.get("canceled", 0)),
        "missed_count": int(stats.get("missed", 0)),
        "removed_at": None,
    }


def sync(conn: Redis, db: sqlite_utils.Database) -> int:
    """Write every definition's current state; mark rows whose definition is gone as removed.
    Returns the number of live definitions."""
    definitions = list_all(conn)
    with conn.pipeline(transaction=False) as pipe:
        for definition in definitions:
            pipe.zscore(keys.RECURRING_DUE, definition.id)
            pipe.hgetall(keys.recurring_stats(definition.id))
        replies = pipe.execute()
    rows = []
    for index, definition in enumerate(definitions):
        due, raw_stats = replies[2 * index], replies[2 * index + 1]
        stats = {k.decode(): v.decode() for k, v in raw_stats.items()}
        rows.append(_row(definition, due, stats))
    table = db.table("recurring_jobs")
    live = {row["id"] for row in rows}
    with db.conn:
        if rows:
            table.upsert_all(rows, pk="id", columns=RECURRING_COLUMNS)
        now = iso(datetime.now(UTC))
        for (row_id,) in db.execute("SELECT id FROM recurring_jobs WHERE removed_at IS NULL").fetchall():
            if row_id not in live:
                table.update(row_id, {"removed_at": now, "next_run_at": None})
    return len(rows)


def restore_if_wiped(conn: Redis, db: sqlite_utils.Database) -> int:
    """Put the table's live definitions back into a Redis that never held any. Returns how many."""
    if conn.exists(keys.RECURRING_SEEN):
        return 0
    rows = list(db.query("SELECT * FROM recurring_jobs WHERE removed_at IS NULL"))
    with conn.pipeline() as pipe:
        for row in rows:
            definition = Recurring(
                id=row["id"],
                jobType=row["job_type"],
                cronExpression=row["cron_expression"],
                tz=row["timezone"],
                data=json.loads(row["data"] or "{}"),
                userId=row["user_id"],
                projectId=row["project_id"],
                name=row["name"],
                priority=row["priority"],
                userSubscription=row["user_subscription"],
                options=json.loads(row["options"] or "{}"),
                catchUp=row["catch_up"],
                paused=bool(row["paused"]),
                privileged=bool(row["privileged"]),
                createdAt=row["created_at"],
                updatedAt=row["updated_at"],
            )
            pipe.hsetnx(keys.RECURRING, definition.id, definition.to_json())
            if not definition.paused and row["next_run_at"]:
                due = datetime.fromisoformat(row["next_run_at"].replace("Z", "+00:00"))
                pipe.zadd(keys.RECURRING_DUE, {definition.id: int(due.timestamp() * 1000)}, nx=True)
                notify_in(pipe, due.timestamp())
            counts = {
                "runs": row["run_count"],
                "succeeded": row["success_count"],
                "failed": row["failure_count"],
                "canceled": row["cancel_count"],
                "missed": row["missed_count"],
            }
            stats: dict[FieldT, EncodableT] = {k: v or 0 for k, v in counts.items()}
            stats.update({k: row[c] for k, c in (("lastRunAt", "last_run_at"), ("lastJobId", "last_job_id")) if row[c]})
            pipe.hset(keys.recurring_stats(definition.id), mapping=stats)
        pipe.set(keys.RECURRING_SEEN, 1)
        pipe.execute()
    return len(rows)
