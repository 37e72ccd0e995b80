"""Batches with callbacks (Sidekiq Pro's batches, Celery's chord): a set of jobs, followed
as one, with callbacks that fire exactly once.

- on death: the first job of the batch that failed for good (at once, open or closed);
- on complete: every job ended (done, failed for good, canceled), once the batch is closed;
- on success: every job done, once the batch is closed.

A batch made without `open` is closed as soon as its jobs are in it; an open one takes more
jobs (`add`) until `close`. The counting and the claim of each callback are one Lua script
(vq/batch_counts.py); the delivery, at least once and deduplicated, is
vq/batch_callbacks.py's. The CLI (`vq batch`) and the HTTP API (/api/batches) call these.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass

from redis import Redis
from redis.typing import EncodableT, FieldT

from vq import batch_counts, batch_lists, batch_views, jobdata, jobs, keys
from vq.batch_callbacks import parse_callback
from vq.batch_views import text_map
from vq.config import Settings
from vq.errors import Conflict, InvalidInput, NotFound, VqError
from vq.replies import optional_text, texts
from vq.submission import Submission
from vq.submission.creation import submit_resolved
from vq.submission.validation import resolve
from vq.telemetry import jobs as trace_jobs

MAX_DESCRIPTION = 1000
MAX_JOBS = 10_000  # jobs per create or add call
SUMMARY_IDS = 1000  # job ids a callback's summary lists (a callback job's data has a size limit)
BATCH_ID = r"^[0-9a-f]{32}$"


@dataclass
class NewBatch:
    """What `create` makes: the owner, the callbacks by kind, and the rest of the batch's record."""

    user_id: str
    subscription: str | None = None
    callbacks: dict | None = None  # kind -> {"url": ...} or {"jobType": ..., "data": {...}}
    description: str | None = None
    meta: dict | None = None
    open: bool = False


def create(conn: Redis, settings: Settings, new: NewBatch, items: list[tuple[str, Submission]]) -> dict:
    """Make a batch of `items` ((label, submission): the label names an item in an error),
    closed at once unless `new.open`. Every item is checked before anything is written: one
    bad item refuses the whole batch."""
    if not items and not new.open:
        raise InvalidInput("jobs: a batch needs at least one job (or --open, and add them later)", field="jobs")
    callbacks = {
        kind: parse_callback(conn, settings, kind, spec, new.user_id) for kind, spec in (new.callbacks or {}).items()
    }
    description = _description(new.description)
    meta = _meta(settings, new.meta)
    batch_id = uuid.uuid4().hex
    checked = _checked(conn, settings, batch_id, new.user_id, new.subscription, items)
    created_ms = int(time.time() * 1000)
    record: dict[FieldT, EncodableT] = {
        "id": batch_id,
        "userId": new.user_id,
        "createdAt": str(created_ms),
        "closed": "0",
        "done": "0",
        "failed": "0",
        "canceled": "0",
        **({"subscription": new.subscription} if new.subscription else {}),
        **({"description": description} if description else {}),
        **({"meta": json.dumps(meta)} if meta else {}),
        **{f"cb:{kind}": json.dumps(spec) for kind, spec in callbacks.items()},
    }
    with conn.pipeline() as pipe:
        pipe.hset(keys.batch(batch_id), mapping=record)
        pipe.sadd(keys.BATCHES_ACTIVE, batch_id)
        batch_lists.index_in(pipe, batch_id, new.user_id, created_ms)  # `vq batch list`: same round trip
        pipe.execute()
    _submit_into(conn, settings, batch_id, checked)
    if not new.open:
        batch_counts.sync(conn, batch_id, "close", [])
    return show(conn, batch_id)


def add(conn: Redis, settings: Settings, batch_id: str, items: list[tuple[str, Submission]]) -> dict:
    """Add jobs to an open batch (all checked first, as `create`)."""
    record = _record(conn, batch_id)
    if record.get("closed") == "1":
        raise Conflict(f"batch {batch_id} is closed: jobs can be added only while it is open")
    if not items:
        raise InvalidInput("jobs: nothing to add", field="jobs")
    checked = _checked(conn, settings, batch_id, record["userId"], record.get("subscription"), items)
    _submit_into(conn, settings, batch_id, checked)
    return show(conn, batch_id)


def close(conn: Redis, batch_id: str) -> dict:
    """Close an open batch: from now on its on complete and on success may fire."""
    code, _fired = batch_counts.sync(conn, _whole_id(batch_id), "close", [])
    if code == -1:
        raise NotFound(f"no such batch {batch_id!r}")
    if code == -3:
        raise Conflict(f"batch {batch_id} is already closed")
    return show(conn, batch_id)


def show(conn: Redis, batch_id: str, with_jobs: bool = True) -> dict:
    """The batch's record, counts and (with `with_jobs`) its jobs, each with its outcome or status."""
    record = _record(conn, batch_id)
    members = sorted(texts(conn.smembers(keys.batch_jobs(batch_id))))
    outcomes = text_map(conn.hgetall(keys.batch_ended(batch_id)))
    view = batch_views.header(record, len(members), len(outcomes))
    if with_jobs:
        with conn.pipeline(transaction=False) as pipe:
            for job_id in members:
                pipe.hmget(keys.rq_job(job_id), "status", "origin")
            found = dict(zip(members, pipe.execute(), strict=True))
        view["jobs"] = [
            {"id": m, "jobType": _type_of(found[m][1]), "outcome": outcomes.get(m), "status": _status_of(found[m][0])}
            if m not in outcomes
            else {"id": m, "jobType": _type_of(found[m][1]), "outcome": outcomes[m]}
            for m in members
        ]
    return view


def _status_of(raw) -> str:
    return optional_text(raw) or "missing"


def _type_of(origin) -> str | None:
    """A member's job type, from its queue (`<type>.<priority>`); None once its job is gone."""
    queue = optional_text(origin)
    return (queue.rpartition(".")[0] or queue) if queue else None


def summary(conn: Redis, batch_id: str) -> dict:
    """What a callback gets: the batch's id, description, meta, counts and job ids (the
    first SUMMARY_IDS, sorted; `jobIdsOmitted` says how many more: `vq batch show` has all)."""
    view = show(conn, batch_id, with_jobs=False)
    ids = sorted(texts(conn.smembers(keys.batch_jobs(batch_id))))
    return {
        "id": view["id"],
        "userId": view["userId"],
        "description": view["description"],
        "meta": view["meta"],
        "counts": view["counts"],
        "jobIds": ids[:SUMMARY_IDS],
        **({"jobIdsOmitted": len(ids) - SUMMARY_IDS} if len(ids) > SUMMARY_IDS else {}),
    }


def owner(conn: Redis, batch_id: str) -> str | None:
    """The batch's user, or None when there is no such batch."""
    return optional_text(conn.hget(keys.batch(_whole_id(batch_id)), "userId"))


def _record(conn: Redis, batch_id: str) -> dict:
    record = text_map(conn.hgetall(keys.batch(_whole_id(batch_id))))
    if not record:
        raise NotFound(f"no such batch {batch_id!r}")
    return record


def _whole_id(batch_id: str) -> str:
    if not isinstance(batch_id, str) or len(batch_id) != 32 or any(c not in "0123456789abcdef" for c in batch_id):
        raise NotFound(f"no such batch {batch_id!r}")
    return batch_id


def _description(value: object) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidInput("description: expected text", field="description")
    if len(value) > MAX_DESCRIPTION:
        raise InvalidInput(f"description: longer than {MAX_DESCRIPTION} characters", field="description")
    return value


def _meta(settings: Settings, value: object) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InvalidInput("meta: expected a JSON object", field="meta")
    jobdata.check(value, settings.limits.maxDataDepth, settings.limits.maxDataBytes, "meta")
    return value


def _checked(
    conn: Redis,
    settings: Settings,
    batch_id: str,
    user_id: str,
    subscription: str | None,
    items: list[tuple[str, Submission]],
) -> list:
    """Each item resolved as the batch's user's job in the batch, at the batch's tier unless
    it names its own (nothing written), or the first fault, named by its item's label."""
    if len(items) > MAX_JOBS:
        raise InvalidInput(f"jobs: at most {MAX_JOBS} per call", field="jobs")
    checked = []
    for label, sub in items:
        try:
            if sub.user_id is None and isinstance(sub.data, dict) and sub.data.get("userId") is not None:
                sub.user_id = str(sub.data["userId"])
            if sub.user_id is not None and sub.user_id != user_id:
                raise InvalidInput(f"userId: {sub.user_id!r} is not the batch's user {user_id!r}", field="userId")
            if sub.unique is not None:  # a key could hand back a job that is not the batch's
                raise InvalidInput("uniqueKey: not for a job in a batch", field="uniqueKey")
            sub.user_id = user_id
            sub.subscription = sub.subscription or subscription
            sub.origin = {**sub.origin, "batchId": batch_id}
            checked.append((sub, resolve(conn, settings, sub)))
        except VqError as exc:
            raise type(exc)(f"{label}: {exc.message}", field=exc.field) from None
    return checked


def _submit_into(conn: Redis, settings: Settings, batch_id: str, checked: list) -> list[str]:
    """Create the jobs, then make them the batch's (counting any that ended meanwhile). A
    batch closed in between refuses them: they are canceled, and the caller told."""
    with trace_jobs.batch_sending(len(checked)):  # one trace for the batch's jobs, when traced
        ids = [submit_resolved(conn, settings, sub, resolved).id for sub, resolved in checked]
    for start in range(0, len(ids), batch_counts.SWEEP_CHUNK):
        chunk = ids[start : start + batch_counts.SWEEP_CHUNK]
        code, _fired = batch_counts.sync(conn, batch_id, "add", chunk)
        if code == -2:
            for job_id in ids[start:]:
                _cancel_quietly(conn, settings, job_id)
            raise Conflict(
                f"batch {batch_id} was closed while jobs were added: {len(ids) - start} of them were canceled"
            )
        if code == -1:
            raise NotFound(f"no such batch {batch_id!r}")
    return ids


def _cancel_quietly(conn: Redis, settings: Settings, job_id: str) -> None:
    try:
        jobs.cancel(conn, job_id, "its batch was closed before it joined", settings)
    except VqError:
        pass
