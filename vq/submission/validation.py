"""Validation: a `Submission` checked and resolved, before anything is created.

`resolve()` turns what a caller asked for into what vq will make: the job type, the user,
the priority its subscription tier allows, when a delayed job is due, and the whole ids of
its dependencies. Every refusal is an `InvalidInput`/`Conflict` naming its field, so the
CLI and HTTP report one clear line; nothing here writes to Redis.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeGuard

from redis import Redis
from rq.job import JOB_ID_PATTERN, Job, JobStatus
from rq.serializers import JSONSerializer

from vq import capacity, jobdata
from vq.config import PRIORITIES, TIERS, Settings, Tier
from vq.deadlines import deadline_ms, parse_deadline
from vq.durations import parse_duration_ms, parse_instant
from vq.errors import Ambiguous, Conflict, HandlerError, InvalidInput, NotFound, message_of
from vq.jobtypes import JobType, get_job_type, handler_companion
from vq.model import iso
from vq.protect import protector
from vq.providers import http as providers
from vq.submission.unique import UNIQUE_FIELDS, UniqueRequest, UniqueSpec, checked, request_from
from vq.webhooks import validate_url

log = logging.getLogger("vq.submission")
VALID_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@:-]{0,127}$")
CONTROL_FIELDS = {
    "jobType",
    "userId",
    "projectId",
    "userSubscription",
    "subscription",
    "priority",
    "delay",
    "at",
    "allowPast",
    "dependsOn",
    "allowFailure",
    "data",
    "idempotencyKey",
    "webhookUrl",
    "deadline",
    "resources",
    *UNIQUE_FIELDS,
}


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
    deadline: datetime | None = None  # not started by then: expired, not run (vq/deadlines.py)
    resources: dict | None = None  # what the job needs, over its type's (vq/capacity.py)
    unique: UniqueRequest | None = None  # one job per key: simple, throttle or debounce (unique.py)

    @classmethod
    def from_mapping(cls, obj: object, job_type: str | None = None, privileged: bool = False) -> Submission:
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
            job_type=job_type or _text(obj, "jobType") or "",  # none: `validate` says it is missing
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
            deadline=None if obj.get("deadline") is None else parse_deadline(obj["deadline"]),
            resources=capacity.checked(obj["resources"], "resources") if obj.get("resources") is not None else None,
            skip_cache=bool(
                (obj.get("options") or {}).get("skipCache") if isinstance(obj.get("options"), dict) else False
            ),
            unique=request_from(obj),
        )


def _text(obj: dict, name: str) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, (str, int)) or isinstance(value, bool):
        raise InvalidInput(f"{name}: expected a string", field=name)
    return str(value)


@dataclass
class Resolved:
    """A submission as vq will create it: every field checked, every default decided."""

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
    deadline_ms: int | None = None  # epoch ms (vq/deadlines.py)
    resources: dict = field(default_factory=dict)  # what the job needs (vq/capacity.py); {}: nothing
    unique: UniqueSpec | None = None  # its uniqueKey, mode and scope (vq/submission/unique.py)


def resolve(conn: Redis, settings: Settings, sub: Submission) -> Resolved:
    """The submission checked field by field, with its defaults filled in (raises on the first fault)."""
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
    if not VALID_ID.match(user_id):
        raise InvalidInput(f"userId: {user_id!r} is not a valid id (letters, digits, . _ @ : -)", field="userId")
    project_id = sub.project_id or data_text(sub.data, "projectId")
    subscription = sub.subscription or settings.subscription_of(user_id)
    if not _is_tier(subscription):
        raise InvalidInput(
            f"userSubscription: {subscription!r} is not one of {', '.join(TIERS)}", field="userSubscription"
        )
    priority = _priority(settings, sub, subscription)
    run_at = _run_at(settings, sub)
    depends_on = list(dict.fromkeys(sub.depends_on))
    if run_at and depends_on:
        raise InvalidInput("delay: a delayed job cannot also have dependencies", field="delay")
    if not depends_on:  # a dependent may take its input from its dependencies' results
        check_input(job_type, sub.data)
    depends_on = _check_dependencies(conn, settings, depends_on, sub.allow_failure)
    webhook_url = validate_url(sub.webhook_url, settings) if sub.webhook_url is not None else None
    if sub.deadline is not None and not (isinstance(sub.deadline, datetime) and sub.deadline.tzinfo is not None):
        raise InvalidInput("deadline: expected a time with its zone", field="deadline")
    deadline = deadline_ms(sub.deadline, settings.deadlines.byTier.get(subscription))
    needs = _resources(settings, job_type, sub.resources)
    unique = (
        checked(
            sub.unique,
            user_id=user_id,
            default_scope=settings.limits.uniqueScope,
            privileged=sub.privileged,
            delayed=sub.delay_ms is not None or sub.at is not None,
            depends=bool(depends_on),
        )
        if sub.unique is not None
        else None
    )
    return Resolved(
        job_type,
        sub.data,
        user_id,
        project_id,
        priority,
        subscription,
        run_at,
        depends_on,
        sub.allow_failure,
        dict(sub.origin),
        webhook_url,
        deadline,
        needs,
        unique,
    )


def _resources(settings: Settings, job_type: JobType, own: dict | None) -> dict:
    """The job's need: its type's, with the submission's own amounts over it. Refused when it
    is more than this host's configured resources could ever give one worker; with none
    configured here it is accepted, to wait for a worker that has them (docs/configuration.md)."""
    need = {**job_type.resources, **capacity.checked(own or {}, "resources")}
    need = {name: amount for name, amount in capacity.checked(need, "resources").items() if amount > 0}
    daemon = settings.daemon
    most = capacity.largest_possible(daemon.resources, daemon.resourcesPerWorker)
    if need and most is not None and (over := capacity.beyond(need, most)):
        have = capacity.text_of({name: most.get(name, 0) for name in (over.partition("=")[0],)})
        raise InvalidInput(f"resources: needs {over}, more than a worker here can have ({have})", field="resources")
    return need


def check_input(job_type: JobType, data: dict) -> None:
    """The handler's own `check(data)`, when its module has one (every built-in type's
    does, docs/job-types.md): data its handler could only fail on is refused now, naming
    the field, instead of being queued to fail as `permanent` when it runs."""
    check = handler_companion(job_type.handler, "check")
    if check is None:
        return
    try:
        check(data)
    except HandlerError as exc:
        raise InvalidInput(f"data: {exc}", field="data") from None
    except Exception as exc:  # noqa: BLE001 - an operator's check with a bug of its own: not the caller's fault
        log.warning(
            "%s's check(data) failed (%s); the job is accepted and its handler checks its data when it runs",
            job_type.handler,
            f"{type(exc).__name__}: {message_of(exc)}",
        )


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


def _is_tier(name: str) -> TypeGuard[Tier]:
    return name in TIERS


def _priority(settings: Settings, sub: Submission, subscription: Tier) -> str:
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
    now = datetime.now(UTC)
    longest = settings.limits.maxDelay
    if sub.delay_ms is not None:
        if sub.delay_ms < 0:
            raise InvalidInput("delay: must not be negative", field="delay")
        if sub.delay_ms > longest:
            raise InvalidInput(
                f"delay: {sub.delay_ms} ms is beyond the longest allowed delay of {longest} ms (limits.maxDelay)",
                field="delay",
            )
        return now + timedelta(milliseconds=sub.delay_ms) if sub.delay_ms else None
    if sub.at is None:
        return None
    if sub.at <= now:
        if sub.allow_past:
            return None
        raise InvalidInput(f"at: {iso(sub.at)} is in the past (pass allow-past to run it now)", field="at")
    if (sub.at - now).total_seconds() * 1000 > longest:
        raise InvalidInput(
            f"at: {iso(sub.at)} is beyond the longest allowed delay of {longest} ms (limits.maxDelay)", field="at"
        )
    return sub.at


def _check_dependencies(conn: Redis, settings: Settings, ids: list[str], allow_failure: bool) -> list[str]:
    """The dependencies' whole ids (each may be given as a unique prefix: one read for all
    whole ids, a lookup only for the others), once each is known to exist and not to have
    failed (unless failures are allowed)."""
    if not ids:
        return []
    found = (
        Job.fetch_many(ids, connection=conn, serializer=JSONSerializer)
        if all(isinstance(i, str) and JOB_ID_PATTERN.fullmatch(i) for i in ids)
        else [None] * len(ids)
    )
    whole = []
    for job_id, job in zip(ids, found):
        if job is None:
            job = _by_prefix(conn, settings, job_id)
        status = job.get_status(refresh=False)
        if not allow_failure and status in (JobStatus.FAILED, JobStatus.CANCELED, JobStatus.STOPPED):
            raise Conflict(
                f"dependsOn: job {job.id} has already {status.value}; submit with allow-failure to run anyway",
                field="dependsOn",
            )
        whole.append(job.id)
    return list(dict.fromkeys(whole))


def _by_prefix(conn: Redis, settings: Settings, text: str) -> Job:
    from vq.jobs import fetch_job

    try:
        return fetch_job(conn, text, settings)
    except (NotFound, Ambiguous) as exc:
        raise type(exc)(f"dependsOn: {exc.message}", field="dependsOn") from None


def validate(conn: Redis, settings: Settings, sub: Submission) -> None:
    """Check a submission as `submit` would, creating nothing (a recurring job's template)."""
    resolve(conn, settings, sub)
