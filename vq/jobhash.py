"""RQ job hashes for new jobs, built from a template instead of an RQ Job object per job.

RQ's own enqueue builds a Job per job (its serializer check alone costs more than the rest
of vq's work on a submission) and writes it with three commands. Plain vq submissions
differ from job to job only in a few fields, so the first job of each queue and set of
options is built by RQ (`Queue.create_job` + `Job.to_dict`, RQ's own code) and the others
copy its hash and set just those fields, in RQ's own formats. A test holds the paths to
the same hash (tests/test_submission.py).

A batch (`Batch`) sends only the varying fields; vq/lua/create.lua fills in the template.
"""

from __future__ import annotations

import json
import zlib
from datetime import datetime

from redis.client import Pipeline
from rq.job import JobStatus
from rq.serializers import JSONSerializer
from rq.utils import utcformat

from vq import lua
from vq.events import STREAM_MAXLEN

VARYING = ("created_at", "enqueued_at", "data", "meta", "retry_intervals", "description")  # set per job


class Templates:
    """One RQ-built template hash per (queue, options); `hash_for` fills in the rest.

    Fields RQ writes as empty strings (callbacks, started_at, worker_name ...) are left
    out: RQ reads a missing field as an empty one, and in a job hash too big for Redis's
    compact encoding each field costs about 70 bytes of memory per waiting job. The
    description is kept, short ("content-analysis for alice"): RQ's worker puts it in
    its log line for each job it takes."""

    def __init__(self, func: str):
        self.func = func
        self._made: dict[tuple, dict] = {}

    def template(self, queue, spec: dict, at: datetime) -> tuple[tuple, dict]:
        """(shape, the fields every job of this queue and shape shares)."""
        retry = spec.get("retry")
        shape = (queue.name, spec["timeout"], spec["result_ttl"], spec["failure_ttl"], retry.max if retry else None)
        template = self._made.get(shape)
        if template is None:
            job = queue.create_job(self.func, status=JobStatus.QUEUED, **spec)
            job.origin, job.enqueued_at = queue.name, at
            if len(self._made) > 1000:
                self._made.clear()
            template = self._made[shape] = {k: v for k, v in job.to_dict().items() if v != "" and k not in VARYING}
        return shape, template

    def varying(self, spec: dict) -> tuple[bytes, str, str | None, str]:
        """A job's own fields: data (compressed, as RQ stores it), meta, retry_intervals,
        description."""
        retry = spec.get("retry")
        data = zlib.compress(JSONSerializer.dumps((self.func, None, list(spec["args"]), {})))
        return (
            data,
            JSONSerializer.dumps(spec["meta"]).decode(),
            json.dumps(retry.intervals) if retry else None,
            spec["description"],
        )

    def hash_for(self, queue, spec: dict, at: datetime) -> dict:
        """The job hash RQ would store for `queue.create_job(func, **spec)`, enqueued."""
        _shape, template = self.template(queue, spec, at)
        data, meta, intervals, description = self.varying(spec)
        mapping = dict(template)
        mapping["created_at"] = mapping["enqueued_at"] = utcformat(at)
        mapping["data"], mapping["meta"], mapping["description"] = data, meta, description
        if intervals is not None:
            mapping["retry_intervals"] = intervals
        return mapping


class Batch:
    """New queued jobs written by one call of vq/lua/create.lua: hash, push, `created` event."""

    def __init__(self, templates: Templates, at: datetime):
        self.templates, self.at = templates, at
        self._numbers: dict[tuple, int] = {}
        self._head: list = []
        self._jobs: list = []

    def add(
        self, queue, job_id: str, spec: dict, job_type: str, event_fields: str, history_data: str | None = None
    ) -> None:
        shape, template = self.templates.template(queue, spec, self.at)
        number = self._numbers.get(shape)
        if number is None:
            number = self._numbers[shape] = len(self._numbers) + 1
            self._head += [queue.name, len(template), *(x for pair in template.items() for x in pair)]
        data, meta, intervals, description = self.templates.varying(spec)
        self._jobs += [number, job_id, data, meta, intervals or "", description, job_type, event_fields]
        self._jobs.append(history_data or "")  # the `created` event's data (spec.history_data), '' for none

    def __len__(self) -> int:
        return len(self._jobs) // 9

    def write(self, conn, pipe: Pipeline) -> None:
        """Into the caller's transaction: one script call for the whole batch."""
        if self._jobs:
            lua.script(conn, "create.lua")(args=self._args(), client=pipe)

    def write_as_text(self, pipe: Pipeline) -> None:
        """`write` by the script's text (EVAL), not its SHA: no SCRIPT EXISTS before the
        transaction (a command and a round trip per `submit`), and no NOSCRIPT from a Redis
        that lost its scripts, which would leave the transaction's other writes done without
        the job's."""
        if self._jobs:
            names = lua.names("create.lua")
            pipe.eval(lua.source("create.lua"), len(names), *names, *self._args())

    def _args(self) -> list:
        return [
            utcformat(self.at),
            int(self.at.timestamp() * 1000),
            STREAM_MAXLEN,
            len(self._numbers),
            *self._head,
            *self._jobs,
        ]
