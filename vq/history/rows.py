"""Events into history rows: what one batch of `vq:events` writes to the history database.

The archiver (vq/history/archiver.py) reads the stream and owns the positions; this module knows
the tables: a job_history row per status change (keyed by the event's stream id, so a
batch written twice adds nothing), the render_jobs row each job's events build up, its
dependencies, provider charges and audit entries, and the archiver's last written id,
all in one SQLite transaction.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

# The status each event moves a job to (events not listed are not status changes).
TO_STATUS = {
    "queued": "queued",
    "started": "started",
    "finished": "finished",
    "failed": "failed",
    "canceled": "canceled",
    "removed": "removed",
    "rate-limited": "scheduled",
    "requeued": "queued",
    "stalled": "queued",
    "retried": "queued",
}


def iso(ms: int) -> str:
    """An event's time as the history stores it (UTC, milliseconds, Z)."""
    return datetime.fromtimestamp(ms / 1000, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def to_status(event: dict) -> str | None:
    """The status the event moves its job to; None when it is no status change."""
    name = event["event"]
    fields = event["fields"]
    if name == "created":
        return fields.get("status") or "queued"
    if name == "retrying":
        return fields.get("status") or "scheduled"
    if name == "retried":  # back in line, or waiting for its dependencies again (vq/jobs.py retry)
        return fields.get("status") or "queued"
    return TO_STATUS.get(name)


def _reason(event: dict) -> str | None:
    """The transition's reason column: the error, its category, or why it was rate limited."""
    fields = event["fields"]
    if event["event"] == "rate-limited":
        return f"rate limited; retry after {fields.get('retryAfter')}s" + (
            f": {fields['error']}" if fields.get("error") else ""
        )
    parts = [str(fields[k]) for k in ("category", "error", "reason") if fields.get(k)]
    actor = fields.get("actor") if event["event"] == "canceled" else None  # who: vq cancel, the API, the dashboard
    if actor and str(actor) not in str(fields.get("reason") or ""):
        parts.append(f"by {actor}")
    if event["event"] == "canceled" and fields.get("now"):
        parts.append("interrupted")
    if event["event"] == "stalled":
        parts.insert(0, "stalled")
    return ": ".join(parts) or None


def write(db, batch: list[dict]) -> None:
    """One SQLite transaction (`db`: the history database): the transitions, the job rows, the
    dependencies, the charges, the audit entries, and the position."""
    ids = sorted({e["jobId"] for e in batch if e["jobId"] != "-"})
    current: dict[str, str | None] = {}
    for chunk_start in range(0, len(ids), 500):
        chunk = ids[chunk_start : chunk_start + 500]
        marks = ",".join("?" * len(chunk))
        for job_id, status in db.execute(f"SELECT id, status FROM render_jobs WHERE id IN ({marks})", chunk):
            current[job_id] = status
    history_rows, created_rows, dependencies, audits, charges = [], [], [], [], {}
    debounced: list[tuple[str, str]] = []
    updates: dict[str, list] = {}  # job id -> [job type, first at, status, last at, column changes]
    for event in batch:
        job_id = event["jobId"]
        if event["event"] == "audit":
            fields = dict(event["fields"])
            audits.append(
                (
                    event["id"],
                    iso(event["ts"]),
                    fields.pop("actor", None),
                    fields.pop("role", None),
                    fields.pop("action", None),
                    event["jobType"] or None,
                    job_id,
                    json.dumps(fields, separators=(",", ":")) if fields else None,
                )
            )
            continue
        if job_id == "-":
            continue
        if event["event"] == "debounced" and "data" in event:  # its data replaced: the copy follows
            debounced.append((event["data"], job_id))
            continue
        if event["event"] == "charged":  # a provider call's cost: the job's running total
            charges[job_id] = (event["fields"].get("provider"), event["fields"].get("totalMicros"))
            continue
        to = to_status(event)
        if to is None:
            continue
        fields = event["fields"]
        at = iso(event["ts"])
        history_rows.append(
            (
                event["id"],
                job_id,
                event["jobType"],
                current.get(job_id),
                to,
                event["event"],
                at,
                fields.get("worker"),
                fields.get("attempt"),
                _reason(event),
            )
        )
        if event["event"] == "created":
            created_rows.append(
                (
                    job_id,
                    event["jobType"],
                    fields.get("userId"),
                    fields.get("projectId"),
                    fields.get("priority"),
                    fields.get("subscription"),
                    fields.get("queue") or f"{event['jobType']}.{fields.get('priority')}",
                    to,
                    at,
                    at,
                    fields.get("parentId"),
                    fields.get("step"),
                    fields.get("recurringId"),
                    1 if fields.get("cachedFrom") else 0,
                    at if to == "finished" else None,
                    event.get("result"),
                    event.get("data"),
                )
            )  # born finished (a cached result): its result
            for parent in fields.get("dependsOn") or []:
                dependencies.append((job_id, parent, 1 if fields.get("allowFailure") else 0))
        else:
            update = updates.setdefault(job_id, [event["jobType"], at, to, at, {}])
            update[2], update[3] = to, at
            update[4].update(_changes_for(event, to, at))  # a later event's changes win
        current[job_id] = to
    with db.conn:
        db.conn.executemany(
            "INSERT OR IGNORE INTO job_history (event_id, job_id, job_type, from_status, to_status, event, at, "
            "worker, attempt, reason) VALUES (?,?,?,?,?,?,?,?,?,?)",
            history_rows,
        )
        db.conn.executemany(
            "INSERT INTO render_jobs (id, job_type, user_id, project_id, priority, subscription, queue, status, "
            "created_at, updated_at, parent_id, step, recurring_id, cached, finished_at, result, data, attempts) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,0) ON CONFLICT(id) DO UPDATE SET "
            "job_type=excluded.job_type, user_id=excluded.user_id, project_id=excluded.project_id, "
            "priority=excluded.priority, subscription=excluded.subscription, queue=excluded.queue, "
            "created_at=excluded.created_at, parent_id=excluded.parent_id, step=excluded.step, "
            "recurring_id=excluded.recurring_id, cached=excluded.cached, "
            "result=COALESCE(excluded.result, render_jobs.result), data=excluded.data",
            created_rows,
        )
        db.conn.executemany("UPDATE render_jobs SET data = ? WHERE id = ?", debounced)  # new data, same job
        for sql, rows in _grouped_updates(updates).items():
            db.conn.executemany(sql, rows)
        db.conn.executemany(
            "UPDATE render_jobs SET provider = ?, cost_micros = ? WHERE id = ?",
            [(provider, total, job_id) for job_id, (provider, total) in charges.items()],
        )
        db.conn.executemany(
            "INSERT OR IGNORE INTO audit_log (event_id, at, actor, role, action, job_type, "
            "target, detail) VALUES (?,?,?,?,?,?,?,?)",
            audits,
        )
        db.conn.executemany(
            "INSERT OR IGNORE INTO job_dependencies (job_id, depends_on, allow_failure) VALUES (?,?,?)", dependencies
        )
        db.conn.execute(
            "INSERT INTO archiver_state (name, value) VALUES ('last_event_id', ?) "
            "ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            (batch[-1]["id"],),
        )


def _changes_for(event: dict, to: str, at: str) -> dict:
    """The render_jobs columns an event changes."""
    fields = event["fields"]
    sets: dict[str, object] = {"status": to, "updated_at": at}
    if event["event"] == "started":
        sets.update(
            started_at=at,
            worker=fields.get("worker"),
            attempts=fields.get("attempt"),
            wait_ms=fields.get("waitMs"),
            finished_at=None,
        )
    if event["event"] in ("finished", "failed", "canceled"):
        sets.update(finished_at=at)
    if event["event"] == "finished":
        sets["result"] = event.get("result")  # JSON text, as the job's hash had it (None: too long)
    if fields.get("durationMs") is not None:
        sets["run_ms"] = fields["durationMs"]
    if event["event"] in ("failed", "retrying") or (event["event"] == "canceled" and fields.get("category")):
        sets.update(error_category=fields.get("category"), error_message=fields.get("error"))
    if fields.get("userId"):
        sets["user_id"] = fields["userId"]
    return sets


def _grouped_updates(updates: dict[str, list]) -> dict[str, list[tuple]]:
    """One statement per set of changed columns, each run once over all its jobs (a row
    is made if its `created` was never seen): a batch's updates in a few executemany."""
    grouped: dict[str, list[tuple]] = {}
    for job_id, (job_type, first_at, to, last_at, sets) in updates.items():
        columns = ", ".join(f"{name} = ?" for name in sets)
        sql = (
            f"INSERT INTO render_jobs (id, job_type, status, created_at, updated_at) VALUES (?, ?, ?, ?, ?) "
            f"ON CONFLICT(id) DO UPDATE SET {columns}"
        )
        grouped.setdefault(sql, []).append((job_id, job_type, to, first_at, last_at, *sets.values()))
    return grouped
