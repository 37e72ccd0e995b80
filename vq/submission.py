"""Submission: the one way a job is created, whatever asked for it (CLI, HTTP, batch, plan).

`submit()` validates a `Submission`, resolves its priority from the subscription tier,
expands a job type's plan into child jobs, and hands each job to RQ: onto its type's
queue for that priority, into RQ's scheduled registry when delayed, or deferred on its
dependencies. RQ then does what it does natively; vq watches the rest.
"""

from __future__ import annotations

import json
import re
import sys
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from math import ceil

from redis import Redis, WatchError
from redis.client import Pipeline
from rq import Queue, Retry
from rq.job import JOB_ID_PATTERN, Dependency, Job, JobStatus
from rq.serializers import JSONSerializer

from vq import cache, dependents, events, jobdata, keys, providers
from vq.admission import mark_arrivals_in, wake_in
from vq.config import PRIORITIES, TIERS, Settings
from vq.durations import parse_duration_ms, parse_instant
from vq.errors import Ambiguous, ConfigError, Conflict, HandlerError, InvalidInput, NotFound, RedisUnavailable, VqError
from vq.jobtypes import JobType, get_job_type, load_handler
from vq.maintenance import ended_ttl
from vq.model import VQ_FUNC, iso, result_of
from vq.protect import protector
from vq.rq_seam import private
from vq.jobhash import Batch, Templates
from vq.rq_seam.queue import rq_queue
from vq.webhooks import validate_url

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")
CONTROL_FIELDS = {"jobType", "userId", "projectId", "userSubscription", "subscription", "priority", "delay",
                  "at", "allowPast", "dependsOn", "allowFailure", "data", "idempotencyKey", "webhookUrl"}


@dataclass
class Submission:
    job_type: str
    data: dict = field(default_factory=dict)
    user_id: str | None = None
    project_id: str | None = None
    priority: str | None = None
    subscription: str | None = None
    delay_ms: int | None = None
    at: datetime | None = None
    depends_on: list[str] = field(default_factory=list)
    allow_failure: bool = False
    privileged: bool = False  # an operator at the CLI may set any priority
    idempotency_key: str | None = None  # the same key (per user) returns the same job
    skip_cache: bool = False  # run even if an identical job's result is cached
    allow_past: bool = False  # an `at` in the past runs now instead of being refused
    job_id: str | None = None  # set by vq itself (a recurring tick's deterministic id), never by callers
    origin: dict = field(default_factory=dict)  # where a spawned job came from: recurringId, tickAt
    webhook_url: str | None = None  # POSTed the job's JSON when it ends (vq/webhooks.py)

    @classmethod
    def from_mapping(cls, obj: object, job_type: str | None = None, privileged: bool = False) -> "Submission":
        """Build from the spec's JSON shape (a batch line or an HTTP body).

        With a `data` object the control fields sit beside it; without one, everything
        that is not a control field is the job's data (as in the spec's examples)."""
        if not isinstance(obj, dict):
            raise InvalidInput("a submission must be a JSON object")
        if "data" in obj:
            unknown = sorted(set(obj) - CONTROL_FIELDS - {"options"})  # options beside data: skipCache
            if unknown:
                raise InvalidInput(f"{unknown[0]}: unknown field (job fields go inside 'data')", field=unknown[0])
            data = obj["data"]
        else:
            data = {k: v for k, v in obj.items() if k not in CONTROL_FIELDS or k in ("userId", "projectId")}
        depends = obj.get("dependsOn") or []
        if isinstance(depends, str):
            depends = [depends]
        if not isinstance(depends, list) or not all(isinstance(d, str) for d in depends):
            raise InvalidInput("dependsOn: expected a job id or a list of job ids", field="dependsOn")
        delay = obj.get("delay")
        at = obj.get("at")
        if at is not None and not isinstance(at, str):
            raise InvalidInput("at: expected an ISO 8601 time string", field="at")
        return cls(
            job_type=job_type or _text(obj, "jobType"),
            data=data,
            user_id=_text(obj, "userId"),
            project_id=_text(obj, "projectId"),
            priority=_text(obj, "priority"),
            subscription=_text(obj, "userSubscription") or _text(obj, "subscription"),
            delay_ms=None if delay is None else parse_duration_ms(delay),
            at=parse_instant(at) if at else None,
            depends_on=list(depends),
            allow_failure=bool(obj.get("allowFailure", False)),
            allow_past=bool(obj.get("allowPast", False)),
            privileged=privileged,
            idempotency_key=_text(obj, "idempotencyKey"),
            webhook_url=_text(obj, "webhookUrl"),
            skip_cache=bool((obj.get("options") or {}).get("skipCache") if isinstance(obj.get("options"), dict) else False),
        )


def _text(obj: dict, name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InvalidInput(f"{name}: expected a string", field=name)
    return str(value)


@dataclass
class _Resolved:
    job_type: JobType
    data: dict
    user_id: str
    project_id: str | None
    priority: str
    subscription: str
    run_at: datetime | None
    depends_on: list[str]
    allow_failure: bool
    origin: dict = field(default_factory=dict)
    webhook_url: str | None = None


def _resolve(conn: Redis, settings: Settings, sub: Submission) -> _Resolved:
    if not sub.job_type:
        raise InvalidInput("jobType: missing", field="jobType")
    if not isinstance(sub.job_type, str):
        raise InvalidInput("jobType: expected a string", field="jobType")
    job_type = get_job_type(settings, sub.job_type)
    check_data(settings, sub.data)
    providers.check_named(settings, sub.data)
    protector(settings).check(sub.data)
    for name in ("user_id", "project_id", "priority", "subscription", "idempotency_key", "webhook_url"):
        if getattr(sub, name) is not None and not isinstance(getattr(sub, name), str):
            raise InvalidInput(f"{_camel(name)}: expected a string", field=_camel(name))
    if sub.delay_ms is not None and (not isinstance(sub.delay_ms, int) or isinstance(sub.delay_ms, bool)):
        raise InvalidInput("delay: expected whole milliseconds", field="delay")
    if sub.at is not None and not (isinstance(sub.at, datetime) and sub.at.tzinfo is not None):
        raise InvalidInput("at: expected a time with its zone", field="at")
    if not isinstance(sub.depends_on, list) or not all(isinstance(d, str) for d in sub.depends_on):
        raise InvalidInput("dependsOn: expected a job id or a list of job ids", field="dependsOn")
    protector(settings).check_daemons_open(conn, sub.data)  # a key the daemons lack: the job could never run
    user_id = sub.user_id or data_text(sub.data, "userId")
    if not user_id:
        raise InvalidInput("userId: missing (pass --user or put userId in the data)", field="userId")
    if not _ID.match(user_id):
        raise InvalidInput(f"userId: {user_id!r} is not a valid id (letters, digits, . _ @ : -)", field="userId")
    project_id = sub.project_id or data_text(sub.data, "projectId")
    subscription = sub.subscription or settings.subscription_of(user_id)
    if subscription not in TIERS:
        raise InvalidInput(f"userSubscription: {subscription!r} is not one of {', '.join(TIERS)}", field="userSubscription")
    priority = _priority(settings, sub, subscription)
    run_at = _run_at(settings, sub)
    depends_on = list(dict.fromkeys(sub.depends_on))
    if run_at and depends_on:
        raise InvalidInput("delay: a delayed job cannot also have dependencies", field="delay")
    depends_on = _check_dependencies(conn, settings, depends_on, sub.allow_failure)
    webhook_url = validate_url(sub.webhook_url, settings) if sub.webhook_url is not None else None
    return _Resolved(job_type, sub.data, user_id, project_id, priority, subscription, run_at, depends_on,
                     sub.allow_failure, dict(sub.origin), webhook_url)


def check_data(settings: Settings, data: object, where: str = "data") -> None:
    """Job data storable as strict JSON within the configured limits (vq/jobdata.py)."""
    jobdata.check(data, settings.limits.maxDataDepth, settings.limits.maxDataBytes, where)


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


def data_text(data: dict, name: str) -> str | None:
    """A text field of job data (userId, projectId), when it is one."""
    value = data.get(name)
    return str(value) if isinstance(value, (str, int)) and not isinstance(value, bool) else None


def _priority(settings: Settings, sub: Submission, subscription: str) -> str:
    if sub.priority is None:
        return settings.priority.byTier[subscription]
    if sub.priority not in PRIORITIES:
        raise InvalidInput(f"priority: {sub.priority!r} is not one of high, normal, low", field="priority")
    if sub.privileged:
        return sub.priority
    cap = settings.priority.maxByTier[subscription]
    return sub.priority if PRIORITIES.index(sub.priority) >= PRIORITIES.index(cap) else cap


def _run_at(settings: Settings, sub: Submission) -> datetime | None:
    """When a delayed job is due: never in the past unless asked, never beyond limits.maxDelay."""
    if sub.delay_ms is not None and sub.at is not None:
        raise InvalidInput("delay: give either a delay or an 'at' time, not both", field="delay")
    now = datetime.now(timezone.utc)
    longest = settings.limits.maxDelay
    if sub.delay_ms is not None:
        if sub.delay_ms < 0:
            raise InvalidInput("delay: must not be negative", field="delay")
        if sub.delay_ms > longest:
            raise InvalidInput(f"delay: {sub.delay_ms} ms is beyond the longest allowed delay of {longest} ms "
                               "(limits.maxDelay)", field="delay")
        return now + timedelta(milliseconds=sub.delay_ms) if sub.delay_ms else None
    if sub.at is None:
        return None
    if sub.at <= now:
        if sub.allow_past:
            return None
        raise InvalidInput(f"at: {iso(sub.at)} is in the past (pass allow-past to run it now)", field="at")
    if (sub.at - now).total_seconds() * 1000 > longest:
        raise InvalidInput(f"at: {iso(sub.at)} is beyond the longest allowed delay of {longest} ms "
                           "(limits.maxDelay)", field="at")
    return sub.at


def _check_dependencies(conn: Redis, settings: Settings, ids: list[str], allow_failure: bool) -> list[str]:
    """The dependencies' whole ids (each may be given as a unique prefix: one read for all
    whole ids, a lookup only for the others), once each is known to exist and not to have
    failed (unless failures are allowed)."""
    if not ids:
        return []
    found = Job.fetch_many(ids, connection=conn, serializer=JSONSerializer) if all(
        isinstance(i, str) and JOB_ID_PATTERN.fullmatch(i) for i in ids) else [None] * len(ids)
    whole = []
    for job_id, job in zip(ids, found):
        if job is None:
            job = _by_prefix(conn, settings, job_id)
        status = job.get_status(refresh=False)
        if not allow_failure and status in (JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED):
            raise Conflict(f"dependsOn: job {job.id} has already {status.value}; "
                           "submit with allow-failure to run anyway", field="dependsOn")
        whole.append(job.id)
    return list(dict.fromkeys(whole))


def _by_prefix(conn: Redis, settings: Settings, text: str) -> Job:
    from vq.jobs import fetch_job

    try:
        return fetch_job(conn, text, settings)
    except (NotFound, Ambiguous) as exc:
        raise type(exc)(f"dependsOn: {exc.message}", field="dependsOn") from None


BATCH_CHUNK = 500  # submissions created per transaction by submit_each


def submit_each(conn: Redis, settings: Settings, items: list, build) -> list[dict]:
    """Submit many, each on its own: an item that is refused is reported and the rest go on
    (`vq submit --batch`, POST /api/jobs/bulk). `build(item)` makes the Submission.

    Plain submissions (no dependencies, idempotency key, fixed id, result cache or child
    graph) are created BATCH_CHUNK to a transaction, in order; the others one by one as
    `submit` makes them, after the plain ones before them."""
    outcomes: list[dict] = []
    plain: list[tuple[_Resolved, str]] = []

    def create_plain() -> None:
        if plain:
            with conn.pipeline() as pipe:  # each chunk appears whole, or not at all
                _create_batch(conn, pipe, settings, plain)
                pipe.execute()
            plain.clear()

    for index, item in enumerate(items):
        try:
            sub = build(item)
            resolved = _resolve(conn, settings, sub)
            if _is_plain(sub, resolved):
                job_id = uuid.uuid4().hex
                plain.append((resolved, job_id))
                outcomes.append({"index": index, "ok": True, "id": job_id})
                if len(plain) >= BATCH_CHUNK:
                    create_plain()
                continue
            create_plain()
            outcomes.append({"index": index, "ok": True, "id": _submit_resolved(conn, settings, sub, resolved)})
        except RedisUnavailable:
            raise  # not the item's fault: the whole request fails
        except VqError as exc:
            outcomes.append({"index": index, "ok": False,
                             "error": {"code": exc.code, "message": exc.message, "field": exc.field}})
    create_plain()
    return outcomes


def _create_batch(conn: Redis, pipe: Pipeline, settings: Settings, plain: list[tuple[_Resolved, str]]) -> None:
    """Plain submissions into one transaction: the queued ones in one call of the batch
    script (vq/jobhash.py Batch), the delayed ones as `submit` makes them, and one command
    per index and per queue for the whole batch where `submit` sends one per job."""
    at = datetime.now(timezone.utc)
    created_ms = int(at.timestamp() * 1000)
    batch = Batch(_TEMPLATES, at)
    indexes: dict[str, dict[str, int]] = {}
    queues: set[str] = set()
    types: set[str] = set()
    for r, job_id in plain:
        if r.run_at is None:
            name = keys.queue_name(r.job_type.name, r.priority)
            fields, text = _created_fields(r)
            batch.add(rq_queue(conn, name), job_id, _job_spec(settings, r, job_id, None, None, [], None),
                      r.job_type.name, text)
            queues.add(name)
            events.say("created", job_id, r.job_type.name, fields)
        else:
            _create_in(conn, pipe, settings, r, job_id)
        for index in (keys.user_jobs(r.user_id), keys.type_jobs(r.job_type.name)):
            indexes.setdefault(index, {})[job_id] = created_ms
        types.add(r.job_type.name)
    batch.write(conn, pipe)
    for index, members in indexes.items():
        pipe.zadd(index, members)
    pipe.sadd(keys.JOB_TYPES_SEEN, *sorted(types))
    _announce(pipe, sorted(queues))
    wake_in(pipe)


_CREATED_FIELDS: dict[tuple, tuple[dict, str]] = {}


def _created_fields(r: _Resolved) -> tuple[dict, str]:
    """The `created` event's fields of a plain job, as `_emit_created` writes them (many
    jobs of a batch share them: made once)."""
    shape = (r.user_id, r.project_id, r.priority, r.subscription)
    made = _CREATED_FIELDS.get(shape)
    if made is None:
        if len(_CREATED_FIELDS) > 10_000:
            _CREATED_FIELDS.clear()
        fields = {k: v for k, v in zip(("userId", "projectId", "priority", "subscription"), shape) if v is not None}
        made = _CREATED_FIELDS[shape] = (fields, json.dumps(fields, separators=(",", ":")))
    return made


_TEMPLATES = Templates(VQ_FUNC)


def _push_new(conn: Redis, pipe: Pipeline, queue_name: str, job_id: str, spec: dict) -> None:
    """A new queued job's hash (from a template RQ built: vq/jobhash.py) and its push: two
    commands, where RQ's enqueue sends four and builds a Job object."""
    pipe.hset(Job.key_for(job_id), mapping=_TEMPLATES.hash_for(rq_queue(conn, queue_name), spec,
                                                                 datetime.now(timezone.utc)))
    pipe.rpush(Queue.redis_queue_namespace_prefix + queue_name, job_id)


def _announce(pipe: Pipeline, queue_names: list[str]) -> None:
    """After pushes: RQ's set of queues, and admission's marks (it routes marked lists only)."""
    if queue_names:
        pipe.sadd(Queue.redis_queues_keys, *(Queue.redis_queue_namespace_prefix + n for n in queue_names))
        mark_arrivals_in(pipe, queue_names)


def _is_plain(sub: Submission, resolved: _Resolved) -> bool:
    """A submission `submit_each` may create in a batch: one job, nothing to look up."""
    return not (sub.job_id or sub.idempotency_key or resolved.depends_on or resolved.origin or _plan(resolved)
                or (not sub.skip_cache and cache.wants_cache(resolved.data) and resolved.job_type.cache.ttl > 0))


def validate(conn: Redis, settings: Settings, sub: Submission) -> None:
    """Check a submission as `submit` would, creating nothing (a recurring job's template)."""
    _resolve(conn, settings, sub)


def submit(conn: Redis, settings: Settings, sub: Submission) -> str:
    """Create the job (and, for a planned type, its graph of children); return its id.

    With an idempotency key already used by this user within the window, return the job
    that key created instead of making a second one."""
    return _submit_resolved(conn, settings, sub, _resolve(conn, settings, sub))


def _submit_resolved(conn: Redis, settings: Settings, sub: Submission, resolved: _Resolved) -> str:
    job_id = sub.job_id or uuid.uuid4().hex
    if sub.idempotency_key:
        existing = _claim_idempotency_key(conn, settings, resolved.user_id, sub.idempotency_key, job_id)
        if existing:
            return existing
    key = None
    if not resolved.depends_on and resolved.run_at is None and not sub.skip_cache and cache.wants_cache(resolved.data):
        key = cache.cache_key(resolved.job_type, resolved.user_id, resolved.data)
        hit = cache.lookup(conn, resolved.job_type.name, key) if key else None
        if hit is not None:
            _create_cached(conn, settings, resolved, job_id, hit)
            return job_id
    plan = _plan(resolved)
    if not plan:
        if resolved.depends_on:  # before it exists: no trim can take a dependency from now on
            dependents.register(conn, {job_id: resolved.depends_on}, existing=resolved.depends_on)
        _enqueue(conn, settings, resolved, job_id, step=None, parent_id=None, children=[], cache_key=key,
                 if_absent=bool(sub.job_id))
        return job_id
    step_ids = {step["step"]: _child_id(job_id, step["step"]) if sub.job_id else uuid.uuid4().hex for step in plan}
    step_deps = {step["step"]: [step_ids[s] for s in step.get("dependsOn", [])] + (
        resolved.depends_on if not step.get("dependsOn") else []) for step in plan}
    depended = {s for step in plan for s in step.get("dependsOn", [])}
    final_steps = [step_ids[s["step"]] for s in plan if s["step"] not in depended]
    # The whole graph's edges before its first child can run and end (vq/dependents.py).
    dependents.register(conn, {**{step_ids[name]: deps for name, deps in step_deps.items()}, job_id: final_steps},
                        existing=resolved.depends_on)
    for step in plan:
        child = _Resolved(
            job_type=get_job_type(settings, step["jobType"]),
            data={**step.get("data", {}), "userId": resolved.user_id, "projectId": resolved.project_id},
            user_id=resolved.user_id, project_id=resolved.project_id, priority=resolved.priority,
            subscription=resolved.subscription,
            run_at=resolved.run_at if not step.get("dependsOn") else None,
            depends_on=step_deps[step["step"]],
            allow_failure=False,
        )
        if child.run_at and child.depends_on:
            child.run_at = None
        if sub.job_id and conn.exists(Job.key_for(step_ids[step["step"]])):
            continue  # made by an earlier attempt at this same graph
        _enqueue(conn, settings, child, step_ids[step["step"]], step=step["step"], parent_id=job_id, children=[])
    resolved.depends_on, resolved.run_at, resolved.allow_failure = final_steps, None, False
    _enqueue(conn, settings, resolved, job_id, step=None, parent_id=None, children=list(step_ids.values()),
             cache_key=key)
    return job_id


def _child_id(parent_id: str, step: str) -> str:
    """A planned child's id when the parent's id is fixed: a second attempt at the same
    graph (after a crash) finds the children the first attempt made instead of doubling them."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"vq:{parent_id}/{step}").hex


def _claim_idempotency_key(conn: Redis, settings: Settings, user_id: str, key: str, job_id: str) -> str | None:
    """Reserve `key` for `job_id`; or return the live job the key already names."""
    if not _ID.match(key):
        raise InvalidInput(f"idempotencyKey: {key!r} is not a valid key (letters, digits, . _ @ : -)",
                           field="idempotencyKey")
    name = keys.idempotency(user_id, key)
    window = settings.limits.idempotencyWindow
    for _ in range(3):
        if conn.set(name, job_id, nx=True, px=window):
            return None
        existing = conn.get(name)
        if existing and conn.exists(Job.key_for(existing.decode())):
            return existing.decode()
        conn.delete(name)  # it named a job that is gone: take it over
    raise Conflict(f"idempotencyKey: {key!r} is being claimed concurrently; try again", field="idempotencyKey")


def _plan(resolved: _Resolved) -> list[dict]:
    """A type whose handler module has `plan(data)` runs as a graph of child jobs."""
    try:
        handler = load_handler(resolved.job_type.handler)
    except ConfigError:
        return []  # the handler may live only on worker hosts; the worker reports it
    planner = getattr(sys.modules[handler.__module__], "plan", None)
    if planner is None:
        return []
    try:
        return planner(resolved.data)
    except HandlerError as exc:
        raise InvalidInput(f"data: {exc}", field="data") from None


def _ttls(settings: Settings) -> tuple[int, int]:
    """RQ result/failure TTLs: the Redis expiry of ended jobs (vq/maintenance.py ended_ttl)."""
    opts = settings.queue.defaultJobOptions
    return ended_ttl(opts.removeOnComplete), ended_ttl(opts.removeOnFail)


def _job_spec(settings: Settings, r: _Resolved, job_id: str, step: str | None, parent_id: str | None,
              children: list[str], cache_key: str | None) -> dict:
    """The RQ job's arguments: its data, timeout, TTLs, retries, and vq's fields in meta."""
    intervals = r.job_type.retry_intervals()
    result_ttl, failure_ttl = _ttls(settings)
    meta = {"jobType": r.job_type.name, "userId": r.user_id, "subscription": r.subscription,
            "maxAttempts": r.job_type.attempts, **r.origin}  # the priority is the queue's (model.priority_of)
    # The others only when they say something: readers default them (vq.model), and a
    # waiting job's meta is a good part of the memory it takes in Redis.
    optional = {"projectId": r.project_id, "dependsOn": r.depends_on, "allowFailure": r.allow_failure,
                "step": step, "parentId": parent_id, "children": children, "scheduledFor": iso(r.run_at),
                "webhookUrl": r.webhook_url}
    meta.update({name: value for name, value in optional.items() if value})
    if cache_key:
        meta.update(cacheKey=cache_key, cacheTtl=r.job_type.cache.ttl)
    return dict(
        args=(r.job_type.name, protector(settings).seal(r.data)),  # credentials encrypted at rest
        timeout=max(1, ceil(r.job_type.timeout_ms / 1000)), result_ttl=result_ttl, failure_ttl=failure_ttl, job_id=job_id, meta=meta,
        retry=Retry(max=len(intervals), interval=intervals) if intervals else None,
        description=f"{r.job_type.name} for {r.user_id}",
    )


def _enqueue(conn: Redis, settings: Settings, r: _Resolved, job_id: str, *, step: str | None,
             parent_id: str | None, children: list[str], cache_key: str | None = None,
             if_absent: bool = False) -> None:
    """Create the job. `if_absent` (a fixed id: a recurring tick's) creates it only if no
    job has that id, atomically, so two daemons firing the same tick make one job."""
    if r.depends_on:  # RQ checks the dependencies in its own WATCHed transaction
        queue = rq_queue(conn, keys.queue_name(r.job_type.name, r.priority))
        common = _job_spec(settings, r, job_id, step, parent_id, children, cache_key)
        job = queue.enqueue_call(VQ_FUNC, depends_on=Dependency(jobs=r.depends_on, allow_failure=r.allow_failure),
                                 **common)
        _record_created(conn, r, job, parent_id, step)
        return
    with conn.pipeline() as pipe:  # the job and its indexes appear together, or not at all
        if if_absent:
            pipe.watch(Job.key_for(job_id))
            if pipe.exists(Job.key_for(job_id)):
                return
            pipe.multi()
        pushed = _create_in(conn, pipe, settings, r, job_id, step=step, parent_id=parent_id, children=children,
                            cache_key=cache_key)
        _index_in(pipe, r, job_id)
        if pushed:
            _announce(pipe, [pushed])
            wake_in(pipe)
        try:
            pipe.execute()
        except WatchError:  # created meanwhile by whoever else fired this tick
            return


def _create_in(conn: Redis, pipe: Pipeline, settings: Settings, r: _Resolved, job_id: str, *,
               step: str | None = None, parent_id: str | None = None, children: list[str] | None = None,
               cache_key: str | None = None) -> str | None:
    """A job without dependencies and its `created` event, into the caller's transaction
    (`submit`, and a batch's delayed jobs); returns its queue's name when it was pushed
    there, None when it is delayed (in RQ's scheduled registry)."""
    name = keys.queue_name(r.job_type.name, r.priority)
    spec = _job_spec(settings, r, job_id, step, parent_id, children or [], cache_key)
    if r.run_at is not None:
        job = rq_queue(conn, name).enqueue_at(r.run_at, VQ_FUNC, pipeline=pipe, **_enqueue_at_kwargs(spec))
        _emit_created(pipe, r, job.id, job.get_status(refresh=False), parent_id, step)
        return None
    _push_new(conn, pipe, name, job_id, spec)
    _emit_created(pipe, r, job_id, JobStatus.QUEUED, parent_id, step)
    return name


def _create_cached(conn: Redis, settings: Settings, r: _Resolved, job_id: str, source: Job) -> Job:
    """A job born finished, carrying the result of the identical job it matched."""
    queue = rq_queue(conn, keys.queue_name(r.job_type.name, r.priority))
    spec = _job_spec(settings, r, job_id, None, None, [], None)
    spec["meta"].update(cached=True, cachedFrom=source.id, progress={"percent": 100.0, "message": "cached result"})
    job = queue.create_job(VQ_FUNC, status=JobStatus.FINISHED, **spec)
    now = datetime.now(timezone.utc)
    job.enqueued_at = job.started_at = job.ended_at = now
    private.set_result(job, result_of(source))
    with conn.pipeline() as pipe:
        job.save(pipeline=pipe)
        private.end_as_finished(job, spec["result_ttl"], pipeline=pipe)
        pipe.execute()
    result = events.result_for_history(json.dumps(private.result(job), separators=(",", ":")),
                                       settings.history.maxResultBytes)
    _record_created(conn, r, job, None, None, result=result, cachedFrom=source.id)
    return job


def _record_created(conn: Redis, r: _Resolved, job: Job, parent_id: str | None, step: str | None,
                    result: str | None = None, **extra) -> None:
    """For a job RQ made (with dependencies, or born cached: with its `result` for the
    history): index it, emit `created`, and wake a worker if it is queued, in one round trip."""
    status = job.get_status(refresh=False)
    with conn.pipeline(transaction=False) as pipe:
        _index_in(pipe, r, job.id)
        _emit_created(pipe, r, job.id, status, parent_id, step, result=result, **extra)
        if status == JobStatus.QUEUED:
            wake_in(pipe)
        pipe.execute()


def _index_in(pipe: Pipeline, r: _Resolved, job_id: str) -> None:
    """The job in its user's and its type's index (`vq jobs`)."""
    created_ms = int(time.time() * 1000)
    pipe.zadd(keys.user_jobs(r.user_id), {job_id: created_ms})
    pipe.zadd(keys.type_jobs(r.job_type.name), {job_id: created_ms})
    pipe.sadd(keys.JOB_TYPES_SEEN, r.job_type.name)


def _emit_created(pipe: Pipeline, r: _Resolved, job_id: str, status: JobStatus | None,
                  parent_id: str | None = None, step: str | None = None, result: str | None = None,
                  **extra) -> None:
    """The `created` event and a recurring job's run record."""
    events.emit(pipe, "created", job_id, r.job_type.name, result=result, userId=r.user_id, projectId=r.project_id,
                priority=r.priority, subscription=r.subscription,
                status=status.value if status and status != JobStatus.QUEUED else None, parentId=parent_id, step=step,
                dependsOn=r.depends_on or None, allowFailure=r.allow_failure or None,
                recurringId=r.origin.get("recurringId"),
                webhookUrl=r.webhook_url if status == JobStatus.FINISHED else None, **extra)  # born finished: cached
    if r.origin.get("recurringId"):
        created_ms = int(time.time() * 1000)
        pipe.zadd(keys.recurring_runs(r.origin["recurringId"]), {job_id: r.origin.get("tickMs", created_ms)})
        pipe.hincrby(keys.recurring_stats(r.origin["recurringId"]), "runs", 1)
        if status == JobStatus.FINISHED:  # a cached result: the run succeeded without a worker
            pipe.hincrby(keys.recurring_stats(r.origin["recurringId"]), "succeeded", 1)
            pipe.hset(keys.recurring_outcomes(r.origin["recurringId"]), job_id, "finished")


def _enqueue_at_kwargs(common: dict) -> dict:
    out = dict(common)
    out["job_timeout"] = out.pop("timeout")
    return out
