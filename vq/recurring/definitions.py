"""Recurring jobs: cron definitions that spawn one job per tick, however many daemons run.

A definition lives in Redis (`vq:recurring`, JSON per id) with its next tick in the
`vq:recurring:due` zset. This module adds, lists, pauses, resumes and removes definitions and
describes them; vq/recurring/firing.py turns their due ticks into jobs.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime

from redis import Redis
from rq.job import Job
from rq.serializers import JSONSerializer

from vq import keys
from vq.config import Settings
from vq.errors import Conflict, InvalidInput, NotFound
from vq.model import iso
from vq.protect import protector, redact
from vq.recurring.cron import next_after, next_times, validate_cron, validate_timezone
from vq.replies import optional_text, scored, text_hash
from vq.submission import Submission, data_text, validate
from vq.submission.unique import UNIQUE_FIELDS, request_from
from vq.timer import notify_in

log = logging.getLogger("vq.recurring")
CATCH_UP = ("none", "one", "all")


@dataclass
class Recurring:
    """A recurring definition, in the spec's field names."""

    id: str
    jobType: str
    cronExpression: str
    tz: str = "UTC"
    data: dict = field(default_factory=dict)
    userId: str | None = None
    projectId: str | None = None
    name: str | None = None
    priority: str | None = None
    userSubscription: str | None = None
    options: dict = field(default_factory=dict)
    catchUp: str = "one"
    paused: bool = False
    privileged: bool = False
    createdAt: str | None = None
    updatedAt: str | None = None

    def to_json(self) -> str:
        return json.dumps(self.__dict__, separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(cls, raw: bytes | str) -> Recurring:
        fields = json.loads(raw)
        return cls(**{k: v for k, v in fields.items() if k in cls.__dataclass_fields__})

    def submission(self, settings: Settings, job_id: str | None = None, tick_ms: int | None = None) -> Submission:
        """The job a tick spawns (its data decrypted: submission encrypts it again per job)."""
        origin: dict[str, object] = {"recurringId": self.id}
        if tick_ms is not None:
            origin.update(tickMs=tick_ms, tickAt=iso(datetime.fromtimestamp(tick_ms / 1000, UTC)))
        return Submission(
            job_type=self.jobType,
            data=protector(settings).unseal(self.data),
            user_id=self.userId,
            project_id=self.projectId,
            priority=self.priority,
            subscription=self.userSubscription,
            privileged=self.privileged,
            skip_cache=bool(self.options.get("skipCache")),
            unique=request_from({}, self.options),
            job_id=job_id,
            origin=origin,
        )


def _now_ms() -> int:
    return int(time.time() * 1000)


def _validate_options(options: object) -> dict:
    if options is None:
        return {}
    if not isinstance(options, dict):
        raise InvalidInput("options: expected a JSON object", field="options")
    known = ("skipCache", *UNIQUE_FIELDS)
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise InvalidInput(
            f"options.{unknown[0]}: unknown option (known: {', '.join(known)})", field=f"options.{unknown[0]}"
        )
    request_from({}, options)  # a unique field without uniqueKey, or a bad duration: refused now
    return dict(options)


def add(
    conn: Redis,
    settings: Settings,
    *,
    job_type: str,
    cron: str,
    tz: str = "UTC",
    data: dict | None = None,
    user_id: str | None = None,
    project_id: str | None = None,
    name: str | None = None,
    priority: str | None = None,
    subscription: str | None = None,
    options: dict | None = None,
    catch_up: str | None = None,
    privileged: bool = False,
) -> Recurring:
    """Create a definition; its first tick is the first fire time after now."""
    definition = Recurring(
        id=uuid.uuid4().hex[:12],
        jobType=job_type,
        cronExpression=validate_cron(cron, "cronExpression"),
        tz=validate_timezone(tz, "tz"),
        data=dict(data or {}),
        userId=user_id,
        projectId=project_id,
        name=name or None,
        priority=priority,
        userSubscription=subscription,
        options=_validate_options(options),
        catchUp=catch_up or settings.recurring.catchUp,
        privileged=privileged,
    )
    if definition.catchUp not in CATCH_UP:
        raise InvalidInput(f"catchUp: {definition.catchUp!r} is not one of none, one, all", field="catchUp")
    if name is not None:
        if not name.strip() or len(name) > 128:
            raise InvalidInput("name: expected 1 to 128 characters", field="name")
        if any(d.name == name for d in list_all(conn)):
            raise Conflict(f"name: a recurring job named {name!r} already exists", field="name")
    validate(conn, settings, definition.submission(settings))  # the job it will spawn must be valid today
    # As submission takes them (vq/submission/validation.py): from the data when not given
    # apart, so the definition shows them and a project-scoped token may see what it made.
    definition.userId = definition.userId or data_text(definition.data, "userId")
    definition.projectId = definition.projectId or data_text(definition.data, "projectId")
    definition.data = protector(settings).seal(definition.data)  # at rest in Redis and the history database
    definition.createdAt = definition.updatedAt = iso(datetime.now(UTC))
    first = next_after(definition.cronExpression, definition.tz, _now_ms())
    with conn.pipeline() as pipe:
        pipe.hset(keys.RECURRING, definition.id, definition.to_json())
        pipe.zadd(keys.RECURRING_DUE, {definition.id: first})
        pipe.set(keys.RECURRING_SEEN, 1)
        notify_in(pipe, first / 1000)  # a sleeping timer would otherwise find it only at its next look
        pipe.execute()
    log.info(
        "recurring %s added: %s %r (%s)", definition.id, definition.jobType, definition.cronExpression, definition.tz
    )
    return definition


MAPPING_FIELDS = {
    "jobType",
    "data",
    "cronExpression",
    "timezone",
    "tz",
    "name",
    "userId",
    "projectId",
    "priority",
    "userSubscription",
    "options",
    "catchUp",
}


def add_from_mapping(conn: Redis, settings: Settings, obj: object, privileged: bool = False) -> Recurring:
    """`add` from the spec's JSON body (POST /api/jobs/recurring)."""
    if not isinstance(obj, dict):
        raise InvalidInput("a recurring job must be a JSON object")
    unknown = sorted(set(obj) - MAPPING_FIELDS)
    if unknown:
        raise InvalidInput(f"{unknown[0]}: unknown field", field=unknown[0])
    for name in ("jobType", "cronExpression"):
        if not isinstance(obj.get(name), str) or not obj[name]:
            raise InvalidInput(f"{name}: missing", field=name)
    data = obj.get("data", {})
    if not isinstance(data, dict):
        raise InvalidInput("data: expected a JSON object", field="data")
    text = {}
    for name in ("timezone", "tz", "name", "userId", "projectId", "priority", "userSubscription", "catchUp"):
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"{name}: expected a string", field=name)
        text[name] = value
    return add(
        conn,
        settings,
        job_type=obj["jobType"],
        cron=obj["cronExpression"],
        tz=text["timezone"] or text["tz"] or "UTC",
        data=data,
        user_id=text["userId"],
        project_id=text["projectId"],
        name=text["name"],
        priority=text["priority"],
        subscription=text["userSubscription"],
        options=obj.get("options"),
        catch_up=text["catchUp"],
        privileged=privileged,
    )


def list_all(conn: Redis) -> list[Recurring]:
    raw = conn.hgetall(keys.RECURRING)
    return sorted((Recurring.from_json(v) for v in raw.values()), key=lambda d: (d.createdAt or "", d.id))


def get(conn: Redis, ref: str) -> Recurring:
    """By id, or by name when no id matches."""
    raw = conn.hget(keys.RECURRING, ref)
    if raw is not None:
        return Recurring.from_json(raw)
    named = [d for d in list_all(conn) if d.name == ref]
    if not named:
        raise NotFound(f"recurring job {ref!r} not found")
    return named[0]


def _save(conn: Redis, definition: Recurring, pipe=None) -> None:
    definition.updatedAt = iso(datetime.now(UTC))
    (pipe or conn).hset(keys.RECURRING, definition.id, definition.to_json())


def pause(conn: Redis, ref: str) -> Recurring:
    definition = get(conn, ref)
    definition.paused = True
    with conn.pipeline() as pipe:
        _save(conn, definition, pipe)
        pipe.zrem(keys.RECURRING_DUE, definition.id)
        pipe.execute()
    return definition


def resume(conn: Redis, ref: str) -> Recurring:
    """Ticks that fell while paused are not caught up: the next one is the first after now."""
    definition = get(conn, ref)
    if not definition.paused:
        return definition
    definition.paused = False
    with conn.pipeline() as pipe:
        _save(conn, definition, pipe)
        due = next_after(definition.cronExpression, definition.tz, _now_ms())
        pipe.zadd(keys.RECURRING_DUE, {definition.id: due})
        notify_in(pipe, due / 1000)
        pipe.execute()
    return definition


def remove(conn: Redis, ref: str) -> Recurring:
    """The definition and its run records go; jobs it already spawned are left alone."""
    definition = get(conn, ref)
    with conn.pipeline() as pipe:
        pipe.hdel(keys.RECURRING, definition.id)
        pipe.zrem(keys.RECURRING_DUE, definition.id)
        pipe.delete(
            keys.recurring_runs(definition.id),
            keys.recurring_stats(definition.id),
            keys.recurring_outcomes(definition.id),
        )
        pipe.execute()
    return definition


def next_run_ms(conn: Redis, definition: Recurring) -> int | None:
    score = conn.zscore(keys.RECURRING_DUE, definition.id)
    return None if score is None else int(score)


def describe(conn: Redis, definition: Recurring, runs: int = 0) -> dict:
    """The JSON the CLI and the API show: the definition, its next three fire times, its
    counts, and (when `runs`) its latest runs with their outcomes."""
    out = dict(definition.__dict__)
    out.pop("privileged", None)
    out["data"] = redact(definition.data)
    due = next_run_ms(conn, definition)
    base = (due - 1) if due is not None else _now_ms()
    out["nextRuns"] = (
        []
        if definition.paused
        else [  # UTC, as every time vq prints; the CLI shows them in tz
            iso(moment) for moment in next_times(definition.cronExpression, definition.tz, base, 3)
        ]
    )
    stats = text_hash(conn.hgetall(keys.recurring_stats(definition.id)))
    out["stats"] = {name: int(stats.get(name, 0)) for name in ("runs", "succeeded", "failed", "canceled", "missed")}
    out["lastRunAt"] = stats.get("lastRunAt")
    out["lastJobId"] = stats.get("lastJobId")
    out["lastError"] = stats.get("lastError")
    if runs:
        out["runs"] = last_runs(conn, definition, runs)
    return out


def last_runs(conn: Redis, definition: Recurring, count: int) -> list[dict]:
    entries = scored(conn.zrevrange(keys.recurring_runs(definition.id), 0, count - 1, withscores=True))
    ids = [job_id for job_id, _ in entries]
    jobs = Job.fetch_many(ids, connection=conn, serializer=JSONSerializer) if ids else []
    outcomes = conn.hmget(keys.recurring_outcomes(definition.id), ids) if ids else []
    rows = []
    for (job_id, tick), job, outcome in zip(entries, jobs, outcomes):
        status = job.get_status(refresh=False).value if job is not None else None
        if status is None:
            status = optional_text(outcome) or "expired"
        rows.append({"jobId": job_id, "tickAt": iso(datetime.fromtimestamp(tick / 1000, UTC)), "status": status})
    return rows
