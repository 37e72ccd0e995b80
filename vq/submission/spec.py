"""A job's RQ arguments: what `Queue.create_job`/`enqueue_at` are given for a resolved
submission (its data sealed, timeout, TTLs, retries, and vq's fields in meta), and the
template hashes new queued jobs are built from (vq/jobhash.py)."""

from __future__ import annotations

import json
from math import ceil

from rq import Retry

from vq import telemetry
from vq.config import Settings
from vq.jobhash import Templates
from vq.maintenance import ended_ttl
from vq.model import VQ_FUNC, iso
from vq.protect import protector
from vq.submission.validation import Resolved
from vq.telemetry import jobs as trace_jobs

TEMPLATES = Templates(VQ_FUNC)


def history_data(settings: Settings, sealed: object) -> str | None:
    """A job's data as the `created` event carries it to the history database (`--where` on
    data fields), only while some field is indexed (history.indexedFields: without one,
    events and Redis carry nothing more): its sealed JSON when at most history.maxDataBytes
    long; else a projection of just the indexed fields it has (as many, in the list's order,
    as fit in that many bytes), which is all `--where` reads; None when nothing fits."""
    limit = settings.history.maxDataBytes
    if limit <= 0 or not settings.history.indexedFields or not isinstance(sealed, dict):
        return None
    text = _compact(sealed)
    if _fits(text, limit):
        return text
    projection: dict = {}
    for field in settings.history.indexedFields:
        path = field.split(".")[1:]
        found, value = _at(sealed, path)
        if not found:
            continue
        candidate = _with(projection, path, value)
        if _fits(_compact(candidate), limit):
            projection = candidate
    return _compact(projection) if projection else None


def _compact(value: object) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def _fits(text: str, limit: int) -> bool:
    return len(text) <= limit and len(text.encode()) <= limit


def _at(data: dict, path: list[str]) -> tuple[bool, object]:
    """(found, value) of a dotted path in the data (objects only, as json_extract's `$."a"."b"`)."""
    value: object = data
    for part in path:
        if not isinstance(value, dict) or part not in value:
            return False, None
        value = value[part]
    return True, value


def _with(projection: dict, path: list[str], value: object) -> dict:
    """A copy of the projection with `value` at `path` (a field listed under another one's
    path, data.a and data.a.b, keeps the first that fits)."""
    out = json.loads(_compact(projection))
    node = out
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            return projection
        node = child
    if path[-1] in node:
        return projection
    node[path[-1]] = value
    return out


def _ttls(settings: Settings) -> tuple[int, int]:
    """RQ result/failure TTLs: the Redis expiry of ended jobs (vq/maintenance.py ended_ttl)."""
    opts = settings.queue.defaultJobOptions
    return ended_ttl(opts.removeOnComplete), ended_ttl(opts.removeOnFail)


def job_spec(
    settings: Settings,
    r: Resolved,
    job_id: str,
    step: str | None,
    parent_id: str | None,
    children: list[str],
    cache_key: str | None,
    unique_meta: dict | None = None,
) -> dict:
    """The RQ job's arguments: its data, timeout, TTLs, retries, and vq's fields in meta."""
    intervals = r.job_type.retry_intervals()
    result_ttl, failure_ttl = _ttls(settings)
    meta = {
        "jobType": r.job_type.name,
        "userId": r.user_id,
        "subscription": r.subscription,
        "maxAttempts": r.job_type.attempts,
        **r.origin,
    }  # the priority is the queue's (model.priority_of)
    # The others only when they say something: readers default them (vq.model), and a
    # waiting job's meta is a good part of the memory it takes in Redis.
    optional = {
        "projectId": r.project_id,
        "dependsOn": r.depends_on,
        "allowFailure": r.allow_failure,
        "step": step,
        "parentId": parent_id,
        "children": children,
        "scheduledFor": iso(r.run_at),
        "webhookUrl": r.webhook_url,
    }
    meta.update({name: value for name, value in optional.items() if value})
    if telemetry.on():  # its `send` span's context: every later span of the job is its child
        traceparent = trace_jobs.sent(r.job_type.name, job_id)
        if traceparent:
            meta[telemetry.META_KEY] = traceparent
    if cache_key:
        meta.update(cacheKey=cache_key, cacheTtl=r.job_type.cache.ttl)
    if unique_meta:
        meta["unique"] = unique_meta
    if r.deadline_ms:
        meta["deadline"] = r.deadline_ms
        if r.job_type.on_deadline == "run":
            meta["onDeadline"] = "run"
    return dict(
        args=(r.job_type.name, protector(settings).seal(r.data)),  # credentials encrypted at rest
        timeout=max(1, ceil(r.job_type.timeout_ms / 1000)),
        result_ttl=result_ttl,
        failure_ttl=failure_ttl,
        job_id=job_id,
        meta=meta,
        retry=Retry(max=len(intervals), interval=intervals) if intervals else None,  # type: ignore[arg-type]  # RQ annotates int seconds; it keeps fractions (JobType.retry_intervals)
        description=f"{r.job_type.name} for {r.user_id}",
    )


def enqueue_at_kwargs(common: dict) -> dict:
    """`job_spec`'s arguments as RQ's enqueue_at names them."""
    out = dict(common)
    out["job_timeout"] = out.pop("timeout")
    return out
