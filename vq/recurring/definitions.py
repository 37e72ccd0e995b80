"""Recurring jobs: cron definitions that spawn one job per tick, however many daemons run.

A definition lives in Redis (`vq:recurring`, JSON per id) with its next tick in the
`vq:recurring:due` zset. Every daemon's timer calls `fire_due()`. For a due definition a
daemon takes a short lease, creates the tick's job with an id derived from (definition,
tick) unless that job already exists, then advances the next tick with a compare-and-set.
So a daemon that dies mid-tick leaves the tick to the next daemon, which finds the job if it
was made (nothing doubles) and makes it if not (nothing is lost).

Spawned jobs go through `submission.submit`, admission included, like any other job.
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
from vq.errors import Conflict, InvalidInput, NotFound, PermanentError
from vq.model import iso
from vq.protect import protector, redact
from vq.recurring.cron import due_ticks, next_after, next_times, validate_cron, validate_timezone
from vq.submission import Submission, data_text, submit, validate
from vq.timer import notify_in

log = logging.getLogger("vq.recurring")
CATCH_UP = ("none", "one", "all")
RETRY_HELD_SECONDS = 0.05  # a due definition another daemon holds is looked at again this soon

_ADVANCE = """
-- KEYS: due zset, stats hash; ARGV: id, expected tick ms, next tick ms, missed count
local current = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not current or tonumber(current) ~= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
if tonumber(ARGV[4]) > 0 then redis.call('HINCRBY', KEYS[2], 'missed', ARGV[4]) end
return 1
"""

_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


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
        origin = {"recurringId": self.id}
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
    known = {"skipCache"}
    unknown = sorted(set(options) - known)
    if unknown:
        raise InvalidInput(f"options.{unknown[0]}: unknown option (known: skipCache)", field=f"options.{unknown[0]}")
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
    definition.userId = definition.userId or data_text(definition.data, "userId")
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
    stats = {k.decode(): v.decode() for k, v in conn.hgetall(keys.recurring_stats(definition.id)).items()}
    out["stats"] = {name: int(stats.get(name, 0)) for name in ("runs", "succeeded", "failed", "canceled", "missed")}
    out["lastRunAt"] = stats.get("lastRunAt")
    out["lastJobId"] = stats.get("lastJobId")
    out["lastError"] = stats.get("lastError")
    if runs:
        out["runs"] = last_runs(conn, definition, runs)
    return out


def last_runs(conn: Redis, definition: Recurring, count: int) -> list[dict]:
    entries = conn.zrevrange(keys.recurring_runs(definition.id), 0, count - 1, withscores=True)
    ids = [job_id.decode() for job_id, _ in entries]
    jobs = Job.fetch_many(ids, connection=conn, serializer=JSONSerializer) if ids else []
    outcomes = conn.hmget(keys.recurring_outcomes(definition.id), ids) if ids else []
    rows = []
    for (job_id, tick), job, outcome in zip(entries, jobs, outcomes):
        status = job.get_status(refresh=False).value if job is not None else None
        if status is None:
            status = outcome.decode() if outcome else "expired"
        rows.append(
            {"jobId": job_id.decode(), "tickAt": iso(datetime.fromtimestamp(tick / 1000, UTC)), "status": status}
        )
    return rows


# --- firing ---------------------------------------------------------------------------


def tick_job_id(recurring_id: str, tick_ms: int) -> str:
    """The one job id a tick may have: a second attempt at the tick finds the first's job."""
    return uuid.uuid5(uuid.NAMESPACE_URL, f"vq:recurring:{recurring_id}:{tick_ms}").hex


class Spawner:
    """Fires due ticks; one per daemon, called from its timer."""

    def __init__(self, conn: Redis, settings: Settings):
        self.conn = conn
        self.settings = settings
        self._advance = conn.register_script(_ADVANCE)
        self._release = conn.register_script(_RELEASE)
        self.owner = uuid.uuid4().hex

    def __call__(self) -> float | None:
        """Fire what is due; return when the next tick is due (epoch seconds) or None."""
        now = _now_ms()
        for raw_id, score in self.conn.zrangebyscore(
            keys.RECURRING_DUE, "-inf", now, start=0, num=100, withscores=True
        ):
            self._fire_if_free(raw_id.decode(), int(score))
        first = self.conn.zrange(keys.RECURRING_DUE, 0, 0, withscores=True)
        if not first:
            return None
        due = first[0][1] / 1000
        return max(due, time.time() + RETRY_HELD_SECONDS) if due * 1000 <= _now_ms() else due

    def _fire_if_free(self, recurring_id: str, tick_ms: int) -> None:
        lease = keys.recurring_lease(recurring_id)
        if not self.conn.set(lease, self.owner, nx=True, px=self.settings.recurring.lease):
            return  # another daemon is firing it
        try:
            self._fire(recurring_id, tick_ms)
        finally:
            self._release(keys=[lease], args=[self.owner])

    def _fire(self, recurring_id: str, first_ms: int) -> None:
        raw = self.conn.hget(keys.RECURRING, recurring_id)
        if raw is None:  # removed meanwhile
            self.conn.zrem(keys.RECURRING_DUE, recurring_id)
            return
        definition = Recurring.from_json(raw)
        policy = self.settings.recurring
        now = _now_ms()
        limit = policy.maxCatchUp if definition.catchUp == "all" else 1
        ticks, more = due_ticks(definition.cronExpression, definition.tz, first_ms, now, limit)
        fire = ticks
        if definition.catchUp == "none" and ticks and now - ticks[-1] > policy.misfireGrace:
            fire = []
        missed = len(ticks) - len(fire)
        if more:  # count the rest, up to a bound, for the record
            missed = len(due_ticks(definition.cronExpression, definition.tz, first_ms, now, 10_000)[0]) - len(fire)
        for tick in fire:
            self._spawn(definition, tick)
        if missed:
            log.warning(
                "recurring %s: %s missed tick(s) not run (catch_up %s)",
                definition.id,
                f"more than {missed}" if more and definition.catchUp == "all" else missed,
                definition.catchUp,
            )
        upcoming = next_after(definition.cronExpression, definition.tz, now)
        self._advance(
            keys=[keys.RECURRING_DUE, keys.recurring_stats(recurring_id)],
            args=[recurring_id, first_ms, upcoming, missed],
        )
        self.conn.zremrangebyrank(keys.recurring_runs(recurring_id), 0, -policy.keepRuns - 1)

    def _spawn(self, definition: Recurring, tick_ms: int) -> None:
        job_id = tick_job_id(definition.id, tick_ms)
        if self.conn.zscore(keys.recurring_runs(definition.id), job_id) is not None or self.conn.exists(
            Job.key_for(job_id)
        ):
            return  # an earlier attempt at this tick made it
        try:
            spawn(self.conn, self.settings, definition, job_id, tick_ms)
        except (InvalidInput, NotFound, Conflict, PermanentError) as exc:  # the job is refused; an outage propagates
            log.warning(
                "recurring %s: tick %s not run: %s",
                definition.id,
                iso(datetime.fromtimestamp(tick_ms / 1000, UTC)),
                exc,
            )


def spawn(
    conn: Redis, settings: Settings, definition: Recurring, job_id: str | None = None, tick_ms: int | None = None
) -> str:
    """Submit one job of `definition` and record it as its latest run: the one path both a
    tick and `run_now` take. A refused job is recorded as the last error and raised."""
    try:
        job_id = submit(conn, settings, definition.submission(settings, job_id, tick_ms))
    except (InvalidInput, NotFound, Conflict, PermanentError) as exc:
        conn.hset(keys.recurring_stats(definition.id), "lastError", str(exc))
        raise
    now = iso(datetime.now(UTC))
    conn.hset(keys.recurring_stats(definition.id), mapping={"lastRunAt": now, "lastJobId": job_id})
    return job_id


def run_now(conn: Redis, settings: Settings, ref: str) -> str:
    """Run a recurring job now, outside its schedule (Sidekiq-cron's "Enqueue now"): one job
    like a tick's, with a fresh id; the next scheduled run is left as it was. Returns its id."""
    return spawn(conn, settings, get(conn, ref))
