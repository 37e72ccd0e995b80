"""Creation: a resolved submission made into RQ jobs (and, for a planned type, its graph).

`submit()` validates (vq/submission/validation.py), then hands each job to RQ: onto its
type's queue for its priority, into RQ's scheduled registry when delayed, or deferred on
its dependencies; born finished when an identical job's result is cached. The job, its
indexes and its `created` event appear in one transaction.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime

from redis import Redis, WatchError
from redis.client import Pipeline
from rq import Queue
from rq.job import Dependency, Job, JobStatus
from rq.serializers import JSONSerializer

from vq import cache, capacity, dependents, events, groups, keys
from vq.admission import mark_arrivals_in, wake_in
from vq.config import Settings
from vq.errors import Conflict, HandlerError, InvalidInput
from vq.jobhash import Batch
from vq.jobtypes import get_job_type, handler_companion
from vq.model import VQ_FUNC, iso, result_of
from vq.protect import protector
from vq.recurring import runs as recurring_runs
from vq.replies import optional_text
from vq.rq_seam import private
from vq.rq_seam.queue import rq_queue
from vq.submission import unique
from vq.submission.spec import TEMPLATES, enqueue_at_kwargs, history_data, job_spec
from vq.submission.unique import Submitted
from vq.submission.validation import VALID_ID, Resolved, Submission, resolve
from vq.telemetry import jobs as trace_jobs


def _push_new(
    conn: Redis, pipe: Pipeline, queue_name: str, job_id: str, spec: dict, job_type: str, created: dict, data
) -> None:
    """A new queued job's hash (from a template RQ built: vq/jobhash.py), its push and its
    `created` event (`created`: the event's fields), in one call of vq/lua/create.lua, where
    RQ's enqueue sends four commands and builds a Job object. The same call run again
    (redis-py's retry after a lost reply) pushes nothing twice."""
    batch = Batch(TEMPLATES, datetime.now(UTC))
    batch.add(rq_queue(conn, queue_name), job_id, spec, job_type, json.dumps(created, separators=(",", ":")), data)
    batch.write_as_text(pipe)


def groups_in(pipe: Pipeline, settings: Settings, r: Resolved, job_id: str) -> None:
    """The job's limit-group keys into its hash (vq/groups.py), and what it needs of a worker's
    resources, in the transaction that makes it: admission leases from them."""
    found = groups.key_values(settings, r.job_type.name, r.user_id, r.project_id, r.data)
    if found:
        pipe.hset(Job.key_for(job_id), keys.GROUPS_FIELD, groups.encoded(found))
    if r.resources:  # what it needs of a worker's resources (vq/capacity.py): admission compares
        pipe.hset(Job.key_for(job_id), keys.RESOURCES_FIELD, capacity.encoded(r.resources))


def announce(pipe: Pipeline, queue_names: list[str]) -> None:
    """After pushes: RQ's set of queues, and admission's marks (it routes marked lists only)."""
    if queue_names:
        pipe.sadd(Queue.redis_queues_keys, *(Queue.redis_queue_namespace_prefix + n for n in queue_names))
        mark_arrivals_in(pipe, queue_names)


def submit(conn: Redis, settings: Settings, sub: Submission) -> str:
    """Create the job (and, for a planned type, its graph of children); return its id.

    With an idempotency key already used by this user within the window, return the job
    that key created instead of making a second one."""
    return submit_outcome(conn, settings, sub).id


def submit_outcome(conn: Redis, settings: Settings, sub: Submission) -> Submitted:
    """`submit`, saying also whether a uniqueKey returned an existing job (vq/submission/unique.py)."""
    return submit_resolved(conn, settings, sub, resolve(conn, settings, sub))


def submit_resolved(conn: Redis, settings: Settings, sub: Submission, resolved: Resolved) -> Submitted:
    """`submit` once the submission is resolved (`submit_each` resolves first to sort plain from the rest)."""
    job_id = sub.job_id or uuid.uuid4().hex
    # its `send` span, when traced (vq/telemetry/): linked to its dependencies' traces
    with trace_jobs.sending(resolved.job_type.name, job_id, conn, resolved.depends_on):
        if sub.idempotency_key:
            existing = _claim_idempotency_key(conn, settings, resolved.user_id, sub.idempotency_key, job_id)
            if existing:
                return Submitted(existing)
        if resolved.unique is not None:
            return _submit_unique(conn, settings, resolved, job_id)
        return Submitted(_submit_new(conn, settings, sub, resolved, job_id))


def _submit_new(conn: Redis, settings: Settings, sub: Submission, resolved: Resolved, job_id: str) -> str:
    key = None
    if not resolved.depends_on and resolved.run_at is None and not sub.skip_cache and cache.wants_cache(resolved.data):
        key = cache.cache_key(resolved.job_type, resolved.user_id, resolved.data)
        hit = cache.lookup(conn, resolved.job_type.name, key) if key else None
        if hit is not None:
            _create_cached(conn, settings, resolved, job_id, hit)
            return job_id
    plan = plan_of(resolved)
    if not plan:
        if resolved.depends_on:  # before it exists: no trim can take a dependency from now on
            dependents.register(conn, {job_id: resolved.depends_on}, existing=resolved.depends_on)
        _enqueue(
            conn,
            settings,
            resolved,
            job_id,
            step=None,
            parent_id=None,
            children=[],
            cache_key=key,
            if_absent=bool(sub.job_id),
        )
        return job_id
    step_ids = {step["step"]: _child_id(job_id, step["step"]) if sub.job_id else uuid.uuid4().hex for step in plan}
    step_deps = {
        step["step"]: [step_ids[s] for s in step.get("dependsOn", [])]
        + (resolved.depends_on if not step.get("dependsOn") else [])
        for step in plan
    }
    depended = {s for step in plan for s in step.get("dependsOn", [])}
    final_steps = [step_ids[s["step"]] for s in plan if s["step"] not in depended]
    # The whole graph's edges before its first child can run and end (vq/dependents.py).
    dependents.register(
        conn,
        {**{step_ids[name]: deps for name, deps in step_deps.items()}, job_id: final_steps},
        existing=resolved.depends_on,
    )
    for step in plan:
        child = Resolved(
            job_type=get_job_type(settings, step["jobType"]),
            data={**step.get("data", {}), "userId": resolved.user_id, "projectId": resolved.project_id},
            user_id=resolved.user_id,
            project_id=resolved.project_id,
            priority=resolved.priority,
            subscription=resolved.subscription,
            run_at=resolved.run_at if not step.get("dependsOn") else None,
            depends_on=step_deps[step["step"]],
            allow_failure=False,
            deadline_ms=resolved.deadline_ms,
        )
        if child.run_at and child.depends_on:
            child.run_at = None
        if sub.job_id and conn.exists(Job.key_for(step_ids[step["step"]])):
            continue  # made by an earlier attempt at this same graph
        _enqueue(conn, settings, child, step_ids[step["step"]], step=step["step"], parent_id=job_id, children=[])
    resolved.depends_on, resolved.run_at, resolved.allow_failure = final_steps, None, False
    _enqueue(
        conn, settings, resolved, job_id, step=None, parent_id=None, children=list(step_ids.values()), cache_key=key
    )
    return job_id


def _submit_unique(conn: Redis, settings: Settings, r: Resolved, job_id: str) -> Submitted:
    """A job with a uniqueKey: created, or the job that holds the key, or (debounce) that
    delayed job with this submission's data and a later start, in one WATCHed transaction
    (vq/submission/unique.py). No result cache: a returned job is the key's, not a copy."""
    spec = r.unique
    assert spec is not None
    if plan_of(r):
        raise InvalidInput(
            f"uniqueKey: not for {r.job_type.name}, a planned job type (a graph of jobs)", field="uniqueKey"
        )
    if spec.mode == "debounce":
        r.run_at = unique.first_start(spec)
    ahead_ms = max(0, int((r.run_at.timestamp() - time.time()) * 1000)) if r.run_at else 0

    def create(pipe: Pipeline, unique_meta: dict) -> None:
        pushed = create_in(conn, pipe, settings, r, job_id, unique_meta=unique_meta)
        _index_in(pipe, r, job_id)
        if pushed:
            announce(pipe, [pushed])
            wake_in(pipe)

    def debounce_into(pipe: Pipeline, existing: str, fields: dict, meta: dict, start: datetime) -> None:
        data = TEMPLATES.varying(job_spec(settings, r, existing, None, None, [], None))[0]
        pipe.hset(Job.key_for(existing), mapping={"data": data, "meta": JSONSerializer.dumps(meta)})
        pipe.hdel(Job.key_for(existing), keys.GROUPS_FIELD, keys.RESOURCES_FIELD)
        groups_in(pipe, settings, r, existing)  # its limit groups' keys follow its new data
        pipe.zadd(keys.rq_scheduled(fields["origin"]), {existing: start.timestamp()}, xx=True)
        # not a status change (the history keeps no row): for those who follow the job's events
        events.emit(
            pipe,
            "debounced",
            existing,
            r.job_type.name,
            data=history_data(settings, protector(settings).seal(r.data)),  # the history's copy follows
            scheduledFor=iso(start),
            userId=r.user_id,
        )

    return unique.claim(
        conn,
        spec,
        r.job_type.name,
        job_id,
        hold_ms=ahead_ms + settings.limits.uniqueKeyTtl,
        create=create,
        debounce_into=debounce_into,
    )


def _child_id(parent_id: str, step: str) -> str:
    """A planned child's id when the parent's id is fixed: a second attempt at the same
    graph (after a crash) finds the children the first attempt made instead of doubling them."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"vq:{parent_id}/{step}").hex


def _claim_idempotency_key(conn: Redis, settings: Settings, user_id: str, key: str, job_id: str) -> str | None:
    """Reserve `key` for `job_id`; or return the live job the key already names."""
    if not VALID_ID.match(key):
        raise InvalidInput(
            f"idempotencyKey: {key!r} is not a valid key (letters, digits, . _ @ : -)", field="idempotencyKey"
        )
    name = keys.idempotency(user_id, key)
    window = settings.limits.idempotencyWindow
    for _ in range(3):
        if conn.set(name, job_id, nx=True, px=window):
            return None
        existing = optional_text(conn.get(name))
        if existing and conn.exists(Job.key_for(existing)):
            return existing
        conn.delete(name)  # it named a job that is gone: take it over
    raise Conflict(f"idempotencyKey: {key!r} is being claimed concurrently; try again", field="idempotencyKey")


def plan_of(resolved: Resolved) -> list[dict]:
    """A type whose handler module has `plan(data)` runs as a graph of child jobs."""
    planner = handler_companion(resolved.job_type.handler, "plan")
    if planner is None:
        return []
    try:
        return planner(resolved.data)
    except HandlerError as exc:
        raise InvalidInput(f"data: {exc}", field="data") from None


def _enqueue(
    conn: Redis,
    settings: Settings,
    r: Resolved,
    job_id: str,
    *,
    step: str | None,
    parent_id: str | None,
    children: list[str],
    cache_key: str | None = None,
    if_absent: bool = False,
) -> None:
    """Create the job. `if_absent` (a fixed id: a recurring tick's) creates it only if no
    job has that id, atomically, so two daemons firing the same tick make one job."""
    if r.depends_on:  # RQ checks the dependencies in its own WATCHed transaction
        queue = rq_queue(conn, keys.queue_name(r.job_type.name, r.priority))
        common = job_spec(settings, r, job_id, step, parent_id, children, cache_key)
        # Its group keys first: RQ may enqueue it at once (its dependencies ended), and it
        # writes the rest of the hash with HSET, which keeps this field.
        with conn.pipeline(transaction=False) as pipe:
            groups_in(pipe, settings, r, job_id)
            pipe.execute()
        try:
            job = queue.enqueue_call(
                VQ_FUNC, depends_on=Dependency(jobs=r.depends_on, allow_failure=r.allow_failure), **common
            )
        except BaseException:
            conn.hdel(Job.key_for(job_id), keys.GROUPS_FIELD, keys.RESOURCES_FIELD)
            raise
        _record_created(conn, r, job, parent_id, step, data=history_data(settings, common["args"][1]))
        return
    with conn.pipeline() as pipe:  # the job and its indexes appear together, or not at all
        if if_absent:
            pipe.watch(Job.key_for(job_id))
            if pipe.exists(Job.key_for(job_id)):
                return
            pipe.multi()
        pushed = create_in(
            conn, pipe, settings, r, job_id, step=step, parent_id=parent_id, children=children, cache_key=cache_key
        )
        _index_in(pipe, r, job_id)
        if pushed:
            announce(pipe, [pushed])
            wake_in(pipe)
        try:
            pipe.execute()
        except WatchError:  # created meanwhile by whoever else fired this tick
            return


def create_in(
    conn: Redis,
    pipe: Pipeline,
    settings: Settings,
    r: Resolved,
    job_id: str,
    *,
    step: str | None = None,
    parent_id: str | None = None,
    children: list[str] | None = None,
    cache_key: str | None = None,
    unique_meta: dict | None = None,
) -> str | None:
    """A job without dependencies and its `created` event, into the caller's transaction
    (`submit`, and a batch's delayed jobs); returns its queue's name when it was pushed
    there, None when it is delayed (in RQ's scheduled registry)."""
    name = keys.queue_name(r.job_type.name, r.priority)
    spec = job_spec(settings, r, job_id, step, parent_id, children or [], cache_key, unique_meta)
    groups_in(pipe, settings, r, job_id)
    data = history_data(settings, spec["args"][1])
    if r.run_at is not None:
        job = rq_queue(conn, name).enqueue_at(r.run_at, VQ_FUNC, pipeline=pipe, **enqueue_at_kwargs(spec))
        _emit_created(pipe, r, job.id, job.get_status(refresh=False), parent_id, step, data=data)
        return None
    created = _created_fields(r, JobStatus.QUEUED, parent_id, step)
    _push_new(conn, pipe, name, job_id, spec, r.job_type.name, created, data)
    events.say("created", job_id, r.job_type.name, created)
    if r.origin.get("recurringId"):
        recurring_runs.record_created_in(pipe, r.origin, job_id, JobStatus.QUEUED)
    return name


def _create_cached(conn: Redis, settings: Settings, r: Resolved, job_id: str, source: Job) -> Job:
    """A job born finished, carrying the result of the identical job it matched."""
    queue = rq_queue(conn, keys.queue_name(r.job_type.name, r.priority))
    spec = job_spec(settings, r, job_id, None, None, [], None)
    spec["meta"].update(cached=True, cachedFrom=source.id, progress={"percent": 100.0, "message": "cached result"})
    job = queue.create_job(VQ_FUNC, status=JobStatus.FINISHED, **spec)
    now = datetime.now(UTC)
    job.enqueued_at = job.started_at = job.ended_at = now
    private.set_result(job, result_of(source))
    with conn.pipeline() as pipe:
        job.save(pipeline=pipe)
        private.end_as_finished(job, spec["result_ttl"], pipeline=pipe)
        pipe.execute()
    result = events.result_for_history(
        json.dumps(private.result(job), separators=(",", ":")), settings.history.maxResultBytes
    )
    _record_created(
        conn, r, job, None, None, result=result, data=history_data(settings, spec["args"][1]), cachedFrom=source.id
    )
    return job


def _record_created(
    conn: Redis, r: Resolved, job: Job, parent_id: str | None, step: str | None, result: str | None = None, **extra
) -> None:
    """For a job RQ made (with dependencies, or born cached: with its `result` for the
    history): index it, emit `created`, and wake a worker if it is queued, in one round trip."""
    status = job.get_status(refresh=False)
    with conn.pipeline(transaction=False) as pipe:
        _index_in(pipe, r, job.id)
        _emit_created(pipe, r, job.id, status, parent_id, step, result=result, **extra)
        if status == JobStatus.QUEUED:
            wake_in(pipe)
        pipe.execute()


def _index_in(pipe: Pipeline, r: Resolved, job_id: str) -> None:
    """The job in its user's and its type's index (`vq jobs`)."""
    created_ms = int(time.time() * 1000)
    pipe.zadd(keys.user_jobs(r.user_id), {job_id: created_ms})
    pipe.zadd(keys.type_jobs(r.job_type.name), {job_id: created_ms})
    pipe.sadd(keys.JOB_TYPES_SEEN, r.job_type.name)
    if expires(r) and r.deadline_ms:
        pipe.zadd(keys.DEADLINES, {job_id: r.deadline_ms})


def expires(r: Resolved) -> bool:
    """Whether the job is canceled if its deadline passes before it starts (vq/deadlines.py)."""
    return bool(r.deadline_ms) and r.job_type.on_deadline != "run"


def _emit_created(
    pipe: Pipeline,
    r: Resolved,
    job_id: str,
    status: JobStatus | None,
    parent_id: str | None = None,
    step: str | None = None,
    result: str | None = None,
    data: str | None = None,
    **extra,
) -> None:
    """The `created` event (with the history's copy of the data: spec.history_data) and a
    recurring job's run record."""
    events.emit(
        pipe,
        "created",
        job_id,
        r.job_type.name,
        result=result,
        data=data,
        webhookUrl=r.webhook_url if status == JobStatus.FINISHED else None,  # born finished: cached
        **_created_fields(r, status, parent_id, step),
        **extra,
    )
    if r.origin.get("recurringId"):
        recurring_runs.record_created_in(pipe, r.origin, job_id, status)


def _created_fields(r: Resolved, status: JobStatus | None, parent_id: str | None, step: str | None) -> dict:
    """The `created` event's fields that are set."""
    fields = {
        "userId": r.user_id,
        "projectId": r.project_id,
        "priority": r.priority,
        "subscription": r.subscription,
        "status": status.value if status and status != JobStatus.QUEUED else None,
        "parentId": parent_id,
        "step": step,
        "dependsOn": r.depends_on or None,
        "allowFailure": r.allow_failure or None,
        "recurringId": r.origin.get("recurringId"),
    }
    return {k: v for k, v in fields.items() if v is not None}
