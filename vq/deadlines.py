"""Deadlines: a job that has not started by its deadline does not run.

A deadline comes with the submission (`--deadline 10m`, an ISO time, `deadline` in an HTTP
body or batch line) or from its tier's default (`deadlines.byTier`). It is kept in the
job's meta as epoch ms (`deadline`), which every way of creating a job already writes and
admission's routing already reads. A job of a type with `onDeadline: run` also carries
`onDeadline: "run"` there: it runs late, and counts as a miss.

A job that expires is canceled with error category `expired`, in two places: admission
(vq/lua/admit_deadline.lua), atomically where it would start, so no worker ever runs it;
and the `expire-deadlines` chore (`sweep`), for jobs that sit waiting (delayed, deferred on
a dependency, in a line behind a limit) and for the dependents of those admission expired.
`DEADLINES` (vq/keys.py) holds every not-yet-started job that expires, by deadline, so the
sweep reads only those that are due.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from redis import Redis
from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer

from vq import admission, batch_counts, jobs, keys
from vq.durations import looks_like_duration, parse_duration_ms, parse_instant
from vq.errors import InvalidInput
from vq.model import iso
from vq.replies import members

EXPIRED = "expired"  # the error category of an expired job
REASON = "its deadline passed before it started"
SWEEP_MAX = 500  # due jobs looked at per sweep: bounds one run's time
WAITING = (JobStatus.QUEUED, JobStatus.DEFERRED, JobStatus.SCHEDULED)


def parse_deadline(value: object, field: str = "deadline") -> datetime:
    """A duration from now (10m, 2h, 90000 ms) or an ISO 8601 time, as an aware datetime."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidInput(f"{field}: expected a duration (10m, 2h) or an ISO 8601 time", field=field)
    if looks_like_duration(value):
        moment = datetime.now(UTC) + timedelta(milliseconds=parse_duration_ms(value, field))
    else:
        moment = parse_instant(str(value), field)
    if moment <= datetime.now(UTC):
        raise InvalidInput(f"{field}: {iso(moment)} is not in the future", field=field)
    return moment


def deadline_ms(given: datetime | None, tier_default_ms: int | None) -> int | None:
    """The job's deadline as epoch ms: the one given (never in the past), else its tier's default."""
    now = datetime.now(UTC)
    if given is not None:
        if given <= now:
            raise InvalidInput(f"deadline: {iso(given)} is not in the future", field="deadline")
        return int(given.timestamp() * 1000)
    if tier_default_ms:
        return int((now + timedelta(milliseconds=tier_default_ms)).timestamp() * 1000)
    return None


def expired(job: Job) -> bool:
    """Whether the job was canceled because its deadline passed."""
    return (job.meta.get("error") or {}).get("category") == EXPIRED and job.get_status(refresh=False) == "canceled"


def sweep(conn: Redis, now_ms: int) -> tuple[int, int]:
    """Expire the waiting jobs whose deadline has passed, and cancel (by the failure rules)
    the dependents of those admission expired; (expired here, followed up). Each due job
    leaves `DEADLINES`: whatever its state, nothing is left to do for it."""
    ids = members(conn.zrangebyscore(keys.DEADLINES, "-inf", now_ms, start=0, num=SWEEP_MAX))
    if not ids:
        return 0, 0
    expired_here = followed = 0
    for job_id, job in zip(ids, Job.fetch_many(ids, connection=conn, serializer=JSONSerializer)):
        if job is not None:
            status = job.get_status(refresh=False)
            deadline = job.meta.get("deadline")
            due = isinstance(deadline, int) and deadline <= now_ms  # none: a retry dropped it (vq/jobs.py)
            if due and status in WAITING and job.meta.get("onDeadline") != "run":
                expired_here += jobs.expire_waiting(conn, job, REASON)
            elif due and status == JobStatus.CANCELED and expired(job):
                admission.forget(conn, job)  # its aged mark, if any
                batch_counts.job_ended(conn, job)
                jobs.cancel_dependents(conn, job, f"dependency {job.id} expired")
                followed += 1
        conn.zrem(keys.DEADLINES, job_id)
    return expired_here, followed
