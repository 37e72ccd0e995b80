"""RQ job hashes for a batch, built from a template instead of an RQ Job object per job.

RQ's own enqueue builds a Job per job (its serializer check alone costs more than the rest
of vq's work on a submission) and writes it with three commands. A batch of plain vq
submissions differs from job to job only in a few fields, so the first job of each queue
and set of options is built by RQ (`Queue.create_job` + `Job.to_dict`, RQ's own code) and
the others copy its hash and set just those fields, in RQ's own formats. A test holds the
two paths to the same hash (tests/test_submission.py).
"""

from __future__ import annotations

import json
import zlib
from datetime import datetime

from rq.job import Job, JobStatus
from rq.serializers import JSONSerializer
from rq.utils import utcformat

# The fields of RQ's job hash that differ between two plain submissions of one queue.
VARYING = ("created_at", "enqueued_at", "data", "meta", "description", "retries_left", "retry_intervals")


class Templates:
    """One RQ-built template hash per (queue, options); `hash_for` fills in the rest."""

    def __init__(self, queue_for, func: str):
        self.queue_for = queue_for  # queue name -> the RQ queue that builds a template
        self.func = func
        self._made: dict[tuple, dict] = {}

    def hash_for(self, queue_name: str, spec: dict, at: datetime) -> dict:
        """The job hash RQ would store for `create_job(func, **spec)` enqueued on `queue_name`."""
        retry = spec.get("retry")
        shape = (queue_name, spec["timeout"], spec["result_ttl"], spec["failure_ttl"],
                 retry.max if retry else None)
        template = self._made.get(shape)
        if template is None:
            job = self.queue_for(queue_name).create_job(self.func, status=JobStatus.QUEUED, **spec)
            job.origin, job.enqueued_at = queue_name, at
            template = self._made[shape] = job.to_dict()
        mapping = dict(template)
        now_text = utcformat(at)
        mapping["created_at"] = mapping["enqueued_at"] = now_text
        mapping["data"] = zlib.compress(JSONSerializer.dumps((self.func, None, list(spec["args"]), {})))
        mapping["meta"] = JSONSerializer.dumps(spec["meta"])
        mapping["description"] = spec["description"]
        if retry:
            mapping["retries_left"] = retry.max
            mapping["retry_intervals"] = json.dumps(retry.intervals)
        return mapping

    @staticmethod
    def key(job_id: str) -> str:
        return Job.key_for(job_id)
