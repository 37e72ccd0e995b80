"""Bulk operations: choose jobs by type, user, status and age, then retry, cancel or remove
each with the same service function a single job uses. Selection and action are separate
so the CLI can show what it will touch and ask first."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from redis import Redis

from vq import job_lists, jobs
from vq.errors import Conflict, VqError

WAITING = ("queued", "limited", "scheduled", "deferred")
MOST = 100_000  # jobs one bulk operation may touch


def failed(conn: Redis, job_type: str | None = None, user: str | None = None) -> list[dict]:
    """Failed jobs (the dead-letter queue), of a type and/or a user."""
    return job_lists.list_jobs(conn, job_type=job_type, user=user, status="failed", limit=MOST)


def waiting(conn: Redis, user: str, job_type: str | None = None) -> list[dict]:
    """A user's jobs that have not started: queued, limited, scheduled, deferred."""
    return [v for v in job_lists.list_jobs(conn, job_type=job_type, user=user, limit=MOST) if v["status"] in WAITING]


def finished_before(conn: Redis, cutoff: datetime, job_type: str | None = None, user: str | None = None) -> list[dict]:
    """Finished jobs that ended before `cutoff`."""
    return [
        v
        for v in job_lists.list_jobs(conn, job_type=job_type, user=user, status="finished", limit=MOST)
        if v["finishedAt"] and _parse(v["finishedAt"]) < cutoff
    ]


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def apply(views: list[dict], action) -> dict:
    """Run `action(job_id)` on each; a job that changed meanwhile is skipped with the reason."""
    done, skipped = [], []
    for view in views:
        try:
            action(view["id"])
            done.append(view["id"])
        except VqError as exc:
            skipped.append({"id": view["id"], "reason": exc.message})
    return {"done": done, "skipped": skipped}


def retry_all(conn: Redis, views: list[dict]) -> dict:
    return apply(views, lambda job_id: jobs.retry(conn, job_id))


def cancel_all(conn: Redis, views: list[dict], reason: str) -> dict:
    """Cancel each; one that is canceled by the time its turn comes (with a pipeline's parent
    or a dependency canceled before it in this run) counts as done, not as skipped."""

    def cancel(job_id: str) -> None:
        try:
            jobs.cancel(conn, job_id, reason)
        except Conflict:
            if jobs.show(conn, job_id)["status"] != "canceled":
                raise

    return apply(views, cancel)


def remove_all(conn: Redis, views: list[dict], artifacts_root: Path) -> dict:
    return apply(views, lambda job_id: jobs.remove(conn, job_id, artifacts_root))
