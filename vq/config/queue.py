"""The spec's blocks for Redis, jobs, queues and limits: `redis`, `queue`, `concurrency`,
`priority`, `limits`, and how ended jobs are kept."""

import re
from typing import Annotated, Literal

import msgspec
from msgspec import Meta, field

from vq.config.base import DAY_MS, TIERS, _InvalidKey, _Strict


class SentinelSettings(_Strict):
    """Redis Sentinel: vq asks the sentinels for the current master of `service`, and asks
    again after a failover (README: Scale-out)."""

    hosts: Annotated[list[str], Meta(min_length=1, description="sentinels as HOST:PORT")]
    service: Annotated[str, Meta(description="the master's name in the sentinels' config")] = "mymaster"
    password: Annotated[str, Meta(description="the sentinels' own password, when they have one")] | None = None

    def __post_init__(self) -> None:
        for item in self.hosts:
            host, sep, port = item.rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise _InvalidKey("hosts", f"{item!r} is not HOST:PORT")

    def addresses(self) -> list[tuple[str, int]]:
        return [(h.rpartition(":")[0].strip("[]"), int(h.rpartition(":")[2])) for h in self.hosts]


class RedisSettings(_Strict):
    url: str | None = None
    host: str | None = None
    port: Annotated[int, Meta(ge=1, le=65535)] = 6379
    password: str | None = None
    db: Annotated[int, Meta(ge=0)] = 0
    socket: str | None = None
    sentinel: SentinelSettings | None = None

    @property
    def configured(self) -> bool:
        """True when an operator named a Redis; vq then never uses the embedded one."""
        return bool(self.url or self.host or self.socket or self.sentinel)


class Backoff(_Strict):
    type: Literal["exponential", "fixed"] = "exponential"
    delay: Annotated[int, Meta(ge=0, description="milliseconds")] = 2000
    factor: Annotated[float, Meta(ge=1.0)] = 2.0
    max: Annotated[int, Meta(ge=0, description="milliseconds")] = 3_600_000
    jitter: Annotated[float, Meta(ge=0.0, le=1.0, description="up to this share is added to each wait, at random")] = (
        0.1
    )


class KeepJobs(_Strict):
    """BullMQ's `{age, count}` form of removeOnComplete / removeOnFail: an ended job is
    removed once it is older than `age` or beyond the newest `count` of its type, whichever
    comes first; a job that a job still waiting or running depends on is kept regardless
    (vq/maintenance.py)."""

    age: Annotated[int, Meta(ge=0, description="milliseconds since the job ended")] | None = None
    count: Annotated[int, Meta(ge=0, description="the newest this many per type and state")] | None = None

    def __post_init__(self) -> None:
        if self.age is None and self.count is None:
            raise ValueError("give age (ms), count, or both")


class Retention(msgspec.Struct, kw_only=True):
    """A removeOnComplete / removeOnFail value in one form: None in a field means no bound
    of that kind; `forever` (the spec's `false`) means never removed."""

    age_ms: int | None = None
    count: int | None = None
    forever: bool = False


def retention_of(option: "bool | int | KeepJobs") -> Retention:
    """The spec's forms: `true` removes a job as soon as nothing waits on it (count 0: at the
    next trim), `false` keeps every job, a number keeps that many per type, `{age, count}`
    either or both."""
    if option is True:
        return Retention(count=0)
    if option is False:
        return Retention(forever=True)
    if isinstance(option, KeepJobs):
        return Retention(age_ms=option.age, count=option.count)
    return Retention(count=int(option))


class DefaultJobOptions(_Strict):
    # Finished jobs: a day, at most 1,000 per type (README, "How the spec's settings map
    # onto RQ"); failed ones a week, at most 5,000 per type, to be looked at after a weekend.
    removeOnComplete: bool | int | KeepJobs = field(default_factory=lambda: KeepJobs(age=DAY_MS, count=1000))
    removeOnFail: bool | int | KeepJobs = field(default_factory=lambda: KeepJobs(age=7 * DAY_MS, count=5000))
    attempts: Annotated[int, Meta(ge=1)] = 3
    backoff: Backoff = field(default_factory=Backoff)
    timeout: Annotated[int, Meta(ge=1000, description="milliseconds")] = 600_000


class QueueSettingsBlock(_Strict):
    stalledInterval: Annotated[int, Meta(ge=1000)] = 30_000
    maxStalledCount: Annotated[int, Meta(ge=0)] = 1
    lockDuration: Annotated[int, Meta(ge=1000)] = 30_000


class QueueSettings(_Strict):
    defaultJobOptions: DefaultJobOptions = field(default_factory=DefaultJobOptions)
    settings: QueueSettingsBlock = field(default_factory=QueueSettingsBlock)


DEFAULT_USER_LIMITS = {"free": 1, "basic": 2, "pro": 5, "enterprise": 10}
MAX_WEIGHT = 1000  # the most starts one user takes per turn (concurrency.weights, userWeights)
DEFAULT_TYPE_LIMITS = {
    "video-generation": 2,
    "script-generation": 5,
    "scene-creation": 3,
    "audio-synthesis": 3,
    "image-generation": 5,
    "world-building": 2,
    "content-analysis": 10,
    "video-composition": 1,
    "personalization": 5,
    "ai-processing": 3,
}


GROUP_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
GROUP_FIELDS = ("userId", "projectId")  # and data.<path>


def _check_group_field(name: str) -> str | None:
    """What is wrong with one field a group is keyed on, or None."""
    if name in GROUP_FIELDS:
        return None
    if name.startswith("data.") and all(name.split(".")[1:]):
        return None
    return f"{name!r} is not userId, projectId or data.<path>"


RATE = re.compile(r"^\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)?\s*(ms|s|m|h|d)\s*$")
_RATE_UNITS_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": DAY_MS}
RATE_MAX_STARTS = 1_000_000


def parse_rate(text: object) -> tuple[int, int] | str:
    """'30/1m' (or '30/m') -> (30 starts, 60000 ms window); what is wrong with it as text otherwise."""
    match = RATE.match(text) if isinstance(text, str) else None
    if match is None:
        return f"{text!r} is not a rate: starts/window, e.g. 30/1m, 10/30s or 1000/1h"
    starts, amount, unit = int(match.group(1)), float(match.group(2) or 1), match.group(3)
    window_ms = round(amount * _RATE_UNITS_MS[unit])
    if not 1 <= starts <= RATE_MAX_STARTS:
        return f"{text!r}: starts must be from 1 to {RATE_MAX_STARTS:,}"
    if not 1 <= window_ms <= DAY_MS:
        return f"{text!r}: the window must be from 1ms to 1d"
    return starts, window_ms


class GroupSettings(_Strict):
    """A limit group: jobs with the same value of `key` share `limit` slots and `rate` starts
    per window, on every host. A group has a limit, a rate or both."""

    key: Annotated[
        str | list[str],
        Meta(
            description="the job field the group is keyed on: userId, projectId or data.<path> (data.model); "
            "a list of them makes one composite key, the values joined by |"
        ),
    ]
    limit: Annotated[
        int | dict[str, int] | None,
        Meta(
            description="jobs of one key running at once: a number for every key, or per key value with "
            "`default` for the others (no default: keys not listed are not limited)"
        ),
    ] = None
    rate: Annotated[
        str | dict[str, str] | None,
        Meta(
            description="starts of one key per sliding window, as starts/window (30/1m): one for every key, "
            "or per key value with `default` for the others (no default: keys not listed have no rate)"
        ),
    ] = None
    types: Annotated[list[str] | None, Meta(description="the job types the group applies to; omitted: every type")] = (
        None
    )

    def __post_init__(self) -> None:
        fields = [self.key] if isinstance(self.key, str) else self.key
        if not fields:
            raise _InvalidKey("key", "names no field")
        for name in fields:
            if problem := _check_group_field(name):
                raise _InvalidKey("key", problem)
        if self.limit is None and self.rate is None:
            raise _InvalidKey("limit", "missing: a group needs a limit, a rate or both")
        for value, limit in self.limits.items():
            if limit < 1:
                raise _InvalidKey("limit", f"{value}: must be at least 1, got {limit}")
        for value, text in ({"default": self.rate} if isinstance(self.rate, str) else self.rate or {}).items():
            parsed = parse_rate(text)
            if isinstance(parsed, str):
                raise _InvalidKey("rate", parsed if isinstance(self.rate, str) else f"{value}: {parsed}")

    @property
    def fields(self) -> list[str]:
        return [self.key] if isinstance(self.key, str) else list(self.key)

    @property
    def limits(self) -> dict[str, int]:
        """Per key value, with `default` for every other key."""
        if self.limit is None:
            return {}
        return {"default": self.limit} if isinstance(self.limit, int) else dict(self.limit)

    @property
    def rates(self) -> dict[str, tuple[int, int]]:
        """(starts, window ms) per key value, with `default` for every other key."""
        given = {"default": self.rate} if isinstance(self.rate, str) else dict(self.rate or {})
        return {value: parsed for value, text in given.items() if not isinstance(parsed := parse_rate(text), str)}


class ConcurrencySettings(_Strict):
    user: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_USER_LIMITS))
    type: dict[str, int] = field(default_factory=lambda: dict(DEFAULT_TYPE_LIMITS))
    # Weighted fair shares: while users of one type and priority wait, each takes up to its
    # weight in starts per turn (1, the default: plain turns), by tier, or for one user.
    weights: dict[str, int] = field(default_factory=dict)
    userWeights: dict[str, int] = field(default_factory=dict)
    groups: Annotated[
        dict[str, GroupSettings],
        Meta(description="limit groups by name: jobs sharing a field's value (data.model, projectId) share slots"),
    ] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for tier, limit in self.user.items():
            if tier not in TIERS:
                raise _InvalidKey("user", f"unknown subscription tier {tier!r} (expected one of {', '.join(TIERS)})")
            if limit < 1:
                raise _InvalidKey("user", f"limit for {tier!r} must be at least 1")
        for name, limit in self.type.items():
            if limit < 1:
                raise _InvalidKey("type", f"limit for {name!r} must be at least 1")
        for tier, weight in self.weights.items():
            if tier not in TIERS:
                raise _InvalidKey("weights", f"unknown subscription tier {tier!r} (expected one of {', '.join(TIERS)})")
            if not 1 <= weight <= MAX_WEIGHT:
                raise _InvalidKey("weights", f"weight for {tier!r} must be from 1 to {MAX_WEIGHT}")
        for user, weight in self.userWeights.items():
            if not 1 <= weight <= MAX_WEIGHT:
                raise _InvalidKey("userWeights", f"weight for {user!r} must be from 1 to {MAX_WEIGHT}")
        for name in self.groups:
            if not GROUP_NAME.fullmatch(name):
                raise _InvalidKey("groups", f"{name!r}: a group's name is letters, digits, - and _")
        self.user = {**DEFAULT_USER_LIMITS, **self.user}
        self.type = {**DEFAULT_TYPE_LIMITS, **self.type}


Priority = Literal["high", "normal", "low"]
Tier = Literal["free", "basic", "pro", "enterprise"]


class PrioritySettings(_Strict):
    """Priority from the subscription tier, and the highest a tier may ask for."""

    byTier: dict[Tier, Priority] = field(
        default_factory=lambda: {"free": "low", "basic": "normal", "pro": "normal", "enterprise": "high"}
    )
    maxByTier: dict[Tier, Priority] = field(
        default_factory=lambda: {"free": "normal", "basic": "normal", "pro": "high", "enterprise": "high"}
    )
    defaultSubscription: Tier = "free"
    agingThreshold: Annotated[int, Meta(ge=1000, description="ms a job waits before it is admitted one level up")] = (
        600_000
    )


class DeadlineSettings(_Strict):
    """A deadline for jobs submitted without one, per subscription tier: a job still
    waiting when its deadline passes is canceled as `expired` (docs/configuration.md)."""

    byTier: Annotated[
        dict[Tier, Annotated[int, Meta(ge=1000)]],
        Meta(description="ms from submission; a tier not named here has no default deadline"),
    ] = field(default_factory=dict)


class LimitsSettings(_Strict):
    maxDataBytes: Annotated[int, Meta(ge=1, description="bytes: the largest job data accepted (compact JSON)")] = (
        1_048_576
    )
    maxDataDepth: Annotated[
        int, Meta(ge=1, le=100, description="how deeply job data's objects and arrays may nest")
    ] = 32
    maxResultBytes: Annotated[
        int,
        Meta(
            ge=1,
            description="bytes: the largest result a handler may return "
            "(compact JSON); larger fails the job, "
            "permanently",
        ),
    ] = 1_048_576
    maxCheckpointBytes: Annotated[
        int,
        Meta(
            ge=1,
            description="bytes: the largest state a handler may save with ctx.checkpoint (compact JSON); "
            "larger is refused with an error in the handler",
        ),
    ] = 262_144
    maxLogLines: Annotated[
        int,
        Meta(
            ge=10,
            description="lines of a job's own log kept (ctx.log and logging in its handler): the first half "
            "and the last; those in between are dropped and counted",
        ),
    ] = 1000
    maxLogBytes: Annotated[
        int,
        Meta(ge=16_384, description="bytes of a job's own log kept, the first half and the last (as maxLogLines)"),
    ] = 262_144
    checkpointTtl: Annotated[
        int,
        Meta(
            ge=60_000,
            description="ms a job's checkpoint is kept after its last save if nothing deletes it "
            "(it is deleted when the job ends for good)",
        ),
    ] = 7 * 86_400_000
    maxRateLimitDelay: Annotated[
        int, Meta(ge=0, description="ms: the longest a provider's retry-after is honoured")
    ] = 3_600_000
    idempotencyWindow: Annotated[int, Meta(ge=1000, description="ms an idempotencyKey keeps returning its job")] = (
        86_400_000
    )
    maxDelay: Annotated[int, Meta(ge=1000, description="ms: the longest delay (or `at` ahead) accepted")] = (
        90 * 86_400_000
    )
    uniqueScope: Annotated[
        Literal["user", "global"],
        Meta(description="whose submissions a uniqueKey deduplicates: each user's own, or everyone's"),
    ] = "user"
    uniqueKeyTtl: Annotated[
        int,
        Meta(
            ge=60_000,
            description="ms: a uniqueKey's safety expiry after its job's start (the key is free anyway once its job ends)",
        ),
    ] = 86_400_000
