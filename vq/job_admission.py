"""What admission keeps on one job beside RQ's fields: the limit-group keys it counts against,
the resources it needs of a worker, and, while it runs, the resources it holds (vq/groups.py,
vq/capacity.py). `vq show`, GET /api/jobs/{id} and the TUI's job screen show them."""

from __future__ import annotations

from redis import Redis

from vq import capacity, groups, keys


def fields(conn: Redis, job_id: str, status: str) -> dict:
    """`groups` ({group: key}), `resources` (what it needs; {}: nothing) and `resourcesHeld`
    (while it runs, as its handler sees them: gpu as device indices; else None), in one read."""
    return fields_of(conn.hmget(keys.rq_job(job_id), FIELDS), status)


FIELDS = [keys.GROUPS_FIELD, keys.RESOURCES_FIELD, keys.HELD_FIELD]
"""The job hash's fields `fields_of` reads, in its order."""


def fields_of(raw: list, status: str) -> dict:
    """`fields` from the job hash's FIELDS as read (a caller that reads the hash anyway)."""
    raw_groups, raw_need, raw_held = raw
    held = capacity.held_view(raw_held) if status == "started" else None
    return {
        "groups": groups.decoded(raw_groups),
        "resources": capacity.decoded(raw_need),
        "resourcesHeld": held or None,
    }


def none() -> dict:
    """The same fields for a job Redis no longer has (the history keeps none of them)."""
    return {"groups": {}, "resources": {}, "resourcesHeld": None}
