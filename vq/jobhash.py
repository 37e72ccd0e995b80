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

from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.utils import utcformat

class Templates:
    """One RQ-built template hash per (queue, options); `hash_for` fills in the rest.

    Fields RQ writes as empty strings (callbacks, started_at, worker_name ...) are left
    out, and so is RQ's free-text description, which vq does not show: RQ reads a missing
    field as an empty one, and in a job hash too big for Redis's compact encoding each
    field costs about 70 bytes of memory per waiting job."""

    def __init__(self, func: str):
        self.func = func
        self._made: dict[tuple, dict] = {}

    def hash_for(self, queue, spec: dict, at: datetime) -> dict:
        """The job hash RQ would store for `queue.create_job(func, **spec)`, enqueued."""
        retry = spec.get("retry")
        shape = (queue.name, spec["timeout"], spec["result_ttl"], spec["failure_ttl"],
                 retry.max if retry else None)
        template = self._made.get(shape)
        if template is None:
            job = queue.create_job(self.func, status=JobStatus.QUEUED, **spec)
            job.origin, job.enqueued_at = queue.name, at
            if len(self._made) > 1000:
                self._made.clear()
            template = self._made[shape] = {k: v for k, v in job.to_dict().items()
                                            if v != "" and k != "description"}
        mapping = dict(template)
        now_text = utcformat(at)
        mapping["created_at"] = mapping["enqueued_at"] = now_text
        mapping["data"] = zlib.compress(JSONSerializer.dumps((self.func, None, list(spec["args"]), {})))
        mapping["meta"] = JSONSerializer.dumps(spec["meta"])
        if retry:
            mapping["retries_left"] = retry.max
            mapping["retry_intervals"] = json.dumps(retry.intervals)
        return mapping
