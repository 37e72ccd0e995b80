"""Batches: many submissions at once, each accepted or refused on its own.

`submit_each` serves `vq submit --batch` and POST /api/jobs/bulk. Plain submissions (one
job, nothing to look up) are created BATCH_CHUNK to a Redis transaction with the batch
script of vq/jobhash.py; the rest go through `submit`'s path one by one, in order.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime

from redis import Redis
from redis.client import Pipeline

from vq import cache, events, keys
from vq.admission import wake_in
from vq.config import Settings
from vq.errors import RedisUnavailable, VqError
from vq.jobhash import Batch
from vq.rq_seam.queue import rq_queue
from vq.submission.creation import announce, create_in, expires, groups_in, plan_of, submit_resolved
from vq.submission.spec import TEMPLATES, history_data, job_spec
from vq.submission.validation import Resolved, Submission, resolve
from vq.telemetry import jobs as trace_jobs

BATCH_CHUNK = 500  # submissions created per transaction by submit_each


def submit_each(conn: Redis, settings: Settings, items: list, build) -> list[dict]:
    """Submit many, each on its own: an item that is refused is reported and the rest go on
    (`vq submit --batch`, POST /api/jobs/bulk). `build(item)` makes the Submission.

    Plain submissions (no dependencies, idempotency or unique key, fixed id, result cache or child
    graph) are created BATCH_CHUNK to a transaction, in order; the others one by one as
    `submit` makes them, after the plain ones before them. Traced, the whole batch is one
    PRODUCER span (vq/telemetry/), each job's `send` under it: one trace."""
    with trace_jobs.batch_sending(len(items)):
        return _submit_each(conn, settings, items, build)


def _submit_each(conn: Redis, settings: Settings, items: list, build) -> list[dict]:
    outcomes: list[dict] = []
    plain: list[tuple[Resolved, str]] = []

    def create_plain() -> None:
        if plain:
            with conn.pipeline() as pipe:  # each chunk appears whole, or not at all
                _create_batch(conn, pipe, settings, plain)
                pipe.execute()
            plain.clear()

    for index, item in enumerate(items):
        try:
            sub = build(item)
            resolved = resolve(conn, settings, sub)
            if _is_plain(sub, resolved):
                job_id = uuid.uuid4().hex
                plain.append((resolved, job_id))
                outcomes.append({"index": index, "ok": True, "id": job_id})
                if len(plain) >= BATCH_CHUNK:
                    create_plain()
                continue
            create_plain()
            made = submit_resolved(conn, settings, sub, resolved)
            outcome = {"index": index, "ok": True, "id": made.id}
            if made.outcome is not None:  # a uniqueKey: created, existing or debounced
                outcome["unique"] = made.outcome
            outcomes.append(outcome)
        except RedisUnavailable:
            raise  # not the item's fault: the whole request fails
        except VqError as exc:
            outcomes.append(
                {"index": index, "ok": False, "error": {"code": exc.code, "message": exc.message, "field": exc.field}}
            )
    create_plain()
    return outcomes


def _create_batch(conn: Redis, pipe: Pipeline, settings: Settings, plain: list[tuple[Resolved, str]]) -> None:
    """Plain submissions into one transaction: the queued ones in one call of the batch
    script (vq/jobhash.py Batch), the delayed ones as `submit` makes them, and one command
    per index and per queue for the whole batch where `submit` sends one per job."""
    at = datetime.now(UTC)
    created_ms = int(at.timestamp() * 1000)
    batch = Batch(TEMPLATES, at)
    indexes: dict[str, dict[str, int]] = {}
    deadlines: dict[str, int] = {}
    queues: set[str] = set()
    types: set[str] = set()
    queued = 0
    for r, job_id in plain:
        if r.run_at is None:
            name = keys.queue_name(r.job_type.name, r.priority)
            fields, text = _created_fields(r)
            spec = job_spec(settings, r, job_id, None, None, [], None)
            batch.add(
                rq_queue(conn, name), job_id, spec, r.job_type.name, text, history_data(settings, spec["args"][1])
            )
            groups_in(pipe, settings, r, job_id)
            queues.add(name)
            queued += 1
            events.say("created", job_id, r.job_type.name, fields)
        else:
            create_in(conn, pipe, settings, r, job_id)
        for index in (keys.user_jobs(r.user_id), keys.type_jobs(r.job_type.name)):
            indexes.setdefault(index, {})[job_id] = created_ms
        types.add(r.job_type.name)
        if expires(r) and r.deadline_ms:
            deadlines[job_id] = r.deadline_ms
    batch.write(conn, pipe)
    if deadlines:
        pipe.zadd(keys.DEADLINES, deadlines)
    for index, members in indexes.items():
        pipe.zadd(index, members)
    pipe.sadd(keys.JOB_TYPES_SEEN, *sorted(types))
    announce(pipe, sorted(queues))
    wake_in(pipe, queued)  # a token per queued job: as many idle workers as can start one wake now


_CREATED_FIELDS: dict[tuple, tuple[dict, str]] = {}


def _created_fields(r: Resolved) -> tuple[dict, str]:
    """The `created` event's fields of a plain job, as creation._emit_created writes them (many
    jobs of a batch share them: made once)."""
    shape = (r.user_id, r.project_id, r.priority, r.subscription)
    made = _CREATED_FIELDS.get(shape)
    if made is None:
        if len(_CREATED_FIELDS) > 10_000:
            _CREATED_FIELDS.clear()
        fields = {k: v for k, v in zip(("userId", "projectId", "priority", "subscription"), shape) if v is not None}
        made = _CREATED_FIELDS[shape] = (fields, json.dumps(fields, separators=(",", ":")))
    return made


def _is_plain(sub: Submission, resolved: Resolved) -> bool:
    """A submission `submit_each` may create in a batch: one job, nothing to look up."""
    return not (
        sub.job_id
        or sub.idempotency_key
        or sub.unique
        or resolved.depends_on
        or resolved.origin
        or plan_of(resolved)
        or (not sub.skip_cache and cache.wants_cache(resolved.data) and resolved.job_type.cache.ttl > 0)
    )
