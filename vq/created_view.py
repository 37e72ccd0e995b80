"""The answer to a create over HTTP: the new job as `jobs.show(explain=False)` shows it,
read back in one round trip, with the create's audit record written in the same one.

Why not `jobs.show`: after `submit` the route needs the audit record and the job's JSON,
which `audit.record` and `jobs.show` take four round trips for (the audit event; the job's
hash; whether it waits in its user's line; its group and resource fields), each a
send, a wait and a parse in the server, at every create. Here they are one pipeline: the
audit event, the job's whole hash (its admission fields are in it), the paused types and
the job's scores in its type's waiting lines (`limited`: routed into its user's line, as
`admission.in_line` reads them), whether it has a checkpoint kept. The view is then built
by the same functions `jobs.show` uses, so the two answers have one shape (a test compares
them on jobs of every kind). A planned parent's progress (`jobs.steps_progress`) reads its
steps afterwards, as `show` does.
"""

from __future__ import annotations

from collections.abc import Callable

from redis import Redis
from redis.client import Pipeline
from rq.serializers import JSONSerializer

from vq import admission, checkpoints, job_admission, jobs, keys
from vq.config import Settings
from vq.model import job_type_of, job_view
from vq.rq_seam.job import ReadableJob


def created_view(
    conn: Redis,
    settings: Settings,
    job_id: str,
    job_type: str,
    reveal_to: str | None,
    also: Callable[[Pipeline], None] | None = None,
) -> dict:
    """The job `job_id` of `job_type`, just created, as `jobs.show(conn, job_id, settings,
    explain=False, reveal_to=reveal_to)` answers; `also` adds writes to the same round trip
    (the route's `audit.record`). A job gone meanwhile (removed at once), or not of
    `job_type`, is left to `jobs.show`, which answers it from the history database or says
    it is not found."""
    with conn.pipeline(transaction=False) as pipe:
        if also is not None:
            also(pipe)
        written = len(pipe.command_stack)
        pipe.hgetall(keys.rq_job(job_id))
        pipe.smembers(keys.PAUSED)
        for key in keys.wait_since_all(job_type):
            pipe.zscore(key, job_id)
        pipe.exists(keys.checkpoint(job_id))
        replies = pipe.execute()[written:]
    raw, paused, *rest = replies
    scores, stored = rest[:-1], rest[-1]
    job = ReadableJob(job_id, connection=conn, serializer=JSONSerializer)
    if raw:
        job.restore(raw)
    if not raw or job_type_of(job) != job_type:
        return jobs.show(conn, job_id, settings, explain=False, reveal_to=reveal_to)
    view = job_view(job, in_line=admission.waits_in_line(job, scores, {name.decode() for name in paused}))
    view.update(job_admission.fields_of([raw.get(name.encode()) for name in job_admission.FIELDS], view["status"]))
    view.update(checkpoints.view_of(job.meta, bool(stored)))
    return jobs.finish_view(conn, job, view, settings, reveal_to)
